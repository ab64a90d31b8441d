"""Quiet runs (an account running on through ticks in which nothing else can happen, in one call)
change how fast the system runs, never what it does: the ledger of a seeded run is the same with
one call per tick."""

from pathlib import Path

import pytest

from thetadesk.store import LEDGER_FILE, Ledger

pytestmark = pytest.mark.integration


def books(state_dir: Path) -> dict:
    ledger = Ledger(state_dir / LEDGER_FILE)
    return {
        "orders": [(o["client_order_id"], o["status"], o["quantity"], o["limit_price"],
                    o["purpose"], o["created_at"], o["updated_at"]) for o in ledger.orders()],
        "fills": [(f["exec_id"], f["quantity"], f["price"], f["time"]) for f in ledger.fills()],
        "verdicts": [(v["client_order_id"], v["approved"], v["check_name"], v["request"], v["at"])
                     for v in ledger.verdicts()],
        "positions": [(p["position_id"], p["status"], p["entry_price"], p["exit_price"],
                       p["realized_pnl"]) for p in ledger.positions(status=None)],
        "days": ledger.days(),
        "last_tick": ledger.get_state("sim_last_tick"),
    }


def test_quiet_runs_leave_the_same_ledger_as_one_call_per_tick(tmp_path, run_supervisor):
    quiet = run_supervisor(tmp_path / "quiet", "--sim-days", "3", "--seed", "11")
    lockstep = run_supervisor(tmp_path / "lockstep", "--sim-days", "3", "--seed", "11",
                              "--quiet-ticks", "0")

    code_q, out_q, err_q = quiet.wait()
    code_l, out_l, err_l = lockstep.wait()

    assert code_q == 0, err_q[-3000:]
    assert code_l == 0, err_l[-3000:]
    first = books(tmp_path / "quiet")
    assert first["fills"], "three simulated days should trade"
    assert first == books(tmp_path / "lockstep")
    assert out_q == out_l  # the same daily summary
