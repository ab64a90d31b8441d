"""The supervised system end to end: real supervisor processes, real Ray actors, real SIGKILLs,
and the ledger checked against the paper broker's own files afterwards."""

import json
import os
import re
import signal
from pathlib import Path

import pytest
import yaml

from tests.configs import adaptive
from tests.integration.conftest import default_config_with, wait_for
from thetadesk.config import DEFAULT_CONFIG, load_config
from thetadesk.store import LEDGER_FILE, Ledger, legs_from_json
from thetadesk.wiring import build_broker, build_market

pytestmark = pytest.mark.integration
CONFIG = load_config(DEFAULT_CONFIG)
ACCOUNT = CONFIG.accounts[0]


def ledger_of(state_dir: Path) -> Ledger:
    return Ledger(state_dir / LEDGER_FILE)


def assert_ledger_matches_broker(state_dir: Path) -> Ledger:
    """No client order id sent twice, none left unresolved, no fill lost or invented, and the
    ledger's open positions are the broker's."""
    ledger = ledger_of(state_dir)
    broker = build_broker(ACCOUNT, build_market(CONFIG), state_dir)
    orders = ledger.orders(ACCOUNT.name)
    assert orders, "the run placed no orders"
    for order in orders:
        cid = order["client_order_id"]
        sent = broker.submission_count(cid)
        assert order["status"] != "pending_submit", f"{cid} left unresolved"
        assert sent == (0 if order["status"] == "not_submitted" else 1), (cid, order["status"])
    broker_fills = {f.exec_id for o in orders for f in broker.fills(o["client_order_id"])}
    assert {f["exec_id"] for f in ledger.fills(ACCOUNT.name)} == broker_fills
    held = {}
    for pos in ledger.positions(ACCOUNT.name):
        for leg in legs_from_json(pos["legs"]):
            held[leg.contract.occ] = held.get(leg.contract.occ, 0) + leg.ratio * pos["quantity"]
    assert {k: v for k, v in held.items() if v} == {
        p.contract.occ: p.quantity for p in broker.positions()}
    return ledger


def kill_account_actor_once_it_trades(state: Path) -> tuple[Ledger, int]:
    """Wait until the run's account actor has traded, then SIGKILL its worker process."""
    ledger = wait_for(lambda: (state / LEDGER_FILE).exists() and ledger_of(state), what="ledger")
    pid = wait_for(lambda: ledger.fills() and next(
        (e["pid"] for e in ledger.actor_events("account-paper") if e["kind"] == "started"), None),
        what="the account actor to trade")
    os.kill(pid, signal.SIGKILL)
    return ledger, pid


def trades(state_dir: Path):
    ledger = ledger_of(state_dir)
    orders = [(o["client_order_id"], o["status"], o["quantity"], o["limit_price"])
              for o in ledger.orders()]
    fills = [(f["exec_id"], f["quantity"], f["price"]) for f in ledger.fills()]
    return orders, fills


def test_sim_days_trade_end_to_end_and_same_seed_gives_same_trades(tmp_path, run_supervisor):
    first = run_supervisor(tmp_path / "a", "--sim-days", "2", "--seed", "11")
    second = run_supervisor(tmp_path / "b", "--sim-days", "2", "--seed", "11")

    code_a, out_a, err_a = first.wait()
    code_b, _, err_b = second.wait()

    assert code_a == 0, err_a[-3000:]
    assert code_b == 0, err_b[-3000:]
    assert "opened closed   realized" in out_a
    assert len([line for line in out_a.splitlines() if line.startswith("2025-01-0")]) == 2
    orders, fills = trades(tmp_path / "a")
    assert fills, "two simulated days should trade"
    assert trades(tmp_path / "b") == (orders, fills)
    ledger = assert_ledger_matches_broker(tmp_path / "a")
    started = {e["actor"] for e in ledger.actor_events() if e["kind"] == "started"}
    assert started == {"notification", "risk", "symbol-SPY", "symbol-QQQ", "account-paper"}
    assert ledger.verdicts(ACCOUNT.name), "every order passes the risk gate"
    stats = json.loads((tmp_path / "a" / "run_stats.json").read_text())
    assert stats["ticks"] > 0
    assert 0 < stats["tick_p50_ms"] <= stats["tick_p99_ms"]
    assert stats["tick_p99_ms"] <= 1000 * stats["tick_wall_s"]
    assert len(stats["tick_ms"]) == stats["ticks"]
    assert max(stats["tick_ms"]) >= stats["tick_p99_ms"] - 0.01  # kept to 0.01 ms
    assert abs(sum(stats["tick_ms"]) - 1000 * stats["tick_wall_s"]) < 1 + 0.01 * len(
        stats["tick_ms"])
    # Every actor's memory at the end; the account traded two days without loading numba
    # (its quotes and deltas ran as Python), the symbols priced their chains compiled.
    actors = stats["actors"]
    assert set(actors) == started
    assert actors["account-paper"]["numba"] is False
    assert actors["account-paper"]["compiled_kernels"] is False
    assert actors["symbol-SPY"]["compiled_kernels"] is True
    assert all(a["pss_mb"] > 0 and a["rss_mb"] >= a["private_mb"] > 0 for a in actors.values())
    assert actors["account-paper"]["pss_mb"] < actors["symbol-SPY"]["pss_mb"]


def test_sigkill_of_account_actor_mid_run_restarts_it_without_duplicates(tmp_path,
                                                                         run_supervisor):
    state = tmp_path / "s"
    run = run_supervisor(state, "--sim-days", "4")

    ledger, _ = kill_account_actor_once_it_trades(state)
    code, _, err = run.wait()

    assert code == 0, err[-3000:]
    kinds = [e["kind"] for e in ledger.actor_events("account-paper")]
    assert kinds == ["started", "died", "restarted"]  # Ray restarted the process, once
    # The restarted actor kept trading: it closed the books of every remaining day.
    days = ledger.days()
    assert len(days) == 4
    assert all(d["end_equity"] is not None for d in days)
    assert_ledger_matches_broker(state)


def test_actor_whose_restarts_ran_out_is_recreated_by_the_supervisor(tmp_path, run_supervisor):
    state = tmp_path / "s"
    run = run_supervisor(state, "--sim-days", "3", "--max-restarts", "0")

    ledger, pid = kill_account_actor_once_it_trades(state)
    code, _, err = run.wait()

    assert code == 0, err[-3000:]
    events = ledger.actor_events("account-paper")
    assert [e["kind"] for e in events] == ["started", "died", "recreated"]
    assert events[2]["pid"] not in (None, pid)
    assert_ledger_matches_broker(state)


def test_supervisor_sigkill_then_restart_resumes_from_the_ledger(tmp_path, run_supervisor):
    state = tmp_path / "s"
    first = run_supervisor(state, "--sim-days", "4")
    ledger = wait_for(lambda: (state / LEDGER_FILE).exists() and ledger_of(state), what="ledger")
    wait_for(lambda: len(ledger.days()) >= 2 and ledger.positions(), what="day two with positions")

    first.kill()
    before = ledger.get_state("sim_last_tick")
    second = run_supervisor(state, "--sim-days", "4")
    code, out, err = second.wait()

    assert code == 0, err[-3000:]
    assert ledger.get_state("sim_last_tick") > before
    sessions = sorted({d["session"] for d in ledger.days()})
    assert len(sessions) == 4
    assert all(s in out for s in sessions)
    starts = [e for e in ledger.actor_events("account-paper") if e["kind"] == "started"]
    assert len(starts) == 2
    assert_ledger_matches_broker(state)


def test_unknown_order_outcomes_are_resolved_by_lookup_after_crashes(tmp_path, run_supervisor):
    """The account actor SIGKILLs itself once right after writing an intent (never sent) and
    once right after the broker accepted an order (reply never recorded)."""
    state = tmp_path / "s"
    env = {"THETADESK_FAILPOINTS": "account.after_write_ahead,account.after_submit",
           "THETADESK_FAILPOINT_DIR": str(tmp_path)}

    code, _, err = run_supervisor(state, "--sim-days", "2", env=env).wait()

    assert code == 0, err[-3000:]
    assert (tmp_path / "account.after_write_ahead.fired").exists()
    assert (tmp_path / "account.after_submit.fired").exists()
    ledger = assert_ledger_matches_broker(state)
    never_sent = [o for o in ledger.orders() if o["status"] == "not_submitted"]
    assert [o["reason"] for o in never_sent] == ["never reached the broker (resolved by lookup)"]
    deaths = [e for e in ledger.actor_events("account-paper") if e["kind"] == "died"]
    assert len(deaths) == 2


def test_daily_loss_breaker_trips_alerts_critical_and_halts_entries(tmp_path, run_supervisor):
    # A $1 daily loss limit: the first trade's commissions and spread trip it. A stop at 5% of
    # the credit closes the spreads the same day, so entries (no spacing between them) are
    # attempted again after the trip.
    config = tmp_path / "tight.yaml"
    config.write_text(default_config_with({"accounts.0.risk.daily_loss_limit": 1,
                                           "exits.stop_multiple": 0.05,
                                           "sizing.min_days_between_entries": 0}))
    state = tmp_path / "s"

    code, _, err = run_supervisor(state, "--sim-days", "2", "--config", str(config)).wait()

    assert code == 0, err[-3000:]
    assert "[CRITICAL] breaker_tripped: paper: daily loss breaker tripped" in err
    ledger = ledger_of(state)
    assert {b["name"] for b in ledger.breakers("paper")} == {"daily_loss"}
    # One trip event per session it tripped in (a restart or a later tick does not re-trip).
    trips = [(e["name"], e["session"]) for e in ledger.breaker_events("paper")
             if e["kind"] == "tripped"]
    assert sorted(trips) == sorted({(b["name"], b["session"]) for b in ledger.breakers("paper")})
    halted = [v for v in ledger.verdicts("paper") if v["check_name"] == "daily_loss"]
    assert halted, "entries after the trip are refused by the breaker"
    assert all(not v["approved"] for v in halted)
    assert_ledger_matches_broker(state)


def test_sigterm_stops_cleanly_after_the_current_tick(tmp_path, run_supervisor):
    state = tmp_path / "s"
    run = run_supervisor(state, "--sim-days", "30")
    ledger = wait_for(lambda: (state / LEDGER_FILE).exists() and ledger_of(state), what="ledger")
    wait_for(lambda: ledger.fills(), what="a first fill")

    run.proc.send_signal(signal.SIGTERM)
    code, out, err = run.wait()

    assert code == 0, err[-3000:]
    assert "SIGTERM: finishing this tick" in err
    assert "opened closed" in out  # the summary of what did run
    assert len(ledger.days()) < 30
    assert ledger.actor_events("supervisor")[-1]["kind"] == "stopped"
    assert_ledger_matches_broker(state)


def test_replay_of_real_history_trades_through_the_same_system(tmp_path, run_supervisor):
    text = DEFAULT_CONFIG.read_text()
    text = text.replace("source: sim ", "source: replay").replace("start: 2025-01-06",
                                                                  "start: 2008-09-29")
    text = re.sub(r"\n    QQQ: \{[^\n]*\}", "", text)
    text = text.replace("symbols: [SPY, QQQ]", "symbols: [SPY]")
    config = tmp_path / "replay.yaml"
    config.write_text(text)
    state = tmp_path / "s"

    code, out, err = run_supervisor(state, "--sim-days", "2", "--config", str(config)).wait()

    assert code == 0, err[-3000:]
    assert "2008-09-29" in out
    assert "2008-09-30" in out
    ledger = ledger_of(state)
    assert ledger.orders(), "the replayed market trades"
    assert all(o["symbol"] == "SPY" for o in ledger.orders())


def test_a_working_entry_survives_a_kill_between_a_steps_cancel_and_its_next_order(
        tmp_path, run_supervisor):
    """The adaptive strategy with limit ladders (short regime windows, so it trades within a
    month): the account actor SIGKILLs itself right after a step's cancel is final, before the
    next step's order is written. The restarted actor carries the ladder on: each step sent
    once, the ledger equal to the broker."""
    data = adaptive(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    data["decision"]["regime"].update(fast=2, slow=5, adx_period=2, confirm=1)
    data["decision"]["timing"]["ladder"].update(enabled=True, max_steps=30)
    config = tmp_path / "working.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = load_config(config)
    assert loaded.strategy.kind == "adaptive"
    assert loaded.decision.timing.ladder.enabled
    assert loaded.decision.regime.slow == 5
    state = tmp_path / "s"
    env = {"THETADESK_FAILPOINTS": "account.ladder_after_cancel",
           "THETADESK_FAILPOINT_DIR": str(tmp_path)}

    code, _, err = run_supervisor(state, "--sim-days", "28", "--config", str(config),
                                  env=env).wait()

    assert code == 0, err[-3000:]
    assert (tmp_path / "account.ladder_after_cancel.fired").exists()
    ledger = assert_ledger_matches_broker(state)
    deaths = [e for e in ledger.actor_events("account-paper") if e["kind"] == "died"]
    assert len(deaths) == 1
    ladders = ledger.decisions("paper", kind="ladder")
    assert ladders
    for decision in ladders:
        did = decision["decision_id"]
        steps = sorted((o for o in ledger.orders("paper") if o["decision_id"] == did),
                       key=lambda o: o["created_at"])
        assert steps[0]["client_order_id"] == did
        # At most one step working at a time, and no step after a fill.
        assert sum(o["status"] in ("new", "partially_filled") for o in steps) <= 1
        if decision["status"] == "done":
            assert steps[-1]["filled_quantity"] > 0
    # The ladder the kill interrupted went on to a later step after the restart.
    assert any(len([o for o in ledger.orders("paper") if o["decision_id"] == d["decision_id"]])
               >= 2 for d in ladders)
