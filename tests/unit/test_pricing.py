"""Specifications of thetadesk.pricing: Black-Scholes-Merton prices, Greeks and implied volatility.

Conventions under test (the module docstring of thetadesk.pricing): T in years; vega per 1.00 of
volatility; theta per year of calendar time, i.e. -dV/dT; rho per 1.00 of rate; an invalid element
gives NaN in every output and never an exception or a numpy warning (this module turns every
warning into an error, on top of the project-wide pytest setting).

Every expected value here comes from an independent computation (closed forms with
scipy.stats.norm, finite differences, no-arbitrage identities), never from the code under test
evaluated a second time.
"""

from __future__ import annotations

import math
from functools import cache
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.stats import norm

from thetadesk.pricing import BSMGreeks, bsm_greeks, bsm_price, implied_vol

pytestmark = pytest.mark.filterwarnings("error")

EPS = float(np.finfo(np.float64).eps)
GREEKS = ("delta", "gamma", "vega", "theta", "rho")
OUTPUTS = ("price", *GREEKS)
# deadline=None: the first call of a kernel in a fresh environment compiles it (seconds).
PROPERTY = settings(max_examples=300, deadline=None)


# ---------------------------------------------------------------------------------------------
# Independent references


def _discounted(S, K, T, r, q):
    """(S e^{-qT}, K e^{-rT}): the discounted forward and strike."""
    return S * np.exp(-q * T), K * np.exp(-r * T)


def _scipy_bsm(S, K, T, r, sigma, q, is_call) -> dict[str, np.ndarray]:
    """Textbook closed forms with scipy.stats.norm (T > 0 and sigma > 0 only)."""
    S, K, T, r, sigma, q = (np.asarray(a, dtype=np.float64) for a in (S, K, T, r, sigma, q))
    w = np.where(is_call, 1.0, -1.0)
    sd, kd = _discounted(S, K, T, r, q)
    sqrt_t = np.sqrt(T)
    total_vol = sigma * sqrt_t
    d1 = (np.log(S / K) + (r - q + 0.5 * sigma**2) * T) / total_vol
    d2 = d1 - total_vol
    n1 = norm.cdf(w * d1)
    n2 = norm.cdf(w * d2)
    pdf = norm.pdf(d1)
    return {
        "price": w * (sd * n1 - kd * n2),
        "delta": w * np.exp(-q * T) * n1,
        "gamma": np.exp(-q * T) * pdf / (S * total_vol),
        "vega": sd * pdf * sqrt_t,
        "theta": -sd * pdf * sigma / (2.0 * sqrt_t) + w * (q * sd * n1 - r * kd * n2),
        "rho": w * kd * T * n2,
    }


def _natural_scale(output, S, K, T, r, sigma, q) -> np.ndarray:
    """The size of the terms an output is computed from: its rounding error is a few ulps of it."""
    sd, kd = _discounted(S, K, T, r, q)
    sqrt_t = np.sqrt(T)
    inv_sqrt_2pi = 1.0 / math.sqrt(2.0 * math.pi)
    return {
        "price": np.maximum(sd, kd),
        "delta": np.ones_like(sd),
        "gamma": np.exp(-q * T) * inv_sqrt_2pi / (S * sigma * sqrt_t),
        "vega": sd * sqrt_t * inv_sqrt_2pi,
        "theta": sd * sigma * inv_sqrt_2pi / (2.0 * sqrt_t) + abs(q) * sd + abs(r) * kd,
        "rho": kd * T,
    }[output]


def _failures(bad: np.ndarray, limit: int = 5, **columns) -> str:
    """The first few failing elements, for the assertion message."""
    idx = np.flatnonzero(np.asarray(bad).reshape(-1))
    flat = {k: np.broadcast_to(v, np.shape(bad)).reshape(-1) for k, v in columns.items()}
    rows = [", ".join(f"{k}={flat[k][i].item()!r}" for k in flat) for i in idx[:limit]]
    return f"{idx.size} failing element(s), first ones:\n  " + "\n  ".join(rows)


# ---------------------------------------------------------------------------------------------
# 1. Textbook values


def test_bsm_price_hull_example_matches_textbook_and_closed_form():
    # Hull, "Options, Futures, and Other Derivatives": S=42, K=40, r=10%, sigma=20%, six months.
    args = {"S": 42.0, "K": 40.0, "T": 0.5, "r": 0.10, "sigma": 0.20, "q": 0.0}

    call = bsm_price(**args, is_call=True)
    put = bsm_price(**args, is_call=False)

    assert call == pytest.approx(4.76, abs=0.005)
    assert put == pytest.approx(0.81, abs=0.005)
    assert call == pytest.approx(float(_scipy_bsm(**args, is_call=True)["price"]), rel=1e-13)
    assert put == pytest.approx(float(_scipy_bsm(**args, is_call=False)["price"]), rel=1e-13)


# ---------------------------------------------------------------------------------------------
# 2. Put-call parity


@PROPERTY
@given(
    S=st.floats(0.01, 1e4),
    log_moneyness=st.floats(-3.0, 3.0),
    T=st.floats(0.0, 30.0),
    sigma=st.floats(0.0, 5.0),
    r=st.floats(-0.10, 0.30),
    q=st.floats(-0.10, 0.30),
)
@example(S=100.0, log_moneyness=0.1, T=2.0, sigma=0.3, r=-0.05, q=-0.02)
@example(S=100.0, log_moneyness=-0.2, T=5.0, sigma=0.01, r=-0.01, q=0.04)
def test_bsm_price_random_inputs_satisfy_put_call_parity(S, log_moneyness, T, sigma, r, q):
    K = S * math.exp(log_moneyness)
    sd, kd = S * math.exp(-q * T), K * math.exp(-r * T)

    call = bsm_price(S, K, T, r, sigma, q, is_call=True)
    put = bsm_price(S, K, T, r, sigma, q, is_call=False)

    assert call - put == pytest.approx(sd - kd, rel=0.0, abs=1e-12 * (sd + kd))


# ---------------------------------------------------------------------------------------------
# 3. Greeks against central finite differences of bsm_price

_FD_BASE = {
    "S": 100.0,
    "K": 100.0 * np.array([0.6, 0.9, 1.0, 1.1, 1.5])[:, None, None, None],
    "T": np.array([1 / 365, 1 / 52, 0.25, 1.0, 3.0])[None, :, None, None],
    "sigma": np.array([0.05, 0.25, 0.6, 2.0])[None, None, :, None],
    "is_call": np.array([True, False]),
}


def _central_difference(greek: str, args: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """(finite difference, step, derivative order) with a step relative to the natural scale."""

    def price(**bumped):
        return bsm_price(**{**args, **bumped})

    S, T, r, sigma = args["S"], args["T"], args["r"], args["sigma"]
    spot_scale = S * sigma * np.sqrt(T)  # one standard deviation of the spot at expiry
    if greek == "delta":
        h = 1e-4 * spot_scale
        return (price(S=S + h) - price(S=S - h)) / (2 * h), h, 1
    if greek == "gamma":
        h = 1e-3 * spot_scale
        return (price(S=S + h) - 2 * price() + price(S=S - h)) / h**2, h, 2
    if greek == "vega":
        h = 1e-4 * sigma
        return (price(sigma=sigma + h) - price(sigma=sigma - h)) / (2 * h), h, 1
    if greek == "theta":  # per year of time passing: -dV/dT
        h = 1e-4 * T
        return -(price(T=T + h) - price(T=T - h)) / (2 * h), h, 1
    if greek == "rho":  # the price depends on r through r*T and r*T/(sigma*sqrt(T))
        h = 1e-4 * sigma / np.sqrt(T)
        return (price(r=r + h) - price(r=r - h)) / (2 * h), h, 1
    raise AssertionError(greek)


@pytest.mark.parametrize(("r", "q"), [(0.04, 0.015), (-0.01, 0.03)], ids=["r>q", "negative_r"])
@pytest.mark.parametrize("greek", GREEKS)
def test_bsm_greeks_each_greek_matches_central_difference_of_price(greek, r, q):
    """Truncation error is O(step^2) (relative tolerance); the rounding error of the price, a few
    ulps of max(S e^{-qT}, K e^{-rT}), divided by step^order gives the absolute tolerance."""
    args = {**_FD_BASE, "r": r, "q": q}
    scale = np.maximum(*_discounted(args["S"], args["K"], args["T"], r, q))

    analytic = getattr(bsm_greeks(**args), greek)
    numeric, h, order = _central_difference(greek, args)

    rtol, rounding = (1e-5, 16.0) if order == 2 else (1e-6, 8.0)
    tolerance = rtol * np.abs(analytic) + rounding * EPS * scale / h**order
    bad = ~(np.abs(analytic - numeric) <= tolerance)
    assert not bad.any(), _failures(
        bad, K=args["K"], T=args["T"], sigma=args["sigma"], is_call=args["is_call"],
        analytic=analytic, numeric=numeric, tolerance=tolerance,
    )


# ---------------------------------------------------------------------------------------------
# 4. Greeks against an independent scipy implementation


@PROPERTY
@given(
    S=st.floats(0.5, 5000.0),
    log_moneyness=st.floats(-2.0, 2.0),
    T=st.floats(1 / 365, 10.0),
    sigma=st.floats(0.01, 3.0),
    r=st.floats(-0.05, 0.15),
    q=st.floats(-0.05, 0.15),
    is_call=st.booleans(),
)
def test_bsm_greeks_random_inputs_match_scipy_closed_forms(S, log_moneyness, T, sigma, r, q,
                                                           is_call):
    K = S * math.exp(log_moneyness)
    expected = _scipy_bsm(S, K, T, r, sigma, q, is_call)

    greeks = bsm_greeks(S, K, T, r, sigma, q, is_call)

    for output in OUTPUTS:
        atol = 8 * EPS * float(_natural_scale(output, S, K, T, r, sigma, q))
        assert float(getattr(greeks, output)) == pytest.approx(
            float(expected[output]), rel=1e-11, abs=atol
        ), output


def test_bsm_greeks_price_field_equals_bsm_price():
    S, K, T, r, sigma, q = 100.0, np.array([80.0, 100.0, 125.0]), 0.7, 0.03, 0.35, 0.01

    for is_call in (True, False):
        greeks = bsm_greeks(S, K, T, r, sigma, q, is_call)
        assert_allclose(greeks.price, bsm_price(S, K, T, r, sigma, q, is_call), rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# 5. Implied volatility round trip


class _IVCases(NamedTuple):
    S: float
    K: np.ndarray
    T: np.ndarray
    r: np.ndarray
    q: np.ndarray
    sigma: np.ndarray
    is_call: np.ndarray
    log_moneyness: np.ndarray  # ln(K/F)


@cache
def _iv_cases_random() -> _IVCases:
    """~200k options: ln(K/F) uniform in [-1, 1], T and sigma log-uniform, random r, q, side."""
    rng = np.random.default_rng(20240611)
    n = 200_000
    m = rng.uniform(-1.0, 1.0, n)
    T = np.exp(rng.uniform(math.log(1 / 365), math.log(3.0), n))
    sigma = np.exp(rng.uniform(math.log(0.03), math.log(3.0), n))
    r = rng.uniform(-0.01, 0.08, n)
    q = rng.uniform(0.0, 0.04, n)
    is_call = rng.random(n) < 0.5
    S = 100.0
    K = S * np.exp((r - q) * T) * np.exp(m)
    return _IVCases(S, K, T, r, q, sigma, is_call, m)


@cache
def _iv_cases_grid() -> _IVCases:
    """21 moneyness x 12 expiries x 12 vols, each as a call and a put, random r and q."""
    rng = np.random.default_rng(7)
    m = np.linspace(-1.0, 1.0, 21)[:, None, None, None]
    T = np.geomspace(1 / 365, 3.0, 12)[None, :, None, None]
    sigma = np.geomspace(0.03, 3.0, 12)[None, None, :, None]
    is_call = np.array([True, False])[None, None, None, :]
    shape = (21, 12, 12, 2)
    r = rng.uniform(-0.01, 0.08, shape)
    q = rng.uniform(0.0, 0.04, shape)
    S = 100.0
    K = S * np.exp((r - q) * T) * np.exp(m)
    b = np.broadcast_arrays(K, T, r, q, sigma, is_call, m)
    return _IVCases(S, *(a.reshape(-1) for a in b))


_IV_SAMPLES = pytest.mark.parametrize(
    "cases", [_iv_cases_random, _iv_cases_grid], ids=["random_200k", "grid_21x12x12x2"]
)


@_IV_SAMPLES
def test_implied_vol_out_of_the_money_round_trip_recovers_sigma_to_1e_9(cases):
    """No intrinsic value (a call with K >= F, a put with K <= F): the price is pure time value,
    so wherever vega > 1e-6 the volatility is recoverable to 1e-9 absolute."""
    c = cases()
    greeks = bsm_greeks(c.S, c.K, c.T, c.r, c.sigma, c.q, c.is_call)
    checked = np.where(c.is_call, c.log_moneyness >= 0, c.log_moneyness <= 0) & (greeks.vega > 1e-6)

    iv = implied_vol(greeks.price, c.S, c.K, c.T, c.r, c.q, c.is_call)

    assert checked.sum() > 0.2 * checked.size
    bad = checked & ~(np.abs(iv - c.sigma) < 1e-9)  # a NaN fails too
    assert not bad.any(), _failures(
        bad, m=c.log_moneyness, T=c.T, sigma=c.sigma, r=c.r, q=c.q, is_call=c.is_call,
        price=greeks.price, vega=greeks.vega, iv=iv,
    )


@_IV_SAMPLES
def test_implied_vol_in_the_money_round_trip_is_within_conditioning_bound(cases):
    """An in-the-money price is intrinsic value + time value. Its time value cannot be known
    better than the rounding error of the forward-scale terms it is computed from and reduced by:
    bsm_price forms it as S e^{-qT} N(d1) - K e^{-rT} N(d2), and implied_vol strips the intrinsic
    value (again forward-scale) before solving. Both are exact only to a few ulps of
    max(S e^{-qT}, K e^{-rT}), so the best any inversion can do is

        |iv - sigma| * vega <= 64 * spacing(max(S e^{-qT}, K e^{-rT})).

    The ulp of the price itself would be too strict a yardstick: near the money an in-the-money
    price is small, and bsm_price alone is already off from the exact Black-Scholes value by
    hundreds of ulps of it (checked in extended precision), which no solver can undo."""
    c = cases()
    greeks = bsm_greeks(c.S, c.K, c.T, c.r, c.sigma, c.q, c.is_call)
    checked = np.where(c.is_call, c.log_moneyness < 0, c.log_moneyness > 0) & (greeks.vega > 1e-6)
    scale = np.maximum(*_discounted(c.S, c.K, c.T, c.r, c.q))

    iv = implied_vol(greeks.price, c.S, c.K, c.T, c.r, c.q, c.is_call)

    assert checked.sum() > 0.2 * checked.size
    bound = 64 * np.spacing(scale)
    bad = checked & ~(np.abs(iv - c.sigma) * greeks.vega <= bound)  # a NaN fails too
    assert not bad.any(), _failures(
        bad, m=c.log_moneyness, T=c.T, sigma=c.sigma, r=c.r, q=c.q, is_call=c.is_call,
        price=greeks.price, vega=greeks.vega, iv=iv,
    )


# ---------------------------------------------------------------------------------------------
# 6. Implied volatility outside its domain


def test_implied_vol_invalid_elements_are_nan_and_valid_neighbours_are_exact():
    S, T, r, q = 100.0, 1.0, 0.05, 0.02
    sd, kd80, kd120 = S * math.exp(-q * T), 80.0 * math.exp(-r * T), 120.0 * math.exp(-r * T)
    call_intrinsic, put_intrinsic = sd - kd80, kd120 - sd  # about 21.92 and 16.13
    good = {
        "otm_call": bsm_price(S, 120.0, T, r, 0.25, q, True),
        "otm_put": bsm_price(S, 80.0, T, r, 0.25, q, False),
        "itm_call": bsm_price(S, 80.0, T, r, 0.25, q, True),
        "short_atm_put": bsm_price(S, 100.0, 0.01, r, 0.25, q, False),
    }
    nan = math.nan
    # label: (price, S, K, T, r, q, is_call, expected volatility)
    rows = {
        "good otm call": (good["otm_call"], S, 120.0, T, r, q, True, 0.25),
        "call below intrinsic": (call_intrinsic - 0.5, S, 80.0, T, r, q, True, nan),
        "put below intrinsic": (put_intrinsic - 0.5, S, 120.0, T, r, q, False, nan),
        "negative otm price": (-1e-3, S, 120.0, T, r, q, True, nan),
        "good otm put": (good["otm_put"], S, 80.0, T, r, q, False, 0.25),
        "call just above S e^-qT": (sd * (1 + 1e-9), S, 120.0, T, r, q, True, nan),
        "call far above S e^-qT": (sd + 1.0, S, 80.0, T, r, q, True, nan),
        "put just above K e^-rT": (kd120 * (1 + 1e-9), S, 120.0, T, r, q, False, nan),
        "put far above K e^-rT": (2 * kd80, S, 80.0, T, r, q, False, nan),
        "good itm call": (good["itm_call"], S, 80.0, T, r, q, True, 0.25),
        "nan price": (nan, S, 120.0, T, r, q, True, nan),
        "+inf price": (math.inf, S, 120.0, T, r, q, True, nan),
        "-inf price": (-math.inf, S, 120.0, T, r, q, True, nan),
        "T = 0": (5.0, S, 95.0, 0.0, r, q, True, nan),
        "T < 0": (5.0, S, 95.0, -0.5, r, q, True, nan),
        "good short atm put": (good["short_atm_put"], S, 100.0, 0.01, r, q, False, 0.25),
        "negative S": (5.0, -S, 95.0, T, r, q, True, nan),
        "negative K": (5.0, S, -95.0, T, r, q, True, nan),
        "zero S": (5.0, 0.0, 95.0, T, r, q, True, nan),
        "zero K": (5.0, S, 0.0, T, r, q, True, nan),
        "nan S": (5.0, nan, 95.0, T, r, q, True, nan),
        "nan K": (5.0, S, nan, T, r, q, True, nan),
        "nan T": (5.0, S, 95.0, nan, r, q, True, nan),
        "nan r": (5.0, S, 95.0, T, nan, q, True, nan),
        "nan q": (5.0, S, 95.0, T, r, nan, True, nan),
        "inf S": (5.0, math.inf, 95.0, T, r, q, True, nan),
        "inf T": (5.0, S, 95.0, math.inf, r, q, True, nan),
        "inf r": (5.0, S, 95.0, T, math.inf, q, True, nan),
        "otm call priced at intrinsic 0": (0.0, S, 120.0, T, r, q, True, 0.0),
        "otm put priced at intrinsic 0": (0.0, S, 80.0, T, r, q, False, 0.0),
    }
    labels = list(rows)
    columns = [np.array(col) for col in zip(*rows.values(), strict=True)]
    price, S_, K_, T_, r_, q_, is_call, expected = columns

    iv = implied_vol(price, S_, K_, T_, r_, q_, is_call.astype(bool))

    wrong = [
        f"{label}: got {got!r}, expected {want!r}"
        for label, got, want in zip(labels, iv, expected, strict=True)
        if not (np.isnan(got) if np.isnan(want) else abs(got - want) < 1e-9)
    ]
    assert not wrong, "\n".join(wrong)


def test_implied_vol_price_exactly_at_upper_bound_is_nan():
    rng = np.random.default_rng(3)
    n = 1000
    S = 100.0
    K = np.concatenate([[95.0, 105.0], rng.uniform(30.0, 300.0, n)])
    T = np.concatenate([[1.0, 1.0], rng.uniform(0.01, 3.0, n)])
    r = np.concatenate([[0.0, 0.0], rng.uniform(-0.01, 0.08, n)])
    q = np.concatenate([[0.0, 0.0], rng.uniform(0.0, 0.04, n)])
    is_call = np.concatenate([[True, False], rng.random(n) < 0.5])
    sd, kd = _discounted(S, K, T, r, q)
    upper = np.where(is_call, sd, kd)

    iv = implied_vol(upper, S, K, T, r, q, is_call)

    bad = ~np.isnan(iv)
    assert not bad.any(), _failures(bad, K=K, T=T, r=r, q=q, is_call=is_call, price=upper, iv=iv)


def test_implied_vol_in_the_money_price_exactly_at_intrinsic_is_zero():
    rng = np.random.default_rng(4)
    n = 1000
    S = 100.0
    K = np.concatenate([[120.0, 105.0], rng.uniform(30.0, 300.0, n)])
    T = np.concatenate([[1.0, 1.0], rng.uniform(0.01, 3.0, n)])
    r = np.concatenate([[0.0, 0.0], rng.uniform(-0.01, 0.08, n)])
    q = np.concatenate([[0.0, 0.0], rng.uniform(0.0, 0.04, n)])
    is_call = K < S * np.exp((r - q) * T)  # in the money on the forward
    at_intrinsic = bsm_price(S, K, T, r, 0.0, q, is_call)

    iv = implied_vol(at_intrinsic, S, K, T, r, q, is_call)

    bad = ~(iv == 0.0)
    assert not bad.any(), _failures(
        bad, K=K, T=T, r=r, q=q, is_call=is_call, price=at_intrinsic, iv=iv
    )


# ---------------------------------------------------------------------------------------------
# 7. Expiry, zero volatility and invalid inputs

_EDGE_K = np.array([50.0, 80.0, 100.0, 120.0, 200.0])[:, None, None, None, None]
_EDGE_T = np.array([0.0, 1e-300, 1e-12, 1 / 365, 0.5, 3.0])[None, :, None, None, None]
_EDGE_SIGMA = np.array([0.0, 1e-300, 1e-12])[None, None, :, None, None]
_EDGE_CALL = np.array([True, False])[None, None, None, :, None]
_EDGE_R = np.array([0.05, -0.01, 0.0])[None, None, None, None, :]
_EDGE_Q = np.array([0.02, 0.03, 0.0])[None, None, None, None, :]


def test_bsm_greeks_zero_or_tiny_total_vol_give_forward_intrinsic_and_finite_greeks():
    S = 100.0
    sd, kd = _discounted(S, _EDGE_K, _EDGE_T, _EDGE_R, _EDGE_Q)
    intrinsic = np.maximum(np.where(_EDGE_CALL, sd - kd, kd - sd), 0.0)
    # Time value is at most about S e^{-qT} sigma sqrt(T) / sqrt(2 pi) (at the money forward).
    tolerance = sd * _EDGE_SIGMA * np.sqrt(_EDGE_T) + 8 * np.spacing(np.maximum(sd, kd))

    greeks = bsm_greeks(S, _EDGE_K, _EDGE_T, _EDGE_R, _EDGE_SIGMA, _EDGE_Q, _EDGE_CALL)
    price = bsm_price(S, _EDGE_K, _EDGE_T, _EDGE_R, _EDGE_SIGMA, _EDGE_Q, _EDGE_CALL)

    for output in OUTPUTS:
        assert np.isfinite(getattr(greeks, output)).all(), output
    assert (np.abs(price - intrinsic) <= tolerance).all()
    assert (np.abs(greeks.price - intrinsic) <= tolerance).all()


def test_bsm_price_zero_vol_discounts_intrinsic_on_the_forward_not_the_spot():
    # S = K: zero on the spot, but the forward S e^{(r-q)T} = 100 e^{0.05} is in the money.
    S, K, T, r, q = 100.0, 100.0, 1.0, 0.05, 0.0

    call = bsm_price(S, K, T, r, 0.0, q, True)
    put = bsm_price(S, K, T, r, 0.0, q, False)

    assert call == pytest.approx(S - K * math.exp(-r * T), rel=1e-15)  # 4.877...
    assert put == 0.0


def test_bsm_greeks_zero_vol_off_the_money_are_those_of_the_deterministic_payoff():
    S, T, r, q = 100.0, 0.75, 0.04, 0.01
    K = np.array([60.0, 90.0, 110.0, 150.0])[:, None]
    is_call = np.array([True, False])
    w = np.where(is_call, 1.0, -1.0)
    sd, kd = _discounted(S, K, T, r, q)
    itm = (w * (sd - kd) > 0).astype(float)

    greeks = bsm_greeks(S, K, T, r, 0.0, q, is_call)

    assert_allclose(greeks.delta, itm * w * math.exp(-q * T), rtol=1e-15)
    assert_array_equal(greeks.gamma, 0.0)
    assert_array_equal(greeks.vega, 0.0)
    assert_allclose(greeks.theta, itm * w * (q * sd - r * kd), rtol=1e-14)
    assert_allclose(greeks.rho, itm * w * kd * T, rtol=1e-14)


def test_bsm_greeks_at_the_money_at_expiry_gives_half_delta():
    S = K = 100.0
    r, q = 0.05, 0.02

    call = bsm_greeks(S, K, 0.0, r, 0.2, q, True)
    put = bsm_greeks(S, K, 0.0, r, 0.2, q, False)

    assert (call.price, put.price) == (0.0, 0.0)
    assert call.delta == 0.5
    assert put.delta == -0.5
    assert (call.gamma, call.vega, put.gamma, put.vega) == (0.0, 0.0, 0.0, 0.0)
    assert call.theta == pytest.approx(0.5 * (q * S - r * K), rel=1e-15)
    assert put.theta == pytest.approx(-0.5 * (q * S - r * K), rel=1e-15)
    assert (call.rho, put.rho) == (0.0, 0.0)


def test_bsm_greeks_at_the_money_forward_zero_vol_keeps_the_vega_limit():
    # r == q and S == K: S e^{-qT} == K e^{-rT} exactly, so the forward is exactly at the money.
    S = K = 100.0
    T, r = 0.5, 0.03
    limit = S * math.exp(-r * T) * math.sqrt(T) / math.sqrt(2 * math.pi)

    at_zero = bsm_greeks(S, K, T, r, 0.0, r, True)
    near_zero = bsm_greeks(S, K, T, r, 1e-9, r, True)

    assert at_zero.vega == pytest.approx(limit, rel=1e-14)
    assert near_zero.vega == pytest.approx(limit, rel=1e-8)


def test_bsm_greeks_invalid_elements_are_nan_in_every_output_and_only_there():
    nan, inf = math.nan, math.inf
    good = (100.0, 95.0, 0.5, 0.03, 0.25, 0.01)
    # label: (S, K, T, r, sigma, q)
    rows = {
        "good": good,
        "negative S": (-100.0, 95.0, 0.5, 0.03, 0.25, 0.01),
        "zero S": (0.0, 95.0, 0.5, 0.03, 0.25, 0.01),
        "nan S": (nan, 95.0, 0.5, 0.03, 0.25, 0.01),
        "inf S": (inf, 95.0, 0.5, 0.03, 0.25, 0.01),
        "good 2": (100.0, 110.0, 2.0, -0.01, 0.6, 0.02),
        "negative K": (100.0, -95.0, 0.5, 0.03, 0.25, 0.01),
        "zero K": (100.0, 0.0, 0.5, 0.03, 0.25, 0.01),
        "nan K": (100.0, nan, 0.5, 0.03, 0.25, 0.01),
        "inf K": (100.0, inf, 0.5, 0.03, 0.25, 0.01),
        "negative T": (100.0, 95.0, -0.5, 0.03, 0.25, 0.01),
        "nan T": (100.0, 95.0, nan, 0.03, 0.25, 0.01),
        "inf T": (100.0, 95.0, inf, 0.03, 0.25, 0.01),
        "good at expiry": (100.0, 95.0, 0.0, 0.03, 0.25, 0.01),
        "negative sigma": (100.0, 95.0, 0.5, 0.03, -0.25, 0.01),
        "nan sigma": (100.0, 95.0, 0.5, 0.03, nan, 0.01),
        "inf sigma": (100.0, 95.0, 0.5, 0.03, inf, 0.01),
        "nan r": (100.0, 95.0, 0.5, nan, 0.25, 0.01),
        "inf r": (100.0, 95.0, 0.5, inf, 0.25, 0.01),
        "nan q": (100.0, 95.0, 0.5, 0.03, 0.25, nan),
        "-inf q": (100.0, 95.0, 0.5, 0.03, 0.25, -inf),
        "good zero vol": (100.0, 95.0, 0.5, 0.03, 0.0, 0.01),
    }
    S, K, T, r, sigma, q = (np.array(col) for col in zip(*rows.values(), strict=True))
    invalid = np.array([not label.startswith("good") for label in rows])

    for is_call in (True, False):
        greeks = bsm_greeks(S, K, T, r, sigma, q, is_call)
        price = bsm_price(S, K, T, r, sigma, q, is_call)

        assert np.isnan(price[invalid]).all()
        assert np.isfinite(price[~invalid]).all()
        for output in OUTPUTS:
            values = getattr(greeks, output)
            assert np.isnan(values[invalid]).all(), output
            assert np.isfinite(values[~invalid]).all(), output
        # The valid elements are unaffected by their invalid neighbours.
        for i in np.flatnonzero(~invalid):
            alone = bsm_greeks(S[i], K[i], T[i], r[i], sigma[i], q[i], is_call)
            assert tuple(greeks[k][i] for k in range(6)) == tuple(alone)


# ---------------------------------------------------------------------------------------------
# 8. Broadcasting


def test_all_functions_scalar_inputs_give_numpy_scalars():
    price = bsm_price(100.0, 95.0, 0.5, 0.03, 0.25)
    greeks = bsm_greeks(100.0, 95.0, 0.5, 0.03, 0.25, 0.01, False)
    iv = implied_vol(price, 100.0, 95.0, 0.5, 0.03)

    assert isinstance(greeks, BSMGreeks)
    for value in (price, *greeks, iv):
        assert np.ndim(value) == 0
        assert isinstance(value, np.floating)


def test_all_functions_mixed_shapes_broadcast_and_equal_the_elementwise_loop():
    S, T, r, q = 100.0, np.array([0.75]), 0.03, 0.01
    K = np.array([70.0, 90.0, 100.0, 110.0, 140.0]).reshape(5, 1)
    sigma = np.array([0.1, 0.3, 0.9])
    is_call = np.array([True, False, True])

    price = bsm_price(S, K, T, r, sigma, q, is_call)
    greeks = bsm_greeks(S, K, T, r, sigma, q, is_call)
    iv = implied_vol(price, S, K, T, r, q, is_call)

    assert price.shape == iv.shape == (5, 3)
    assert all(np.shape(g) == (5, 3) for g in greeks)
    for i in range(5):
        for j in range(3):
            args = (S, K[i, 0], T[0], r, sigma[j], q, is_call[j])
            assert price[i, j] == bsm_price(*args)
            assert tuple(g[i, j] for g in greeks) == tuple(bsm_greeks(*args))
            assert iv[i, j] == implied_vol(price[i, j], S, K[i, 0], T[0], r, q, is_call[j])


def test_bsm_price_is_call_bool_array_selects_call_or_put_per_element():
    S, K, T, r, sigma, q = 100.0, np.array([[90.0], [110.0]]), 1.0, 0.03, 0.2, 0.01
    is_call = np.array([True, False, False, True])

    price = bsm_price(S, K, T, r, sigma, q, is_call)

    calls = bsm_price(S, K, T, r, sigma, q, True)
    puts = bsm_price(S, K, T, r, sigma, q, False)
    assert price.shape == (2, 4)
    assert_array_equal(price, np.where(is_call, calls, puts))
    assert (calls != puts).all()


# ---------------------------------------------------------------------------------------------
# 9. Monotonicity


def test_bsm_price_increases_with_sigma():
    S, r, q = 100.0, 0.03, 0.01
    K = np.array([60.0, 100.0, 150.0])[:, None, None, None]
    T = np.array([1 / 365, 0.25, 3.0])[None, :, None, None]
    is_call = np.array([True, False])[None, None, :, None]
    sigma = np.geomspace(0.01, 3.0, 400)[None, None, None, :]
    rounding = 4 * np.spacing(np.maximum(*_discounted(S, K, T, r, q)))

    greeks = bsm_greeks(S, K, T, r, sigma, q, is_call)

    step = np.diff(greeks.price, axis=-1)
    assert (step >= -rounding).all()  # never decreasing beyond rounding noise
    sensitive = (greeks.vega[..., 1:] > 1e-3) & (greeks.vega[..., :-1] > 1e-3)
    assert sensitive.sum() > sensitive.size / 2
    assert (step[sensitive] > 0).all()  # strictly increasing wherever vega is material


def test_bsm_price_call_decreases_and_put_increases_with_strike():
    S, r, q = 100.0, 0.03, 0.01
    K = np.linspace(1.0, 300.0, 600)
    T = np.array([1 / 365, 1.0, 3.0])[:, None]
    sigma = np.array([0.01, 0.2, 3.0])[:, None, None]
    rounding = 4 * np.spacing(np.maximum(*_discounted(S, K, T, r, q)))[..., 1:]

    calls = bsm_greeks(S, K, T, r, sigma, q, True)
    puts = bsm_greeks(S, K, T, r, sigma, q, False)

    call_step = np.diff(calls.price, axis=-1)
    put_step = np.diff(puts.price, axis=-1)
    assert (call_step <= rounding).all()
    assert (put_step >= -rounding).all()
    # Strictly wherever the strike moves the price: |dV/dK| = e^{-rT} N(+-d2) = |rho| / (K T).
    call_moves = (calls.rho / (K * T))[..., 1:] > 1e-3
    put_moves = (-puts.rho / (K * T))[..., 1:] > 1e-3
    assert call_moves.sum() > call_moves.size / 4
    assert put_moves.sum() > put_moves.size / 4
    assert (call_step[call_moves] < 0).all()
    assert (put_step[put_moves] > 0).all()


def test_implied_vol_astronomically_small_prices_reprice_the_input():
    """Regression: the small-price branch once divided by b^2, which underflows below 1e-154,
    and stopped 0.9% away from the price. Near the money with prices of 1e-150..1e-300 the
    solution must reprice the input (these options have no vega, so compare prices)."""
    S, K, T = 100.0, np.array([100.5, 101.0, 102.2]), 0.01
    prices = np.array([[1e-150], [1e-200], [1e-250], [1e-300]])

    iv = implied_vol(prices, S, K, T, 0.0)

    assert not np.isnan(iv).any()
    np.testing.assert_allclose(bsm_price(S, K, T, 0.0, iv), np.broadcast_to(prices, iv.shape),
                               rtol=1e-6)


@pytest.mark.parametrize("scale", [1e-200, 1e-160, 1e155, 1e300])
def test_implied_vol_extreme_price_scales_normalise_without_overflow(scale):
    S = K = scale
    price = bsm_price(S, K, 1.0, 0.0, 0.2)

    assert implied_vol(price, S, K, 1.0, 0.0) == pytest.approx(0.2, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# 9. The kernels run as Python (a process that has not loaded numba) give the compiled bits


def _wide_inputs(n: int, seed: int):
    """Random inputs over the whole domain, with invalid, zero, tiny and huge values mixed in."""
    rng = np.random.default_rng(seed)
    S = 100.0 * np.exp(rng.uniform(-3.0, 3.0, n))
    K = S * np.exp(rng.uniform(-2.0, 2.0, n))
    T = np.exp(rng.uniform(math.log(1e-6), math.log(10.0), n))
    sigma = np.exp(rng.uniform(math.log(1e-4), math.log(5.0), n))
    r = rng.uniform(-0.05, 0.25, n)
    q = rng.uniform(-0.02, 0.10, n)
    is_call = rng.random(n) < 0.5
    odd = rng.integers(0, n, n // 10)
    specials = np.array([0.0, -1.0, math.nan, math.inf, -math.inf, 1e-300, 1e300])
    for column in (S, K, T, sigma, r, q):
        picks = rng.choice(odd, size=n // 50)
        column[picks] = rng.choice(specials, size=picks.size)
    return S, K, T, r, sigma, q, is_call


def _same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: the same float64 bits, or both NaN (NaN payloads are not a result)."""
    return (a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))


def _per_element(kernel, inputs, outputs: int):
    """Run ``kernel`` on each element alone as Python; an element where Python raises is
    marked (its outputs left NaN)."""
    import thetadesk.pricing as pricing

    flat, _, n = pricing._flat(*inputs)
    outs = [np.full(n, math.nan) for _ in range(outputs)]
    raised = np.zeros(n, dtype=bool)
    for i in range(n):
        one = [a[i:i + 1] if a.size > 1 else a for a in flat]
        cell = [np.empty(1) for _ in range(outputs)]
        try:
            with np.errstate(all="ignore"):
                kernel(*one, *cell)
        except (ArithmeticError, ValueError, TypeError):
            raised[i] = True
            continue
        for o, c in zip(outs, cell, strict=True):
            o[i] = c[0]
    return outs, raised


@pytest.mark.parametrize("seed", [1, 2])
def test_the_kernels_run_as_python_give_the_compiled_bits(seed):
    import thetadesk.pricing as pricing

    compiled = pricing._compiled_kernels()
    S, K, T, r, sigma, q, is_call = _wide_inputs(3000, seed)
    price = bsm_price(S, K, T, r, sigma, q, is_call)
    # Prices to invert: the model's own, and the same moved across and beyond the bounds.
    moved = price * np.random.default_rng(seed).choice([1.0, 1.0, 0.999, 1.001, 0.0, 2.0],
                                                        size=price.size)
    cases = [
        (compiled.price, (S, K, T, r, sigma, q, is_call), 1),
        (compiled.greeks, (S, K, T, r, sigma, q, is_call), 6),
        (compiled.iv, (moved, S, K, T, r, q, is_call), 1),
    ]
    for which, (kernel, inputs, outputs) in enumerate(cases):
        flat, _, n = pricing._flat(*inputs)
        expected = [np.empty(n) for _ in range(outputs)]
        kernel(*flat, *expected)
        got, raised = _per_element(pricing._INTERPRETED[which], inputs, outputs)
        for e, g in zip(expected, got, strict=True):
            same = _same_bits(e, g)
            assert same[~raised].all(), (which, np.flatnonzero(~same & ~raised)[:5])
        # Python raises only on the odd element (log of 0, x / 0.0, an exp that overflows).
        assert raised.mean() < 0.02, (which, raised.mean())


def test_a_small_call_runs_as_python_until_a_large_one_loads_numba(monkeypatch):
    import thetadesk.pricing as pricing

    compiled = pricing._compiled_kernels()
    monkeypatch.setattr(pricing, "_compiled", None)
    strikes = np.array([90.0, 100.0, 110.0])
    greeks = bsm_greeks(100.0, strikes, 0.1, 0.04, 0.2, 0.01, False)
    iv = implied_vol(greeks.price, 100.0, strikes, 0.1, 0.04, 0.01, False)
    assert not pricing.kernels_compiled()  # three elements: no numba
    expected = [np.empty(3) for _ in range(6)]
    compiled.greeks(*pricing._flat(100.0, strikes, 0.1, 0.04, 0.2, 0.01, False)[0], *expected)
    for e, g in zip(expected, greeks, strict=True):
        assert _same_bits(e, g).all()
    assert_allclose(iv, 0.2, rtol=1e-12)

    bsm_price(100.0, np.linspace(50.0, 150.0, pricing.INTERPRETED_MAX_ELEMENTS + 1), 0.1,
              0.04, 0.2)
    assert pricing.kernels_compiled()  # one element too many: compiled from here on


@pytest.mark.parametrize(("which", "args"), [
    # log(S / K) of a ratio that underflows to 0: Python's log raises, compiled gives -inf.
    (0, (1e-300, 1e300, 1.37e-6, -1.0, 0.0045, -0.018, True)),
    # exp(-rT) that overflows: Python's exp raises, compiled gives inf.
    (1, (990.05, 2472.96, 1e300, -0.0397, 0.0098, 1e-300, True)),
    # a denormal price whose normalised value underflows to 0: log(0) in the solver.
    (2, (1.013e-321, 492.13, 418.40, 5.92e-6, 0.0497, 0.0665, False)),
])
def test_where_python_raises_the_compiled_kernels_answer(monkeypatch, which, args):
    import thetadesk.pricing as pricing

    compiled = pricing._compiled_kernels()
    outputs = 6 if which == 1 else 1
    _, raised = _per_element(pricing._INTERPRETED[which], args, outputs)
    assert raised.all()  # the case does make Python raise
    expected = [np.empty(1) for _ in range(outputs)]
    compiled[which](*pricing._flat(*args)[0], *expected)

    monkeypatch.setattr(pricing, "_compiled", None)
    got = (bsm_price, bsm_greeks, implied_vol)[which](*args)

    assert pricing.kernels_compiled()
    for e, g in zip(expected, got if which == 1 else (got,), strict=True):
        assert _same_bits(e, np.atleast_1d(g)).all()
