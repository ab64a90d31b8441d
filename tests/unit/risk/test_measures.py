"""Specifications of VaR and ES: the empirical convention, historical simulation with full
revaluation, delta-gamma-vega, and incremental figures of a trade."""

from datetime import UTC, datetime

import numpy as np
import pytest
from scipy.stats import norm

from thetadesk.errors import DataError
from thetadesk.risk.greeks import portfolio_greeks
from thetadesk.risk.measures import (
    GjrGarchParams,
    delta_gamma_vega_var,
    ewma_rescale,
    fit_gjr_garch,
    garch_filtered_var,
    gjr_garch_filter,
    historical_var,
    incremental,
    quadratic_pnl,
    var_es_from_pnl,
)
from thetadesk.risk.montecarlo import measures as mc_measures
from thetadesk.risk.portfolio import Holding, Portfolio, UnderlyingState, revalue

AS_OF = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)
SPY = UnderlyingState("SPY", 580.0, 0.16, 0.013)
QQQ = UnderlyingState("QQQ", 500.0, 0.20, 0.006)
DAILY_SD = {"SPY": 0.16 / np.sqrt(252), "QQQ": 0.20 / np.sqrt(252)}


def make_portfolio(*holdings, correlation=0.8):
    return Portfolio(AS_OF, 0.04, {"SPY": SPY, "QQQ": QQQ}, holdings,
                     {("SPY", "QQQ"): correlation})


def synthetic_returns(n=2000, seed=5, correlation=0.8):
    """Jointly normal daily log returns at the underlyings' own vols and correlation."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2)) @ np.linalg.cholesky(
        np.array([[1.0, correlation], [correlation, 1.0]])).T
    return {"SPY": z[:, 0] * DAILY_SD["SPY"], "QQQ": z[:, 1] * DAILY_SD["QQQ"]}


def short_put_spread(contracts=10):
    return (Holding("SPY250221P00570000", -contracts), Holding("SPY250221P00560000", contracts))


# --- the empirical convention ------------------------------------------------------------------


def test_var_es_from_pnl_hand_example():
    pnl = -np.arange(1.0, 101.0)  # losses 1..100
    rng = np.random.default_rng(0)
    rng.shuffle(pnl)

    figures = var_es_from_pnl(pnl, (0.95, 0.99, 0.5))

    assert figures[0.95] == (95.0, pytest.approx(np.mean(np.arange(95.0, 101.0))))
    assert figures[0.99] == (99.0, pytest.approx(99.5))
    assert figures[0.5] == (50.0, pytest.approx(75.0))


def test_var_es_from_pnl_500_scenarios_99pct_is_the_6th_largest_loss():
    losses = np.arange(500.0)
    var, es = var_es_from_pnl(-losses, (0.99,))[0.99]

    assert var == 494.0
    assert es == pytest.approx(np.mean(losses[-6:]))


def test_var_es_from_pnl_agrees_with_the_monte_carlo_module():
    pnl = np.random.default_rng(9).standard_t(4, 12_345) * 1000
    ours = var_es_from_pnl(pnl)
    theirs = mc_measures(pnl)

    assert ours[0.95] == (theirs.var95, pytest.approx(theirs.es95, rel=1e-12))
    assert ours[0.99] == (theirs.var99, pytest.approx(theirs.es99, rel=1e-12))


@pytest.mark.parametrize("bad", [[], [1.0, np.nan]])
def test_var_es_from_pnl_rejects_empty_and_nan(bad):
    with pytest.raises(DataError):
        var_es_from_pnl(bad)


# --- ES >= VaR for every method -----------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_es_is_at_least_var_for_every_method(seed):
    portfolio = make_portfolio(*short_put_spread(), Holding("QQQ250221C00520000", -3),
                               Holding("SPY", 50))
    returns = synthetic_returns(seed=seed)
    results = [
        historical_var(portfolio, returns),
        historical_var(portfolio, returns, vol_scaling="ewma"),
        historical_var(portfolio, returns, horizon_days=5),
        delta_gamma_vega_var(portfolio),
        delta_gamma_vega_var(portfolio, vol_of_vol=1.0, spot_vol_correlation=-0.7),
        delta_gamma_vega_var(portfolio, method="simulate", n_sims=20_000, seed=seed),
    ]
    for r in results:
        assert r.es95 >= r.var95, r.method
        assert r.es99 >= r.var99, r.method
        assert r.var99 >= r.var95, r.method


# --- historical simulation ---------------------------------------------------------------------


def test_historical_var_of_shares_is_the_hand_computed_empirical_quantile():
    returns = synthetic_returns(n=1000)
    portfolio = make_portfolio(Holding("SPY", 100), Holding("QQQ", -40))
    pnl = (100 * 580.0 * np.expm1(returns["SPY"]) - 40 * 500.0 * np.expm1(returns["QQQ"]))
    losses = np.sort(-pnl)  # ascending; k = ceil(p n): 950 and 990

    r = historical_var(portfolio, returns)

    assert r.var95 == pytest.approx(losses[949], rel=1e-9)
    assert r.var99 == pytest.approx(losses[989], rel=1e-9)
    assert r.es99 == pytest.approx(losses[989:].mean(), rel=1e-9)
    assert (r.method, r.horizon_days, r.scenarios) == ("historical", 1, 1000)


def test_historical_var_window_uses_only_the_last_returns():
    returns = synthetic_returns(n=1000)
    returns["SPY"][:700] *= 10.0  # wild old history outside the window
    portfolio = make_portfolio(Holding("SPY", 100))
    recent = {k: v[-300:] for k, v in returns.items()}

    assert historical_var(portfolio, returns, window=300) == historical_var(portfolio, recent)
    assert historical_var(portfolio, returns).var99 > historical_var(portfolio, recent).var99


def test_historical_var_horizon_uses_overlapping_sums_and_time_decay():
    returns = synthetic_returns(n=400)
    portfolio = make_portfolio(*short_put_spread())
    log = np.column_stack([returns["QQQ"], returns["SPY"]])  # symbols in sorted order
    two_day = log[1:] + log[:-1]
    pnl = revalue(portfolio.arrays(), np.exp(two_day), None, 2 / 252)
    expected = var_es_from_pnl(pnl)

    r = historical_var(portfolio, returns, horizon_days=2)

    assert r.scenarios == 399
    assert (r.var99, r.es95) == pytest.approx((expected[0.99][0], expected[0.95][1]))


def test_historical_var_applies_implied_vol_changes_when_given():
    returns = synthetic_returns(n=300)
    vol_returns = {"SPY": np.full(300, np.log(1.5)), "QQQ": np.zeros(300)}
    portfolio = make_portfolio(*short_put_spread())
    log = np.column_stack([returns["QQQ"], returns["SPY"]])
    vol = np.exp(np.column_stack([vol_returns["QQQ"], vol_returns["SPY"]]))
    expected = var_es_from_pnl(revalue(portfolio.arrays(), np.exp(log), vol, 1 / 252))

    r = historical_var(portfolio, returns, vol_returns=vol_returns)

    assert r.var99 == pytest.approx(expected[0.99][0])
    assert r.var99 > historical_var(portfolio, returns).var99  # short vega: IV up hurts


def test_ewma_rescale_matches_the_recursion_by_hand():
    r = np.array([[0.01], [-0.02], [0.005], [0.03], [-0.01]])
    lam = 0.94
    var = [np.mean(r[:, 0] ** 2)]
    for x in r[:, 0]:
        var.append(lam * var[-1] + (1 - lam) * x * x)
    expected = r[:, 0] * np.sqrt(var[-1] / np.array(var[:-1]))

    assert ewma_rescale(r, lam)[:, 0] == pytest.approx(expected, rel=1e-12)


def test_ewma_var_rises_after_a_volatile_spell():
    rng = np.random.default_rng(4)
    calm = rng.normal(0, 0.005, 480)
    storm = rng.normal(0, 0.03, 20)
    returns = {"SPY": np.r_[calm, storm], "QQQ": np.r_[calm, storm]}
    portfolio = make_portfolio(Holding("SPY", 100))

    plain = historical_var(portfolio, returns)
    filtered = historical_var(portfolio, returns, vol_scaling="ewma")

    assert filtered.var99 > 1.5 * plain.var99
    assert filtered.method == "historical ewma"


# --- GJR-GARCH filtered historical simulation -----------------------------------------------

SPX_LIKE = GjrGarchParams(mu=0.0003, omega=2e-6, alpha=0.01, gamma=0.12, beta=0.90)


def simulate_gjr_garch(params, n, seed, df=5.0):
    """A GJR-GARCH(1,1) path with unit-variance Student-t innovations."""
    rng = np.random.default_rng(seed)
    z = rng.standard_t(df, n) / np.sqrt(df / (df - 2.0))
    r = np.empty(n)
    s2 = params.omega / (1.0 - params.persistence)
    for t in range(n):
        r[t] = params.mu + np.sqrt(s2) * z[t]
        e = r[t] - params.mu
        s2 = params.omega + (params.alpha + params.gamma * (e < 0)) * e * e + params.beta * s2
    return r


def test_gjr_garch_filter_matches_the_recursion_by_hand():
    r = np.array([0.01, -0.02, 0.005, 0.03, -0.01])
    p = SPX_LIKE
    s2 = [np.mean((r - p.mu) ** 2)]
    for x in r:
        e = x - p.mu
        s2.append(p.omega + (p.alpha + p.gamma * (e < 0)) * e * e + p.beta * s2[-1])

    sigma2, nxt = gjr_garch_filter(r, p)

    assert sigma2 == pytest.approx(s2[:-1], rel=1e-12)
    assert nxt == pytest.approx(s2[-1], rel=1e-12)


def test_gjr_garch_filter_has_no_look_ahead():
    r = simulate_gjr_garch(SPX_LIKE, 400, seed=1)
    changed = r.copy()
    changed[300:] = -3.0 * changed[300:]

    a, _ = gjr_garch_filter(r, SPX_LIKE, seed=1e-4)
    b, _ = gjr_garch_filter(changed, SPX_LIKE, seed=1e-4)

    assert np.array_equal(a[:301], b[:301])  # sigma2[300] is forecast from returns[:300]
    assert not np.allclose(a[301:], b[301:])


def test_garch_filtered_var_uses_only_the_returns_given():
    # VaR for tomorrow from the window ending today ignores anything appended later.
    r = simulate_gjr_garch(SPX_LIKE, 1200, seed=2)
    portfolio = make_portfolio(Holding("SPY", 100))
    params = {"SPY": SPX_LIKE, "QQQ": SPX_LIKE}
    today = garch_filtered_var(portfolio, {"SPY": r[:1000], "QQQ": r[:1000]}, window=500,
                               params=params)
    later = garch_filtered_var(portfolio, {"SPY": r, "QQQ": r}, window=700, params=params)
    truncated = garch_filtered_var(portfolio, {"SPY": r[:1000], "QQQ": r[:1000]}, window=500,
                                   params=params)

    assert truncated == today
    assert later.var99 != today.var99
    assert today.method == "historical gjr-garch"


def test_garch_filtered_var_is_sigma_next_times_the_residual_quantile_for_shares():
    r = simulate_gjr_garch(SPX_LIKE, 600, seed=3)
    portfolio = make_portfolio(Holding("SPY", 10))
    sigma2, nxt = gjr_garch_filter(r, SPX_LIKE)
    scenarios = SPX_LIKE.mu + np.sqrt(nxt) * (r - SPX_LIKE.mu) / np.sqrt(sigma2)
    pnl = 10 * SPY.spot * (np.exp(scenarios) - 1.0)

    got = garch_filtered_var(portfolio, {"SPY": r, "QQQ": r},
                             params={"SPY": SPX_LIKE, "QQQ": SPX_LIKE})

    assert got.var99 == pytest.approx(var_es_from_pnl(pnl)[0.99][0], rel=1e-9)
    assert got.es95 == pytest.approx(var_es_from_pnl(pnl)[0.95][1], rel=1e-9)


def test_fit_gjr_garch_recovers_the_leverage_effect_of_a_simulated_series():
    p = fit_gjr_garch(simulate_gjr_garch(SPX_LIKE, 4000, seed=4), dist="t")

    assert p.gamma > 0.05
    assert 0.85 < p.persistence < 1.0
    assert p.omega > 0.0


def test_garch_filtered_var_is_calibrated_on_a_simulated_garch_series():
    # Rolling 99% VaR of one share over 2500 days of a fat-tailed GJR-GARCH path, refitting
    # every 250 days on the window before: about 1% exceedances (25 expected; the empirical
    # 99% quantile of 750 residuals is exceeded ~1.06% of the time by construction).
    window, days, refit = 750, 2500, 250
    r = simulate_gjr_garch(SPX_LIKE, window + days, seed=11)
    portfolio = make_portfolio(Holding("SPY", 1))
    hits = 0
    for j in range(days):
        past = r[j:window + j]
        if j % refit == 0:
            fitted = fit_gjr_garch(past)
            params = {"SPY": fitted, "QQQ": fitted}
        var99 = garch_filtered_var(portfolio, {"SPY": past, "QQQ": past}, params=params).var99
        hits += -SPY.spot * (np.exp(r[window + j]) - 1.0) > var99

    assert 12 <= hits <= 42


@pytest.mark.parametrize(
    ("returns", "kwargs", "message"),
    [
        ({"SPY": np.zeros(10)}, {}, "missing for QQQ"),
        ({"SPY": np.zeros(10), "QQQ": np.zeros(9)}, {}, "aligned"),
        ({"SPY": np.r_[np.zeros(9), np.nan], "QQQ": np.zeros(10)}, {}, "NaN"),
        ({"SPY": np.zeros(10), "QQQ": np.zeros(10)}, {"window": 20}, "fewer than the window"),
        ({"SPY": np.zeros(10), "QQQ": np.zeros(10)}, {"horizon_days": 0}, "horizon_days"),
        ({"SPY": np.zeros(10), "QQQ": np.zeros(10)}, {"vol_scaling": "garch"}, "vol_scaling"),
    ],
)
def test_historical_var_rejects_bad_inputs(returns, kwargs, message):
    with pytest.raises(DataError, match=message):
        historical_var(make_portfolio(Holding("SPY", 1)), returns, **kwargs)


# --- delta-gamma-vega --------------------------------------------------------------------------


def test_dgv_of_shares_equals_the_normal_closed_form():
    portfolio = make_portfolio(Holding("SPY", 100), Holding("QQQ", -40), correlation=0.6)
    b = np.array([-40 * 500.0, 100 * 580.0])  # dollar deltas, QQQ then SPY
    sd = np.array([0.20, 0.16]) * np.sqrt(1 / 252)
    cov = np.array([[1.0, 0.6], [0.6, 1.0]]) * np.outer(sd, sd)
    sigma = float(np.sqrt(b @ cov @ b))

    r = delta_gamma_vega_var(portfolio)

    for level, var, es in ((0.95, r.var95, r.es95), (0.99, r.var99, r.es99)):
        z = norm.ppf(level)
        assert var == pytest.approx(z * sigma, rel=1e-9)
        assert es == pytest.approx(sigma * norm.pdf(z) / (1 - level), rel=1e-9)
    assert r.scenarios is None


def test_dgv_ten_day_horizon_scales_shares_var_by_root_ten():
    portfolio = make_portfolio(Holding("SPY", 100))
    one = delta_gamma_vega_var(portfolio)
    ten = delta_gamma_vega_var(portfolio, horizon_days=10)

    assert ten.var99 == pytest.approx(one.var99 * np.sqrt(10), rel=1e-9)


def test_dgv_cumulants_match_a_simulation_of_the_quadratic_form():
    portfolio = make_portfolio(*short_put_spread(), Holding("QQQ250221C00520000", 5))
    q = quadratic_pnl(portfolio, 1, vol_of_vol=1.0, spot_vol_correlation=-0.7)
    pnl = q.simulate(400_000, np.random.default_rng(2))
    k1, k2, k3, _ = q.cumulants()

    assert pnl.mean() == pytest.approx(k1, abs=3 * pnl.std() / np.sqrt(len(pnl)))
    assert pnl.var() == pytest.approx(k2, rel=0.01)
    skew = np.mean((pnl - pnl.mean()) ** 3) / pnl.std() ** 3
    assert skew == pytest.approx(k3 / k2**1.5, abs=0.05)


def test_dgv_cornish_fisher_matches_simulation_of_the_same_form_for_a_skewed_book():
    # A short put 11 days from expiry: P&L skew about -1.1, excess kurtosis 1.5.
    portfolio = make_portfolio(Holding("SPY250117P00575000", -10))
    k1, k2, k3, _ = quadratic_pnl(portfolio).cumulants()
    assert k3 / k2**1.5 < -1.0

    cf = delta_gamma_vega_var(portfolio)
    sim = delta_gamma_vega_var(portfolio, method="simulate", n_sims=400_000, seed=3)

    for name in ("var95", "var99", "es95", "es99"):
        assert getattr(cf, name) == pytest.approx(getattr(sim, name), rel=0.015), name
    normal_var99 = norm.ppf(0.99) * np.sqrt(k2) - k1
    assert cf.var99 > 1.05 * normal_var99  # the skew matters, and is accounted for


def test_dgv_and_full_revaluation_historical_roughly_agree_for_a_short_put_spread():
    portfolio = make_portfolio(*short_put_spread())
    returns = synthetic_returns(n=20_000, seed=8)

    hist = historical_var(portfolio, returns)
    cf = delta_gamma_vega_var(portfolio)
    sim = delta_gamma_vega_var(portfolio, method="simulate", n_sims=200_000)

    for approx in (cf, sim):
        assert approx.var95 == pytest.approx(hist.var95, rel=0.08)
        assert approx.var99 == pytest.approx(hist.var99, rel=0.08)
        assert approx.es99 == pytest.approx(hist.es99, rel=0.1)


def test_dgv_vega_risk_adds_to_a_short_option_book():
    portfolio = make_portfolio(Holding("SPY250221P00570000", -10))

    without = delta_gamma_vega_var(portfolio)
    with_vega = delta_gamma_vega_var(portfolio, vol_of_vol=1.0, spot_vol_correlation=-0.7)

    assert with_vega.var99 > without.var99


def test_dgv_rejects_a_bad_method_and_bad_vol_of_vol():
    portfolio = make_portfolio(Holding("SPY", 1))
    with pytest.raises(DataError, match="method"):
        delta_gamma_vega_var(portfolio, method="delta-normal")
    with pytest.raises(DataError, match="vol_of_vol missing for SPY"):
        delta_gamma_vega_var(portfolio, vol_of_vol={"QQQ": 1.0})


# --- incremental -------------------------------------------------------------------------------


def historical(returns):
    return lambda p: historical_var(p, returns)


@pytest.mark.parametrize(
    ("trade", "sign"),
    [
        ((Holding("SPY250221P00580000", 1),), -1),  # a protective put
        ((Holding("SPY", -50),), -1),  # sell half the shares
        ((Holding("SPY", 100),), +1),  # double up
        ((Holding("SPY250221P00570000", -2),), +1),  # sell puts: more long delta
    ],
)
def test_incremental_var_and_es_sign(trade, sign):
    portfolio = make_portfolio(Holding("SPY", 100))
    returns = synthetic_returns()
    for measure in (historical(returns), delta_gamma_vega_var):
        before, after, delta = incremental(measure, portfolio, trade)

        assert np.sign(delta.var99) == sign
        assert np.sign(delta.es99) == sign
        assert np.sign(delta.var95) == sign
        assert delta.var99 == pytest.approx(after.var99 - before.var99)
        assert delta.method.startswith("incremental")


def test_incremental_before_is_the_measure_of_the_portfolio_alone():
    portfolio = make_portfolio(Holding("SPY", 100))
    measure = historical(synthetic_returns())

    before, after, _ = incremental(measure, portfolio, [Holding("QQQ", 10)])

    assert before == measure(portfolio)
    assert after == measure(make_portfolio(Holding("SPY", 100), Holding("QQQ", 10)))


def test_portfolio_greeks_theta_is_the_dgv_constant():
    portfolio = make_portfolio(*short_put_spread())
    q = quadratic_pnl(portfolio, 3)

    assert q.constant == pytest.approx(portfolio_greeks(portfolio).total.theta * 3 / 252)
