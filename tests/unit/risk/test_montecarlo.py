"""Monte Carlo VaR/ES without Ray: the fused kernel against the reference revaluation, the gbm
model against closed-form lognormal quantiles, and reproducibility over chunk partitions."""

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy.stats import norm

from thetadesk.errors import DataError
from thetadesk.risk.montecarlo import (
    TRADING_DAYS,
    chunks_pnl,
    correlation_root,
    make_plan,
    measures,
    revalue_fused,
    run_local,
    scenario_factors,
    split_chunks,
)
from thetadesk.risk.portfolio import Holding, Portfolio, UnderlyingState, revalue

AS_OF = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def _book(holdings, correlation=None):
    unds = {"SPY": UnderlyingState("SPY", 600.0, 0.18, 0.012),
            "QQQ": UnderlyingState("QQQ", 520.0, 0.22, 0.006)}
    return Portfolio(AS_OF, 0.04, unds, tuple(holdings),
                     {"SPY/QQQ": 0.9} if correlation is None else correlation)


def _random_book(rng, n):
    expiries = ["261125", "261127", "261204", "261218", "270115", "271217"]
    holdings = []
    for _ in range(n):
        und = str(rng.choice(["SPY", "QQQ"]))
        spot = 600.0 if und == "SPY" else 520.0
        strike = round(spot * float(rng.uniform(0.7, 1.3)))
        right = str(rng.choice(["C", "P"]))
        qty = int(rng.choice([-7, -3, -1, 1, 2, 9]))
        iv = float(rng.uniform(0.05, 1.2)) if rng.random() < 0.5 else None
        holdings.append(Holding(f"{und}{rng.choice(expiries)}{right}{strike * 1000:08d}", qty,
                                iv))
    holdings += [Holding("SPY", 150), Holding("QQQ", -40)]
    return _book(holdings)


@pytest.mark.parametrize("horizon_days", [0.0, 1.0, 3.0, 30.0])
def test_revalue_fused_random_books_matches_reference(horizon_days):
    rng = np.random.default_rng(11)
    for _ in range(5):
        book = _random_book(rng, 40)
        arrays = book.arrays()
        n = 2000
        spot = np.exp(rng.normal(0.0, 0.15, (n, 2)))
        spot[0] = 1.0  # includes the unshocked scenario
        vol = np.exp(rng.normal(0.0, 0.5, (n, 2)))
        h = horizon_days / TRADING_DAYS
        for vf in (vol, None):
            ref = revalue(arrays, spot, vf, h)
            got = revalue_fused(arrays, spot, vf, h)
            scale = np.sum(np.abs(arrays.units)) * 600.0 + 200.0 * 600.0
            np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-8 * scale)


def test_revalue_fused_option_past_expiry_at_horizon_is_intrinsic():
    # Expires 2026-11-25 16:00 New York: about 1.25 days away, before a 1-trading-day horizon.
    book = _book([Holding("SPY261125P00600000", 1), Holding("SPY261125C00590000", -2)])
    arrays = book.arrays()
    spot = np.array([[0.9, 1.0], [1.0, 1.0], [1.1, 1.0]])
    got = revalue_fused(arrays, spot, None, 1.0 / TRADING_DAYS)
    s = 600.0 * spot[:, 1]  # SPY is the second column (symbols are sorted)
    intrinsic = 100 * (np.maximum(600.0 - s, 0.0) - 2 * np.maximum(s - 590.0, 0.0))
    np.testing.assert_allclose(got, intrinsic - arrays.base_value, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got, revalue(arrays, spot, None, 1.0 / TRADING_DAYS), atol=1e-9)


def test_chunk_scenarios_fused_matches_reference_for_both_models():
    book = _random_book(np.random.default_rng(5), 20)
    arrays = book.arrays()
    for model in ("gbm", "full"):
        plan = make_plan(book, 3000, 2.0, 9, model, chunk_size=1000)
        spot, vol = scenario_factors(plan, 1)
        ref = revalue(arrays, spot, vol, plan.horizon_years)
        np.testing.assert_allclose(chunks_pnl(arrays, plan, 1, 2), ref, rtol=1e-8, atol=1e-5)


def _closed_form(qty, spot, vol, h, p):
    a = vol * math.sqrt(h)
    if qty > 0:  # loss = qty S (1 - F), worst at the low quantile of Z
        z = norm.ppf(1 - p)
        var = qty * spot * (1 - math.exp(-0.5 * a * a + a * z))
        # E[F 1{Z <= z}] = N(z - a) for F = exp(-a^2/2 + a Z)
        es = qty * spot * (1 - norm.cdf(z - a) / (1 - p))
    else:  # loss = |qty| S (F - 1), worst at the high quantile of Z
        z = norm.ppf(p)
        var = -qty * spot * (math.exp(-0.5 * a * a + a * z) - 1)
        es = -qty * spot * (norm.cdf(a - z) / (1 - p) - 1)
    return var, es


@pytest.mark.parametrize("qty", [100, -250])
def test_gbm_shares_only_var_es_match_closed_form_lognormal(qty):
    book = Portfolio(AS_OF, 0.04, {"SPY": UnderlyingState("SPY", 600.0, 0.25, 0.0)},
                     (Holding("SPY", qty),))
    days = 10.0
    result = run_local(book, 200_000, days, seed=3, model="gbm")
    h = days / TRADING_DAYS
    for p, var, es in ((0.95, result.var95, result.es95), (0.99, result.var99, result.es99)):
        want_var, want_es = _closed_form(qty, 600.0, 0.25, h, p)
        assert var == pytest.approx(want_var, rel=0.02)
        assert es == pytest.approx(want_es, rel=0.02)


@pytest.mark.parametrize("model", ["gbm", "full"])
def test_es_at_least_var(model):
    book = _random_book(np.random.default_rng(2), 10)
    result = run_local(book, 20_000, 5.0, seed=1, model=model)
    assert result.es95 >= result.var95
    assert result.es99 >= result.var99
    assert result.var99 >= result.var95


def test_measures_convention_on_known_losses():
    # Losses 1..100 shuffled: k = ceil(0.95 * 100) = 95, VaR95 = 95, ES95 = mean(95..100).
    losses = np.random.default_rng(0).permutation(np.arange(1.0, 101.0))
    m = measures(-losses)
    assert m.var95 == 95.0
    assert m.es95 == pytest.approx(np.mean(np.arange(95.0, 101.0)))
    assert m.var99 == 99.0
    assert m.es99 == pytest.approx(99.5)
    assert m.var95 == np.quantile(losses, 0.95, method="inverted_cdf")


@pytest.mark.parametrize("model", ["gbm", "full"])
def test_run_local_one_and_four_workers_bit_identical(model):
    book = _random_book(np.random.default_rng(8), 6)
    one = run_local(book, 10_001, 1.0, seed=42, workers=1, model=model, chunk_size=997,
                    keep_pnl=True)
    four = run_local(book, 10_001, 1.0, seed=42, workers=4, model=model, chunk_size=997,
                     keep_pnl=True)
    assert one.chunks == 11
    assert np.array_equal(one.pnl, four.pnl)
    assert (one.var95, one.var99, one.es95, one.es99) == (
        four.var95, four.var99, four.es95, four.es99)


def test_chunks_any_partition_concatenates_to_the_same_pnl():
    book = _random_book(np.random.default_rng(4), 4)
    arrays = book.arrays()
    plan = make_plan(book, 5000, 1.0, 7, "full", chunk_size=300)
    whole = chunks_pnl(arrays, plan, 0, plan.n_chunks)
    for parts in (2, 3, 5, plan.n_chunks, plan.n_chunks + 3):
        pieces = [chunks_pnl(arrays, plan, a, b) for a, b in split_chunks(plan.n_chunks, parts)]
        assert np.array_equal(np.concatenate(pieces), whole)


def test_chunk_seeds_follow_seedsequence_spawn():
    book = _book([Holding("SPY", 1)], correlation={})
    plan = make_plan(book, 400, 1.0, 123, "gbm", chunk_size=100)
    child = np.random.SeedSequence(123).spawn(plan.n_chunks)[2]
    z = np.random.default_rng(child).standard_normal((100, 2))
    h = plan.horizon_years
    want = np.exp(plan.vols * math.sqrt(h) * z - 0.5 * plan.vols**2 * h)
    np.testing.assert_allclose(scenario_factors(plan, 2)[0], want, rtol=1e-14)


def test_same_seed_reproducible_different_seed_differs():
    book = _random_book(np.random.default_rng(6), 5)
    a = run_local(book, 5000, 1.0, seed=1, keep_pnl=True)
    b = run_local(book, 5000, 1.0, seed=1, keep_pnl=True)
    c = run_local(book, 5000, 1.0, seed=2, keep_pnl=True)
    assert np.array_equal(a.pnl, b.pnl)
    assert not np.array_equal(a.pnl, c.pnl)
    assert a.var99 != c.var99


def test_gbm_scenarios_have_the_portfolio_correlation():
    book = _book([Holding("SPY", 1)])
    plan = make_plan(book, 100_000, 1.0, 0, "gbm")
    spot, vol = scenario_factors(plan, 0)
    assert vol is None
    r = np.log(spot)
    assert np.corrcoef(r.T)[0, 1] == pytest.approx(0.9, abs=0.01)
    assert r.std(axis=0) == pytest.approx(plan.vols * math.sqrt(plan.horizon_years), rel=0.02)


def test_full_scenarios_fat_tailed_and_vol_moves_against_spot():
    book = _book([Holding("SPY", 1)])
    plan = make_plan(book, 200_000, 1.0, 0, "full")
    spot, vol = scenario_factors(plan, 0)
    x = np.log(spot[:, 1])
    kurtosis = np.mean((x - x.mean()) ** 4) / np.var(x) ** 2
    assert kurtosis > 4.0  # a normal has 3
    assert np.corrcoef(x, np.log(vol[:, 1]))[0, 1] == pytest.approx(-0.7, abs=0.02)


def test_correlation_root_singular_matrix_falls_back_to_eigen():
    corr = np.array([[1.0, 1.0], [1.0, 1.0]])
    root = correlation_root(corr)
    np.testing.assert_allclose(root @ root.T, corr, atol=1e-12)


def test_make_plan_rejects_bad_arguments():
    book = _book([Holding("SPY", 1)])
    with pytest.raises(DataError, match="scenarios"):
        make_plan(book, 0, 1.0, 0)
    with pytest.raises(DataError, match="model"):
        make_plan(book, 10, 1.0, 0, "heston")
    with pytest.raises(DataError, match="horizon_days"):
        make_plan(book, 10, -1.0, 0)
