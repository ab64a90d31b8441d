"""Specifications of thetadesk.analytics.metrics against figures computed by hand."""

import math

import pytest

from thetadesk.analytics.metrics import (
    Trade,
    daily_returns,
    drawdowns,
    equity_metrics,
    max_drawdown,
    metrics,
    trade_metrics,
)


def trade(pnl):
    return Trade("p", "a", "SPY", "bull_put_credit", "2025-01-06T15:00:00+00:00",
                 "2025-01-10T15:00:00+00:00", 1, 1.0, "take_profit", pnl, 30)


def test_daily_returns_start_from_the_capital():
    assert daily_returns([110.0, 99.0], 100.0) == pytest.approx([0.10, -0.10])


def test_drawdown_is_a_positive_fraction_below_the_running_peak():
    # peak 100 (capital), 120, 120, 120, 130; drawdowns 0, 0, 0.25, 0.1, 0
    assert drawdowns([120.0, 90.0, 108.0, 130.0], 100.0) == pytest.approx([0, 0.25, 0.1, 0])
    assert max_drawdown([120.0, 90.0, 108.0, 130.0], 100.0) == (pytest.approx(0.25), 2)


def test_a_drawdown_never_recovered_lasts_to_the_end():
    assert max_drawdown([90.0, 95.0, 99.0], 100.0) == (pytest.approx(0.10), 3)


def test_equity_metrics_by_hand():
    equity = [101.0, 99.99, 101.9898]  # +1%, -1%, +2%
    m = equity_metrics(equity, 100.0)
    r = [0.01, -0.01, 0.02]
    mean = sum(r) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in r) / 2)
    downside = math.sqrt((0.01 ** 2) / 3)
    assert m["total_return"] == pytest.approx(0.019898)
    assert m["annual_return"] == pytest.approx(1.019898 ** (252 / 3) - 1)
    assert m["volatility"] == pytest.approx(sd * math.sqrt(252))
    assert m["sharpe"] == pytest.approx(mean / sd * math.sqrt(252))
    assert m["sortino"] == pytest.approx(mean / downside * math.sqrt(252))
    assert m["max_drawdown"] == pytest.approx(0.01)
    assert m["calmar"] == pytest.approx(m["annual_return"] / 0.01)


def test_risk_free_rate_lowers_sharpe():
    equity = [101.0, 99.99, 101.9898]
    assert equity_metrics(equity, 100.0, rf=0.05)["sharpe"] < equity_metrics(equity,
                                                                              100.0)["sharpe"]


def test_a_flat_curve_has_zero_return_and_undefined_ratios():
    m = equity_metrics([100.0] * 5, 100.0)
    assert (m["total_return"], m["annual_return"], m["max_drawdown"]) == (0.0, 0.0, 0.0)
    assert (m["sharpe"], m["sortino"], m["calmar"]) == (None, None, None)


def test_trade_metrics_by_hand():
    m = trade_metrics([100.0, -50.0, 30.0, -10.0, 0.0])
    assert m["trades"] == 5
    assert m["win_rate"] == pytest.approx(0.4)
    assert m["profit_factor"] == pytest.approx(130 / 60)
    assert m["avg_win"] == pytest.approx(65.0)
    assert m["avg_loss"] == pytest.approx(-30.0)
    assert m["expectancy"] == pytest.approx(14.0)


def test_no_trades_and_no_losers_are_undefined_not_invented():
    assert trade_metrics([])["win_rate"] is None
    assert trade_metrics([5.0])["profit_factor"] is None


def test_exposure_and_turnover():
    m = metrics([100.0, 100.0, 100.0, 100.0], 100.0, [trade(1.0)], open_sessions=1,
                premium_traded=50.0)
    assert m["exposure"] == pytest.approx(0.25)
    assert m["turnover"] == pytest.approx(50.0 / 100.0 * 252 / 4)


def test_bad_equity_is_refused():
    with pytest.raises(ValueError, match="positive and finite"):
        daily_returns([100.0, float("nan")], 100.0)
    with pytest.raises(ValueError, match="capital"):
        daily_returns([100.0], 0.0)
