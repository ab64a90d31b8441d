"""Specifications of portfolio Greeks, beta-weighted delta and beta estimation."""

from datetime import UTC, datetime

import numpy as np
import pytest

from thetadesk.chain import contract_arrays
from thetadesk.errors import DataError
from thetadesk.models import Contract
from thetadesk.pricing import bsm_greeks
from thetadesk.risk.greeks import beta_weighted_delta, estimate_beta, portfolio_greeks
from thetadesk.risk.portfolio import Holding, Portfolio, UnderlyingState

AS_OF = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)
RATE = 0.04
UNDERLYINGS = {"SPY": UnderlyingState("SPY", 580.0, 0.16, 0.013),
               "QQQ": UnderlyingState("QQQ", 500.0, 0.20, 0.006),
               "IWM": UnderlyingState("IWM", 220.0, 0.22, 0.01)}
HOLDINGS = (
    Holding("SPY250321P00560000", -2, iv=0.18),
    Holding("SPY250321P00550000", 2),  # priced at the underlying's vol
    Holding("QQQ250221C00520000", 3, iv=0.22),
    Holding("SPY", 100),
    Holding("QQQ", -50),
)


def make_portfolio(holdings=HOLDINGS):
    return Portfolio(AS_OF, RATE, UNDERLYINGS, holdings, {("SPY", "QQQ"): 0.85})


def hand_greeks(holding):
    """Position Greeks of one holding from bsm_greeks, by hand."""
    if not holding.is_option:
        return dict(delta=float(holding.quantity), gamma=0.0, vega=0.0, theta=0.0, rho=0.0)
    c = Contract.from_occ(holding.symbol)
    und = UNDERLYINGS[c.underlying]
    _, years, _ = contract_arrays([c], AS_OF)
    iv = holding.iv if holding.iv is not None else und.vol
    g = bsm_greeks(und.spot, c.strike, years[0], RATE, iv, und.dividend_yield, c.is_call)
    units = holding.quantity * 100
    return {name: units * float(getattr(g, name))
            for name in ("delta", "gamma", "vega", "theta", "rho")}


def test_portfolio_greeks_per_underlying_and_total_equal_hand_sums_of_bsm_greeks():
    greeks = portfolio_greeks(make_portfolio())

    for symbol in ("SPY", "QQQ"):
        hand = [hand_greeks(h) for h in HOLDINGS if h.underlying == symbol]
        for name in ("delta", "gamma", "vega", "theta", "rho"):
            expected = sum(h[name] for h in hand)
            assert getattr(greeks.per_underlying[symbol], name) == pytest.approx(expected,
                                                                                 rel=1e-12)
        spot = UNDERLYINGS[symbol].spot
        assert greeks.dollar_delta[symbol] == pytest.approx(
            sum(h["delta"] for h in hand) * spot, rel=1e-12)
        assert greeks.dollar_gamma[symbol] == pytest.approx(
            sum(h["gamma"] for h in hand) * spot**2, rel=1e-12)
    everything = [hand_greeks(h) for h in HOLDINGS]
    for name in ("vega", "theta", "rho"):
        assert getattr(greeks.total, name) == pytest.approx(sum(h[name] for h in everything),
                                                            rel=1e-12)
    assert greeks.total_dollar_delta == pytest.approx(sum(greeks.dollar_delta.values()))


def test_portfolio_greeks_shares_count_one_each_and_have_no_other_greeks():
    greeks = portfolio_greeks(make_portfolio((Holding("SPY", 100), Holding("QQQ", -30))))

    assert greeks.per_underlying["SPY"].delta == 100.0
    assert greeks.per_underlying["QQQ"].delta == -30.0
    assert greeks.total.gamma == greeks.total.vega == greeks.total.theta == 0.0
    assert greeks.dollar_delta["SPY"] == pytest.approx(58_000.0)


def test_portfolio_greeks_underlying_without_holdings_is_all_zero():
    greeks = portfolio_greeks(make_portfolio())

    assert greeks.per_underlying["IWM"].delta == 0.0
    assert greeks.per_underlying["IWM"].vega == 0.0


def test_short_put_has_positive_delta_and_theta_and_negative_gamma_and_vega():
    g = portfolio_greeks(make_portfolio((Holding("SPY250321P00560000", -1),))).total

    assert g.delta > 0
    assert g.theta > 0
    assert g.gamma < 0
    assert g.vega < 0


def test_beta_weighted_delta_is_sum_of_delta_beta_spot_over_benchmark_spot():
    portfolio = make_portfolio()
    greeks = portfolio_greeks(portfolio)
    betas = {"QQQ": 1.2, "SPY": 1.0}

    expected = (greeks.per_underlying["SPY"].delta
                + greeks.per_underlying["QQQ"].delta * 1.2 * 500.0 / 580.0)

    assert beta_weighted_delta(portfolio, betas) == pytest.approx(expected, rel=1e-12)
    assert beta_weighted_delta(greeks, {"QQQ": 1.2}) == pytest.approx(expected, rel=1e-12)


def test_beta_weighted_delta_without_a_needed_beta_raises():
    with pytest.raises(DataError, match="no beta for QQQ"):
        beta_weighted_delta(make_portfolio(), {})


def test_beta_weighted_delta_benchmark_outside_portfolio_needs_its_spot():
    portfolio = make_portfolio((Holding("QQQ", 10),))
    with pytest.raises(DataError, match="benchmark_spot"):
        beta_weighted_delta(portfolio, {"QQQ": 1.1}, benchmark="DIA")
    assert beta_weighted_delta(portfolio, {"QQQ": 1.1}, benchmark="DIA",
                               benchmark_spot=400.0) == pytest.approx(10 * 1.1 * 500 / 400)


def test_estimate_beta_recovers_known_beta_from_the_last_window_only():
    rng = np.random.default_rng(11)
    bench = rng.normal(0.0, 0.01, 3000)
    noise = rng.normal(0.0, 0.002, 3000)
    beta = np.where(np.arange(3000) < 2000, 0.4, 1.3)  # the regime changes 1000 days ago
    asset = 0.0002 + beta * bench + noise

    assert estimate_beta(asset, bench, window=1000) == pytest.approx(1.3, abs=0.02)
    assert estimate_beta(asset[:2000], bench[:2000], window=1000) == pytest.approx(0.4,
                                                                                   abs=0.02)


@pytest.mark.parametrize(
    ("asset", "bench", "window", "message"),
    [
        (np.zeros(10), np.zeros(9), 5, "aligned"),
        (np.ones(10), np.r_[np.ones(9), np.nan], 5, "NaN"),
        (np.ones(10), np.arange(10.0), 20, "longer than"),
        (np.ones(10), np.arange(10.0), 1, "window"),
        (np.ones(10), np.ones(10), 5, "zero variance"),
    ],
)
def test_estimate_beta_rejects_bad_inputs(asset, bench, window, message):
    with pytest.raises(DataError, match=message):
        estimate_beta(asset, bench, window)


def test_estimate_beta_ignores_nan_before_the_window():
    rng = np.random.default_rng(3)
    bench = rng.normal(0, 0.01, 300)
    asset = 2.0 * bench
    asset[0] = np.nan

    assert estimate_beta(asset, bench, window=250) == pytest.approx(2.0)
