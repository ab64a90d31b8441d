"""Backtest-live parity: ``python supervisor.py --sim-days N`` (real Ray actors) and the
backtester (the same components in one process) over the same seeded simulator make the same
intents, orders and fills."""

from datetime import date

import pytest

from thetadesk.backtest.engine import Backtest, backtest_config
from thetadesk.clock import MarketCalendar
from thetadesk.config import DEFAULT_CONFIG, load_config_data
from thetadesk.store import LEDGER_FILE, Ledger

pytestmark = pytest.mark.integration
DAYS = 3


def book(state):
    ledger = Ledger(state / LEDGER_FILE)
    intents = [(i["intent_id"], i["account"], i["client_order_id"], i["decided_at"])
               for i in ledger.intents()]
    orders = [(o["client_order_id"], o["purpose"], o["status"], o["quantity"], o["limit_price"],
               o["avg_fill_price"]) for o in ledger.orders()]
    fills = [(f["exec_id"], f["quantity"], f["price"], f["commission"], f["time"])
             for f in ledger.fills()]
    decisions = [(d["decision_id"], d["kind"], d["reason"], d["status"])
                 for d in ledger.decisions()]
    days = [(d["account"], d["session"], d["start_equity"], d["end_equity"], d["open_positions"])
            for d in ledger.days()]
    ledger.close()
    return intents, orders, fills, decisions, days


def test_supervisor_and_backtest_make_the_same_trades(tmp_path, run_supervisor):
    code, _out, err = run_supervisor(tmp_path / "live", "--sim-days", str(DAYS), "--seed",
                                    "11").wait()
    assert code == 0, err[-3000:]

    data = load_config_data(DEFAULT_CONFIG)
    data["seed"] = 11
    start = date.fromisoformat(str(data["market"]["start"]))
    end = MarketCalendar().sessions(MarketCalendar().next_session(start), DAYS)[-1]
    config, market, end, _ = backtest_config(data, source="sim", end=end)
    Backtest(config, tmp_path / "backtest", end=end, market=market, data="sim").run()

    live, back = book(tmp_path / "live"), book(tmp_path / "backtest")
    assert live[2], "the run should fill orders"
    for name, a, b in zip(("intents", "orders", "fills", "decisions", "days"), live, back,
                          strict=True):
        assert a == b, name


def test_walk_forward_windows_as_ray_tasks_equal_the_local_run(ray_address):
    from actors.backtest import run_jobs
    from thetadesk.backtest.walkforward import run_local, walk_forward

    data = load_config_data(DEFAULT_CONFIG)
    data["market"]["tick_seconds"] = 900
    data["risk_reports"]["monte_carlo_scenarios"] = 0
    sessions = MarketCalendar().sessions(date(2025, 1, 6), 15)
    grid = {"strategy.short_delta": [0.20, 0.30]}
    kwargs = dict(grid=grid, in_sample=5, out_of_sample=5, embargo=0)  # Ray vs local, no gap

    on_ray = walk_forward(data, "sim", sessions, run_many=run_jobs, **kwargs)
    here = walk_forward(data, "sim", sessions, run_many=run_local, **kwargs)

    assert len(on_ray["windows"]) == 2
    assert on_ray == here
