#!/usr/bin/env python
"""Benchmark thetadesk.pricing on random options; print one JSON object.

Usage: scripts/bench_pricing.py [--n 1000000] [--runs 5] [--seed 1]
       (run it with the project's venv: .venv/bin/python scripts/bench_pricing.py)

Keys:
  greeks_per_s            options/s for bsm_greeks (price + 5 Greeks), median of --runs
  reference_greeks_per_s  options/s for a plain numpy/scipy kernel computing the same six
                          outputs, timed in the same run (the baseline)
  greeks_vs_reference     greeks_per_s / reference_greeks_per_s (target >= 0.9)
  iv_per_s                options/s for implied_vol on the same options (target >= 2e6)
  iv_max_err              max |implied - true sigma| over the out-of-the-money options with
                          vega > 1e-6 (target < 1e-9)
  iv_max_err_itm          the same over in-the-money options: bounded by the input itself, since
                          float64 holds an ITM price's time value only to one ulp of the price
  iv_itm_err_in_input_ulps  max over ITM options of |error| * vega / ulp(max(price, S e^{-qT},
                          K e^{-rT})): the ITM error in units of the price's own rounding (a
                          price is the difference of terms that size, so a few ulps is exact)
  iv_nan_count            NaN results among options with vega > 1e-6 (should be 0)
  py_vollib_vectorized_iv_per_s  the same options through py_vollib_vectorized's implied
                          volatility (Jaeckel's LBR compiled with numba), timed in this run when
                          that package is importable (it is not a ThetaDesk dependency), else null
                          with py_vollib_vectorized_note saying why; its max error on the OTM set
                          is py_vollib_vectorized_iv_max_err

The options: S = 100, ln(K/F) uniform in [-1, 1], T log-uniform from 1 day to 3 years, sigma
log-uniform from 3% to 300%, r uniform in [-1%, 8%], q in [0, 4%], calls and puts half each.
Everything runs on one core (the process is pinned to one CPU, thread pools set to 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import numba  # noqa: E402
import numpy as np  # noqa: E402
from scipy.special import ndtr  # noqa: E402

from thetadesk.pricing import bsm_greeks, implied_vol  # noqa: E402


def reference_greeks(S, K, T, r, sigma, q, is_call):
    """A plain numpy kernel: the same six outputs, no validation, no edge-case handling."""
    th = np.where(is_call, 1.0, -1.0)
    sqt = np.sqrt(T)
    vol = sigma * sqt
    d1 = (np.log(S / K) + (r - q) * T) / vol + 0.5 * vol
    d2 = d1 - vol
    sd = S * np.exp(-q * T)
    kd = K * np.exp(-r * T)
    n1 = ndtr(th * d1)
    n2 = ndtr(th * d2)
    pdf = np.exp(-0.5 * d1 * d1) * (1.0 / np.sqrt(2.0 * np.pi))
    price = th * (sd * n1 - kd * n2)
    delta = th * (sd / S) * n1
    gamma = (sd / S) * pdf / (S * vol)
    vega = sd * pdf * sqt
    theta = -0.5 * sd * pdf * sigma / sqt + th * (q * sd * n1 - r * kd * n2)
    rho = th * kd * T * n2
    return price, delta, gamma, vega, theta, rho


def options(n: int, seed: int):
    rng = np.random.default_rng(seed)
    T = np.exp(rng.uniform(np.log(1 / 365), np.log(3.0), n))
    sigma = np.exp(rng.uniform(np.log(0.03), np.log(3.0), n))
    r = rng.uniform(-0.01, 0.08, n)
    q = rng.uniform(0.0, 0.04, n)
    S = np.full(n, 100.0)
    K = S * np.exp((r - q) * T) * np.exp(rng.uniform(-1.0, 1.0, n))
    is_call = rng.random(n) < 0.5
    return S, K, T, r, sigma, q, is_call


def median_rate(fn, n: int, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="options per run")
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    S, K, T, r, sigma, q, is_call = options(args.n, args.seed)
    greeks = bsm_greeks(S, K, T, r, sigma, q, is_call)  # also compiles / loads the cache
    implied_vol(greeks.price, S, K, T, r, q, is_call)

    reference_rate = median_rate(
        lambda: reference_greeks(S, K, T, r, sigma, q, is_call), args.n, args.runs
    )
    greeks_rate = median_rate(lambda: bsm_greeks(S, K, T, r, sigma, q, is_call), args.n, args.runs)
    iv_rate = median_rate(
        lambda: implied_vol(greeks.price, S, K, T, r, q, is_call), args.n, args.runs
    )

    iv = implied_vol(greeks.price, S, K, T, r, q, is_call)
    err = np.abs(iv - sigma)
    forward = S * np.exp((r - q) * T)
    otm = np.where(is_call, forward <= K, forward >= K)
    measurable = greeks.vega > 1e-6
    pvv_rate = pvv_err = None
    pvv_note = "py_vollib_vectorized not installed"
    try:
        from py_vollib_vectorized import vectorized_implied_volatility
    except ImportError:
        vectorized_implied_volatility = None
    if vectorized_implied_volatility is not None:
        flags = np.where(is_call, "c", "p")

        def pvv():
            return vectorized_implied_volatility(
                greeks.price, S, K, T, r, flags, q=q, model="black_scholes_merton",
                return_as="numpy", on_error="ignore",
            )

        try:
            pvv_err = float(np.nanmax(np.abs(pvv() - sigma)[measurable & otm]))
            pvv_rate = round(median_rate(pvv, args.n, args.runs))
        except Exception as exc:  # e.g. 0.1.1 does not compile under numba >= 0.60
            pvv_note = f"py_vollib_vectorized failed: {type(exc).__name__}"
    itm = measurable & ~otm
    scale = np.maximum(greeks.price, np.maximum(S * np.exp(-q * T), K * np.exp(-r * T)))
    ulps = err[itm] * greeks.vega[itm] / np.spacing(scale[itm])
    result = {
        "greeks_per_s": round(greeks_rate),
        "reference_greeks_per_s": round(reference_rate),
        "greeks_vs_reference": round(greeks_rate / reference_rate, 3),
        "iv_per_s": round(iv_rate),
        "iv_max_err": float(np.nanmax(err[measurable & otm])),
        "iv_max_err_itm": float(np.nanmax(err[itm])),
        "iv_itm_err_in_input_ulps": round(float(np.nanmax(ulps)), 2),
        "iv_nan_count": int(np.isnan(iv[measurable]).sum()),
        "py_vollib_vectorized_iv_per_s": pvv_rate,
        "py_vollib_vectorized_iv_max_err": pvv_err,
        **({} if pvv_rate is not None else {"py_vollib_vectorized_note": pvv_note}),
        "n": args.n,
        "runs": args.runs,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "python": platform.python_version(),
        "measured": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
