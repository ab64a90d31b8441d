"""Specifications of thetadesk.analytics.montecarlo and .attribution."""

import numpy as np
import pytest

from thetadesk.analytics.attribution import (
    attribution_tables,
    dte_bucket,
    regime_at_entry,
    time_bucket,
    weekday,
)
from thetadesk.analytics.metrics import Trade
from thetadesk.analytics.montecarlo import block_bootstrap_returns, bootstrap_trades


def trade(pnl, opened="2025-01-06T15:30:00+00:00", dte=30, strategy="bull_put_credit",
          regime="up/normal"):
    return Trade("p", "a", "SPY", strategy, opened, "2025-01-10T15:00:00+00:00", 1, 1.0,
                 "take_profit", pnl, dte, regime=regime)


def test_trade_bootstrap_of_one_value_is_that_value_every_time():
    mc = bootstrap_trades([10.0, 10.0, 10.0], 1000.0, paths=50, seed=1)
    assert mc["final_equity"] == {f"p{p}": 1030.0 for p in (5, 25, 50, 75, 95)}
    assert mc["max_drawdown"]["p95"] == 0.0
    assert mc["prob_loss"] == 0.0


def test_trade_bootstrap_spreads_and_is_seeded():
    pnls = [300.0, -500.0, 200.0, 100.0, -50.0]
    a = bootstrap_trades(pnls, 10_000.0, paths=2000, seed=3)
    b = bootstrap_trades(pnls, 10_000.0, paths=2000, seed=3)
    assert a == b
    fe = a["final_equity"]
    assert fe["p5"] < fe["p50"] < fe["p95"]
    assert fe["p5"] >= 10_000.0 - 5 * 500.0
    assert fe["p95"] <= 10_000.0 + 5 * 300.0
    assert 0 < a["prob_loss"] < 1
    assert a["max_drawdown"]["p95"] > 0


def test_block_bootstrap_keeps_the_returns_it_resamples():
    r = np.full(100, 0.001)
    mc = block_bootstrap_returns(r, 100.0, paths=20, block=5, seed=0)
    assert mc["final_equity"]["p50"] == pytest.approx(100.0 * 1.001 ** 100)
    assert mc["prob_loss"] == 0.0


def test_block_bootstrap_of_a_losing_series_shows_the_loss_probability():
    rng = np.random.default_rng(0)
    r = rng.normal(-0.002, 0.01, 250)
    mc = block_bootstrap_returns(r, 100.0, paths=500, seed=1, loss_fraction=0.1)
    assert mc["prob_loss"] > 0.7
    assert 0 < mc["prob_loss_at_least"] <= mc["prob_loss"]


def test_nothing_to_resample_is_none():
    assert bootstrap_trades([], 100.0) is None
    assert block_bootstrap_returns([], 100.0) is None


def test_regime_needs_fifty_closes_and_reads_trend_and_iv():
    up = list(np.linspace(100, 150, 60))
    down = list(np.linspace(150, 100, 60))
    flat = [100.0, 101.0] * 30
    assert regime_at_entry(up[:49], 0.2) == "unknown/normal"
    assert regime_at_entry(up, 0.10) == "up/low"
    assert regime_at_entry(down, 0.30) == "down/high"
    assert regime_at_entry(flat, None).startswith("range/")
    assert regime_at_entry(flat, None) == "range/unknown"


def test_buckets_in_new_york_time():
    t = trade(1.0, opened="2025-01-06T15:30:00+00:00", dte=8)  # 10:30 New York, a Monday
    assert (weekday(t), time_bucket(t), dte_bucket(t)) == ("Mon", "10:00-11:00", "8-21")
    assert dte_bucket(trade(1.0, dte=60)) == "50+"
    summer = trade(1.0, opened="2025-07-07T14:30:00+00:00")  # 10:30 EDT
    assert time_bucket(summer) == "10:00-11:00"


def test_attribution_tables_add_up():
    trades = [trade(100.0), trade(-40.0, dte=10), trade(30.0, strategy="iron_condor",
                                                        regime="range/high")]
    tables = attribution_tables(trades)
    assert tables["strategy"]["bull_put_credit"] == {"trades": 2, "pnl": 60.0,
                                                     "win_rate": 0.5, "avg_pnl": 30.0}
    assert list(tables["dte"]) == ["8-21", "22-35"]
    for table in tables.values():
        assert sum(v["pnl"] for v in table.values()) == pytest.approx(90.0)
