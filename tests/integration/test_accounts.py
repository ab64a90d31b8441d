"""Several accounts through the real supervisor: one account's broker fails and only it stops,
it comes back when its broker does, and accounts come and go without touching each other's
ledger rows."""

import copy
import signal

import pytest
import yaml

from tests.integration.conftest import wait_for
from tests.integration.test_supervisor_runs import ledger_of
from thetadesk.config import DEFAULT_CONFIG
from thetadesk.store import LEDGER_FILE
from thetadesk.wiring import paper_broker_path

pytestmark = pytest.mark.integration
DATA = yaml.safe_load(DEFAULT_CONFIG.read_text())


def config_with(tmp_path, names, name="accounts.yaml", **top):
    data = copy.deepcopy(DATA)
    base = data["accounts"][0]
    data["accounts"] = [{**copy.deepcopy(base), "name": n} for n in names]
    data["market"]["tick_seconds"] = 1800
    data.update(top)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def rows(ledger, account):
    """Everything the ledger holds for ``account``, to compare before and after."""
    return (ledger.intents(account), ledger.orders(account), ledger.fills(account),
            ledger.positions(account, status=None), [d for d in ledger.days()
                                                     if d["account"] == account])


def test_a_failing_broker_isolates_its_account_and_the_others_keep_trading(tmp_path,
                                                                           run_supervisor):
    config = config_with(tmp_path, ["paper", "ira"])
    state = tmp_path / "s"
    state.mkdir()
    paper_broker_path(state, "ira").write_bytes(b"not a database" * 100)  # a broken paper broker

    code, out, err = run_supervisor(state, "--sim-days", "1", "--config", str(config)).wait()

    assert code == 0, err[-3000:]
    ledger = ledger_of(state)
    events = [e["kind"] for e in ledger.actor_events("account-ira")]
    assert events[0] == "isolated", events
    assert "rejoined" not in events  # its broker file is still broken at every retry
    isolated = ledger.actor_events("account-ira")[0]
    assert "file is not a database" in isolated["detail"]
    assert "[CRITICAL] account_isolated: ira: isolated, its broker fails" in err
    assert ledger.orders("paper"), "the healthy account trades"
    assert ledger.orders("ira") == []
    assert "paper" in out


def test_an_isolated_account_rejoins_once_its_broker_answers(tmp_path, run_supervisor):
    config = config_with(tmp_path, ["paper", "ira"])
    state = tmp_path / "s"
    state.mkdir()
    broken = paper_broker_path(state, "ira")
    broken.write_bytes(b"not a database" * 100)
    # Watch mode, fast: a half-hour tick every 0.5 s of wall time, so a retry comes round soon.
    run = run_supervisor(state, "--config", str(config), "--pace", "3600")
    ledger = wait_for(lambda: (state / LEDGER_FILE).exists() and ledger_of(state), what="ledger")
    wait_for(lambda: any(e["kind"] == "isolated" for e in ledger.actor_events("account-ira")),
             what="ira isolated")
    broken.unlink()  # the broker is fixed (a fresh paper account)
    wait_for(lambda: any(e["kind"] == "rejoined" for e in ledger.actor_events("account-ira")),
             timeout=180, what="ira back")
    wait_for(lambda: ledger.orders("ira"), timeout=180, what="ira trading")
    run.proc.send_signal(signal.SIGTERM)
    code, _, err = run.wait()
    assert code == 0, err[-3000:]
    assert "account_rejoined: ira: its broker answers again" in err


def test_adding_and_removing_accounts_leaves_the_others_rows_alone(tmp_path, run_supervisor):
    state = tmp_path / "s"
    one = config_with(tmp_path, ["paper"], "one.yaml")
    code, _, err = run_supervisor(state, "--sim-days", "1", "--config", str(one)).wait()
    assert code == 0, err[-3000:]
    before = rows(ledger_of(state), "paper")
    assert before[1], "the first day trades"

    # Add ira with a global limit on top: paper's first day stays exactly as it was.
    two = config_with(tmp_path, ["paper", "ira"], "two.yaml",
                      global_risk={"max_total_loss": 40000, "daily_loss_limit": 8000})
    # --sim-days counts from the state dir's first session: this is the second day.
    code, out, err = run_supervisor(state, "--sim-days", "2", "--config", str(two)).wait()
    assert code == 0, err[-3000:]
    ledger = ledger_of(state)
    after = rows(ledger, "paper")
    first_day = before[4][0]["session"]
    assert [d for d in after[4] if d["session"] == first_day] == before[4]
    assert after[0][:len(before[0])] == before[0]
    assert after[2][:len(before[2])] == before[2]
    assert ledger.orders("ira"), "the new account trades from its first day"
    assert all(o["account"] == "ira" for o in ledger.orders("ira"))
    assert " total " in out  # the summary adds the accounts up
    verdicts = [v for v in ledger.verdicts() if v["approved"] and '"global"' in v["request"]]
    assert verdicts, "the global limits are checked on opening orders"

    # Remove paper: its rows are kept as they were; ira carries on.
    kept = rows(ledger, "paper")
    only = config_with(tmp_path, ["ira"], "only.yaml")
    code, _, err = run_supervisor(state, "--sim-days", "3", "--config", str(only)).wait()
    assert code == 0, err[-3000:]
    ledger = ledger_of(state)
    assert rows(ledger, "paper") == kept
    assert len({d["session"] for d in ledger.days() if d["account"] == "ira"}) == 2
