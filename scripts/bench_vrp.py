#!/usr/bin/env python
"""Forecast quality and cost of the volatility forecasters (thetadesk.signals.vrp) on real
S&P 500 history; print one JSON object.

Usage: .venv/bin/python scripts/bench_vrp.py [--horizon 21] [--history 1100] [--start 2003-01-01]
                                             [--ticks 4] [--variants] [--fit-window N]

Data: ``arch.data.sp500`` (daily OHLC, 1999-01-04 to 2018-12-31) and ``arch.data.vix`` (VIX
closes from 2014-01-03), as the historical replay loads them. At every origin session ``s``
from --start to the last with --horizon sessions after it, each forecaster is given the bars
of the --history sessions up to and including ``s`` (what ``DailyHistory.before`` gives the
strategy the next morning) and forecasts the realised volatility of the next --horizon
sessions: ``sqrt(252 / h * sum(r^2))`` of the close-to-close log returns ``s+1 .. s+h``. Every
forecast is point in time (the forecasters see nothing after ``s``); origins are the same for
every forecaster (those where all have a value), and the targets overlap (h-session windows
starting each session), so the Diebold-Mariano statistics use Newey-West errors with h - 1 lags.

Forecasters: ``naive`` (trailing 21-session realised volatility, the baseline), ``har``
(HarForecaster defaults: log-HAR on the overnight-plus-Parkinson daily variance, refit every 21
weekdays on 1000 sessions), ``garch`` (GarchForecaster defaults: GJR-GARCH(1,1), Gaussian
QMLE, the same schedule). --variants adds ``har_levels`` (HAR in levels), ``har_gk`` and
``har_squared`` (Garman-Klass and squared-return proxies), ``har_500`` and ``garch_500`` (500-
session windows), ``garch_t`` (GJR, Student-t), ``garch_sym`` (GARCH(1,1), Gaussian).

Keys:
  quality.<name>          over the common origins: n, rmse (annualised vol), mae, bias (mean
                          forecast - realised), corr (of forecast and realised vol), qlike (mean
                          of RV/F - ln(RV/F) - 1 on variances; Patton 2011's robust loss),
                          rmse_vs_naive and qlike_vs_naive (ratios: below 1 beats the baseline),
                          dm_qlike_t (Diebold-Mariano t of the QLIKE loss difference with the
                          naive; negative: this one's loss is lower), by_period (rmse and qlike
                          in 2003-07, 2008-09, 2010-13, 2014-18)
  vrp.<name>              2014-2018 origins with a VIX close: mean_vix, mean_vrp (VIX/100 -
                          forecast, vol points as decimals), mean_ratio (VIX/100 / forecast),
                          share_positive; realised_vrp (VIX/100 - the realised vol that
                          followed, the same for all) and realised_share_positive; the
                          signal's use: corr_ex_post (of
                          the forecast VRP with the realised one), realised_vrp_top_third and
                          _bottom_third (the mean realised VRP over origins whose forecast VRP
                          ratio was in its top or bottom third), realised_vrp_when_positive and
                          _when_not_positive (over origins where VIX was above the forecast, and
                          where it was not: what an "implied above forecast" entry rule keeps
                          and skips)
  cost.<name>             per origin session: ms (--ticks calls to forecast on the same bars,
                          as the strategy asks at several ticks of a session), vs_naive (ms /
                          naive ms, timed in this run, the forecasters interleaved session by
                          session), refits (fits computed over the run)
  no_forecast             forecasters that never had a value (e.g. GARCH's 500-session minimum
                          on a --history of 300), with their reason; first_nan_reason: each
                          forecaster's first reason for a NaN over the run
  arch_import_s           seconds to import arch.arch_model in a fresh process (paid once, on
                          the first GARCH fit)
  settings, measured_at
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from thetadesk.signals.history import DailyBars  # noqa: E402
from thetadesk.signals.vrp import (  # noqa: E402
    SESSIONS_PER_YEAR,
    GarchForecaster,
    HarForecaster,
    RealisedForecaster,
)

PERIODS = (("2003-07", date(2003, 1, 1), date(2007, 12, 31)),
           ("2008-09", date(2008, 1, 1), date(2009, 12, 31)),
           ("2010-13", date(2010, 1, 1), date(2013, 12, 31)),
           ("2014-18", date(2014, 1, 1), date(2018, 12, 31)))


def forecasters(variants: bool, fit_window: int | None = None) -> dict:
    if fit_window is not None:  # the defaults' schedule on a shorter window
        fit = {"fit_window": fit_window}
        out = {"naive": RealisedForecaster(21),
               "har": HarForecaster(min_fit=min(252, fit_window), **fit),
               "garch": GarchForecaster(min_fit=min(500, fit_window), **fit)}
        return out
    out = {"naive": RealisedForecaster(21), "har": HarForecaster(), "garch": GarchForecaster()}
    if variants:
        out.update(har_levels=HarForecaster(log=False),
                   har_gk=HarForecaster(proxy="garman_klass"),
                   har_squared=HarForecaster(proxy="squared_return"),
                   har_500=HarForecaster(fit_window=500),
                   garch_500=GarchForecaster(fit_window=500),
                   garch_t=GarchForecaster(dist="t"),
                   garch_sym=GarchForecaster(asymmetric=False))
    return out


def load():
    from arch.data import sp500, vix

    spx, vx = sp500.load(), vix.load()
    sessions = tuple(ts.date() for ts in spx.index)
    ohlc = tuple(spx[k].to_numpy(dtype=np.float64) for k in ("Open", "High", "Low", "Close"))
    level = vx["vix"].reindex(spx.index).to_numpy(dtype=np.float64) / 100.0
    return sessions, ohlc, level


def dm_t(loss_a: np.ndarray, loss_b: np.ndarray, lags: int) -> float:
    """Diebold-Mariano t statistic of mean(loss_a - loss_b), Newey-West (Bartlett) errors."""
    d = loss_a - loss_b
    n = len(d)
    if n < 2:
        return math.nan
    mean = float(d.mean())
    u = d - mean
    var = float(u @ u) / n
    for k in range(1, lags + 1):
        var += 2.0 * (1.0 - k / (lags + 1.0)) * float(u[k:] @ u[:-k]) / n
    return mean / math.sqrt(var / n) if var > 0 else math.nan


def qlike(realised: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    ratio = realised ** 2 / forecast ** 2
    return ratio - np.log(ratio) - 1.0


def quality(f: np.ndarray, rv: np.ndarray, days: np.ndarray, base: np.ndarray, h: int) -> dict:
    err = f - rv
    ql, ql_base = qlike(rv, f), qlike(rv, base)
    rmse = float(np.sqrt(np.mean(err ** 2)))
    out = {"n": len(f), "rmse": round(rmse, 5), "mae": round(float(np.mean(np.abs(err))), 5),
           "bias": round(float(err.mean()), 5), "corr": round(float(np.corrcoef(f, rv)[0, 1]), 4),
           "qlike": round(float(ql.mean()), 5),
           "rmse_vs_naive": round(rmse / float(np.sqrt(np.mean((base - rv) ** 2))), 4),
           "qlike_vs_naive": round(float(ql.mean()) / float(ql_base.mean()), 4),
           "dm_qlike_t": round(dm_t(ql, ql_base, h - 1), 2), "by_period": {}}
    for name, a, b in PERIODS:
        m = (days >= np.datetime64(a)) & (days <= np.datetime64(b))
        if m.any():
            out["by_period"][name] = {
                "n": int(m.sum()), "rmse": round(float(np.sqrt(np.mean(err[m] ** 2))), 5),
                "qlike": round(float(ql[m].mean()), 5)}
    return out


def vrp_figures(f: np.ndarray, rv: np.ndarray, iv: np.ndarray) -> dict:
    ante, post = iv - f, iv - rv
    ratio = iv / f
    lo, hi = np.quantile(ratio, [1 / 3, 2 / 3])
    return {"n": len(f), "mean_vix": round(float(iv.mean()), 5),
            "mean_vrp": round(float(ante.mean()), 5), "mean_ratio": round(float(ratio.mean()), 4),
            "share_positive": round(float(np.mean(ante > 0)), 4),
            "realised_vrp": round(float(post.mean()), 5),
            "realised_share_positive": round(float(np.mean(post > 0)), 4),
            "corr_ex_post": round(float(np.corrcoef(ante, post)[0, 1]), 4),
            "realised_vrp_top_third": round(float(post[ratio >= hi].mean()), 5),
            "realised_vrp_bottom_third": round(float(post[ratio <= lo].mean()), 5),
            "realised_vrp_when_positive": _mean(post[ante > 0]),
            "realised_vrp_when_not_positive": _mean(post[ante <= 0])}


def _mean(x: np.ndarray) -> float | None:
    return round(float(x.mean()), 5) if len(x) else None


def arch_import_seconds() -> float:
    code = ("import time; t = time.perf_counter(); from arch import arch_model; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return round(float(out.stdout.strip()), 3)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--horizon", type=int, default=21, help="sessions ahead (default 21)")
    p.add_argument("--history", type=int, default=1100,
                   help="sessions of bars given to each forecast (default 1100)")
    p.add_argument("--start", type=date.fromisoformat, default=date(2003, 1, 1),
                   help="first origin session (default 2003-01-01)")
    p.add_argument("--ticks", type=int, default=4, help="calls per session (default 4)")
    p.add_argument("--variants", action="store_true", help="also the variants (see --help)")
    p.add_argument("--fit-window", type=int, default=None,
                   help="fit har and garch on this many sessions (default: theirs, 1000)")
    args = p.parse_args(argv)
    h = args.horizon
    sessions, (o, hi, lo, c), level = load()
    days = np.array(sessions, dtype="datetime64[D]")
    r2 = np.concatenate([[0.0], np.cumsum(np.log(c[1:] / c[:-1]) ** 2)])
    origins = [i for i in range(len(sessions) - h) if sessions[i] >= args.start]
    nan = np.full(len(sessions), np.nan)
    fs = forecasters(args.variants, args.fit_window)
    got = {name: nan.copy() for name in fs}
    if any(isinstance(f, GarchForecaster) for f in fs.values()):
        from arch import arch_model  # noqa: F401  (imported once, outside the timing)
    spent = dict.fromkeys(fs, 0.0)
    reasons: dict[str, str] = {}  # each forecaster's first reason for a NaN
    for i in origins:  # forecasters interleaved: a busy machine slows them all alike
        a = max(0, i + 1 - args.history)
        bars = DailyBars(sessions[a:i + 1], o[a:i + 1], hi[a:i + 1], lo[a:i + 1], c[a:i + 1],
                         nan[a:i + 1])
        for name, f in fs.items():
            t0 = time.perf_counter()
            for _ in range(args.ticks):
                out = f.forecast(bars, h)
            spent[name] += time.perf_counter() - t0
            got[name][i] = out.vol
            if out.reason:
                reasons.setdefault(name, out.reason)
    cost = {name: {"ms": spent[name] / len(origins) * 1e3,
                   "refits": getattr(f, "fits_computed", None)} for name, f in fs.items()}
    base_ms = cost["naive"]["ms"]
    for v in cost.values():
        v["vs_naive"] = round(v["ms"] / base_ms, 2)
        v["ms"] = round(v["ms"], 4)
    idx = np.array(origins)
    rv = np.sqrt(SESSIONS_PER_YEAR / h * (r2[idx + h] - r2[idx]))
    # Compared where all have a forecast; one that never has any is left out, with its reason.
    have = [k for k in fs if np.isfinite(got[k][idx]).any()]
    ok = np.all([np.isfinite(got[k][idx]) for k in have], axis=0)
    idx, rv = idx[ok], rv[ok]
    base = got["naive"][idx]
    result = {"quality": {k: quality(got[k][idx], rv, days[idx], base, h) for k in have}}
    with_vix = np.isfinite(level[idx])
    result["vrp"] = {k: vrp_figures(got[k][idx][with_vix], rv[with_vix], level[idx][with_vix])
                     for k in have}
    result["no_forecast"] = {k: reasons.get(k) for k in fs if k not in have}
    result["first_nan_reason"] = reasons
    result["cost"] = cost
    result["arch_import_s"] = arch_import_seconds()
    result["settings"] = {"horizon": h, "history": args.history, "ticks": args.ticks,
                          "origins": [str(days[idx[0]]), str(days[idx[-1]])],
                          "common_origins": len(idx), "cpu_count": os.cpu_count()}
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return result


def _clean(x):
    """NaN is not JSON: an undefined figure (the baseline's test against itself) is null."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


if __name__ == "__main__":
    print(json.dumps(_clean(main()), indent=2, allow_nan=False))
