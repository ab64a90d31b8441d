"""Specifications of thetadesk.analytics.metrics against figures computed by hand."""

import math
from datetime import date

import pytest

from thetadesk.analytics.metrics import (
    Trade,
    daily_returns,
    drawdown_dates,
    drawdowns,
    equity_metrics,
    max_drawdown,
    metrics,
    month_ends,
    monthly_returns,
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


def sample_sd(xs):
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def test_sharpe_rf_with_a_rate_per_session_by_hand():
    equity = [101.0, 99.99, 101.9898]  # +1%, -1%, +2%
    # annual 2.52%, 2.52%, 5.04% -> 0.0001, 0.0001, 0.0002 a session
    m = equity_metrics(equity, 100.0, rf=[0.0252, 0.0252, 0.0504])
    x = [0.0099, -0.0101, 0.0198]
    mean = sum(x) / 3
    assert m["sharpe_rf"] == pytest.approx(mean / sample_sd(x) * math.sqrt(252))
    assert m["sortino_rf"] == pytest.approx(mean / math.sqrt(0.0101 ** 2 / 3) * math.sqrt(252))
    assert m["risk_free_mean"] == pytest.approx(0.0336)
    # the 0% figures do not move with the rate
    r = [0.01, -0.01, 0.02]
    assert m["sharpe"] == pytest.approx(sum(r) / 3 / sample_sd(r) * math.sqrt(252))
    assert m["sharpe"] == equity_metrics(equity, 100.0)["sharpe"]


def test_a_constant_rate_equals_one_per_session_and_lowers_the_excess_sharpe():
    equity = [101.0, 99.99, 101.9898]
    one = equity_metrics(equity, 100.0, rf=0.05)
    each = equity_metrics(equity, 100.0, rf=[0.05, 0.05, 0.05])
    assert one["sharpe_rf"] == pytest.approx(each["sharpe_rf"])
    assert one["sharpe_rf"] < one["sharpe"]
    assert equity_metrics(equity, 100.0)["sharpe_rf"] == pytest.approx(one["sharpe"])


def test_an_unknown_rate_leaves_the_excess_figures_undefined():
    m = equity_metrics([101.0, 99.99, 101.9898], 100.0, rf=None)
    assert (m["sharpe_rf"], m["sortino_rf"], m["risk_free_mean"]) == (None, None, None)
    assert m["sharpe"] is not None


def test_rates_of_the_wrong_length_are_refused():
    with pytest.raises(ValueError, match="2 given for 3 sessions"):
        equity_metrics([101.0, 99.99, 101.9898], 100.0, rf=[0.01, 0.02])


def test_a_flat_curve_against_t_bills_is_undefined_not_minus_infinity():
    m = equity_metrics([100.0] * 5, 100.0, rf=0.05)
    assert (m["sharpe_rf"], m["sortino_rf"]) == (None, None)


JAN30, JAN31, FEB27, FEB28, MAR3 = (date(2025, 1, 30), date(2025, 1, 31), date(2025, 2, 27),
                                    date(2025, 2, 28), date(2025, 3, 3))
MONTHS = [JAN30, JAN31, FEB27, FEB28, MAR3]


def test_month_ends_are_each_months_last_session():
    assert month_ends(MONTHS) == [1, 3, 4]
    assert monthly_returns(MONTHS, [100.0, 102.0, 101.0, 104.04, 103.0], 100.0) == (
        pytest.approx({"2025-01": 0.02, "2025-02": 0.02, "2025-03": 103 / 104.04 - 1}))


def test_monthly_sharpe_by_hand():
    equity = [100.0, 102.0, 101.0, 104.04, 103.0]
    m = equity_metrics(equity, 100.0, rf=0.0252, sessions=MONTHS)
    r = [0.02, 0.02, 103 / 104.04 - 1]
    assert m["months"] == 3
    assert m["sharpe_monthly"] == pytest.approx(sum(r) / 3 / sample_sd(r) * math.sqrt(12))
    # the month's T-bill return compounds 0.0001 a session: 2, 2 and 1 sessions
    x = [r[0] - (1.0001 ** 2 - 1), r[1] - (1.0001 ** 2 - 1), r[2] - 0.0001]
    assert m["sharpe_monthly_rf"] == pytest.approx(sum(x) / 3 / sample_sd(x) * math.sqrt(12))


def test_one_month_has_no_monthly_sharpe():
    m = equity_metrics([101.0, 100.0], 100.0, sessions=[JAN30, JAN31])
    assert (m["months"], m["sharpe_monthly"], m["sharpe_monthly_rf"]) == (1, None, None)


def test_drawdown_dates_peak_trough_and_recovery():
    days = [JAN30, JAN31, FEB27, FEB28]
    assert drawdown_dates([120.0, 90.0, 108.0, 130.0], 100.0, days) == (JAN30, JAN31, FEB28)
    # the peak is the capital: before the first session
    assert drawdown_dates([90.0, 95.0, 101.0], 100.0, days[:3]) == (None, JAN30, FEB27)
    # never recovered
    assert drawdown_dates([90.0, 95.0, 99.0], 100.0, days[:3]) == (None, JAN30, None)
    # the peak touched twice: the drawdown starts from the later close
    assert drawdown_dates([110.0, 110.0, 90.0], 100.0, days[:3]) == (JAN31, FEB27, None)
    assert drawdown_dates([100.0, 101.0], 100.0, days[:2]) == (None, None, None)
    m = equity_metrics([120.0, 90.0, 108.0, 130.0], 100.0, sessions=days)
    assert (m["max_drawdown_peak"], m["max_drawdown_trough"], m["max_drawdown_recovery"]) == (
        "2025-01-30", "2025-01-31", "2025-02-28")


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
