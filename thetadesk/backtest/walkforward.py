"""Walk-forward optimisation: choose parameters on the past, trade them on what follows.

The sessions of the run are cut into rolling windows: ``in_sample`` sessions followed by
``out_of_sample`` sessions, the next window starting ``out_of_sample`` sessions later, so the
out-of-sample stretches follow each other without gap or overlap. For each window every point of
the parameter grid is backtested in sample; the point with the best ``objective`` (``sharpe`` by
default; an undefined figure ranks last, ties go to the earlier grid point) is then backtested
out of sample, fresh (no position carried over). No out-of-sample session is ever seen by the
choice of its parameters.

The stitched out-of-sample equity curve chains the windows' daily returns from the starting
capital; its metrics (``thetadesk.analytics.metrics``) are the walk-forward result, next to the
baselines over the same sessions.

A grid maps dotted config paths to lists of values (``{"strategy.short_delta": [0.2, 0.3]}``,
``accounts.0.max_risk_per_trade`` for a list item); every combination is one point. Each
backtest is a ``Job`` (plain, picklable data) run by ``run_job`` in a scratch directory, so the
jobs of a phase can run anywhere: ``actors/backtest.py`` fans them out as Ray tasks; ``run_local``
runs them here, one after the other.
"""

from __future__ import annotations

import copy
import itertools
import math
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from thetadesk.analytics.metrics import Trade, metrics
from thetadesk.errors import ConfigError

__all__ = [
    "DEFAULT_GRID",
    "OBJECTIVES",
    "Job",
    "Window",
    "apply_params",
    "choose",
    "grid_points",
    "make_windows",
    "run_job",
    "run_local",
    "walk_forward",
]

DEFAULT_GRID: dict[str, list[Any]] = {
    "strategy.short_delta": [0.15, 0.20, 0.25, 0.30],
    "exits.take_profit": [0.50, 0.75],
}
OBJECTIVES = ("sharpe", "sortino", "calmar", "annual_return", "total_return")


@dataclass(frozen=True, slots=True)
class Window:
    index: int
    in_sample: tuple[date, date]
    out_of_sample: tuple[date, date]


@dataclass(frozen=True, slots=True)
class Job:
    """One backtest: the raw config ``data`` with ``params`` applied, over ``start``..``end``
    of ``source`` (replay, sim or a path), with the named fill model (None: the config's)."""

    data: dict
    source: str
    start: date
    end: date
    params: tuple[tuple[str, Any], ...]
    fill_model: str | None = None
    label: str = ""


def make_windows(sessions: Sequence[date], in_sample: int, out_of_sample: int) -> list[Window]:
    if in_sample < 1 or out_of_sample < 1:
        raise ConfigError(f"walk-forward windows need at least one session in and out of sample"
                          f" (got {in_sample} and {out_of_sample})")
    out = []
    i = 0
    while i + in_sample + out_of_sample <= len(sessions):
        ins = sessions[i:i + in_sample]
        oos = sessions[i + in_sample:i + in_sample + out_of_sample]
        out.append(Window(len(out), (ins[0], ins[-1]), (oos[0], oos[-1])))
        i += out_of_sample
    if not out:
        raise ConfigError(f"{len(sessions)} sessions cannot hold one walk-forward window of "
                          f"{in_sample} in-sample and {out_of_sample} out-of-sample sessions")
    return out


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[tuple[tuple[str, Any], ...]]:
    if not grid:
        raise ConfigError("the walk-forward grid is empty: give at least one path and values")
    for path, values in grid.items():
        if not isinstance(values, list | tuple) or not values:
            raise ConfigError(f"walk-forward grid {path}: needs a non-empty list of values")
    keys = list(grid)
    return [tuple(zip(keys, combo, strict=True))
            for combo in itertools.product(*(grid[k] for k in keys))]


def apply_params(data: Mapping[str, Any], params: Sequence[tuple[str, Any]]) -> dict:
    """A copy of the raw config with each dotted ``path = value`` set; ConfigError for a path
    the config does not have."""
    out = copy.deepcopy(dict(data))
    for path, value in params:
        node: Any = out
        keys = path.split(".")
        for key in keys[:-1]:
            try:
                node = node[int(key)] if isinstance(node, list) else node[key]
            except (KeyError, IndexError, ValueError, TypeError):
                raise ConfigError(f"walk-forward grid {path}: the config has no "
                                  f"{key!r} there") from None
        last = keys[-1]
        if isinstance(node, list):
            try:
                node[int(last)] = value
            except (IndexError, ValueError):
                raise ConfigError(f"walk-forward grid {path}: no item {last!r}") from None
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"walk-forward grid {path}: {'.'.join(keys[:-1])} is not a "
                              "section")
    return out


def run_job(job: Job, workdir: Path | None = None) -> dict[str, Any]:
    """Run one backtest in a scratch directory (removed afterwards): its sessions, equity,
    trades and metrics."""
    from thetadesk.backtest.engine import Backtest, backtest_config

    source: str | Path = job.source if job.source in ("replay", "sim") else Path(job.source)
    config, market, end, _ = backtest_config(apply_params(job.data, job.params), source=source,
                                             start=job.start, end=job.end,
                                             fill_model=job.fill_model)
    scratch = Path(tempfile.mkdtemp(prefix="wf-", dir=workdir))
    try:
        result = Backtest(config, scratch / "state", end=end, market=market,
                          data=job.source).run()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    m = metrics(result.equity, result.capital, result.trades,
                open_sessions=sum(1 for r in result.sessions if r.open_positions > 0),
                premium_traded=result.premium_traded)
    return {"label": job.label, "params": list(job.params), "capital": result.capital,
            "sessions": [r.session.isoformat() for r in result.sessions],
            "equity": result.equity, "trades": [_trade_dict(t) for t in result.trades],
            "metrics": m}


def _trade_dict(t: Trade) -> dict:
    return {f: getattr(t, f) for f in Trade.__slots__}


def run_local(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    return [run_job(job) for job in jobs]


def _score(m: Mapping[str, Any], objective: str) -> float:
    v = m.get(objective)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else -math.inf


def choose(results: Sequence[Mapping[str, Any]], objective: str = "sharpe") -> int:
    """Index of the best result by ``objective`` (undefined ranks last, ties: the first)."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"walk-forward objective {objective!r} is not one of "
                          f"{', '.join(OBJECTIVES)}")
    best, best_score = 0, -math.inf
    for i, r in enumerate(results):
        s = _score(r["metrics"], objective)
        if s > best_score:
            best, best_score = i, s
    return best


def walk_forward(data: Mapping[str, Any], source: str, sessions: Sequence[date], *,
                 grid: Mapping[str, Sequence[Any]] | None = None, in_sample: int = 252,
                 out_of_sample: int = 126, objective: str = "sharpe",
                 fill_model: str | None = None,
                 run_many: Callable[[Sequence[Job]], list[dict[str, Any]]] = run_local,
                 ) -> dict[str, Any]:
    """The walk-forward result (``results.json``'s ``walk_forward``, without baselines)."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"walk-forward objective {objective!r} is not one of "
                          f"{', '.join(OBJECTIVES)}")
    grid = dict(grid or DEFAULT_GRID)
    points = grid_points(grid)
    windows = make_windows(list(sessions), in_sample, out_of_sample)
    for params in points:  # every path must exist before anything runs
        apply_params(data, params)
    plain = copy.deepcopy(dict(data))
    in_jobs = [Job(plain, source, w.in_sample[0], w.in_sample[1], params, fill_model,
                   f"w{w.index} in-sample {i}")
               for w in windows for i, params in enumerate(points)]
    in_results = run_many(in_jobs)
    chosen = []
    for w in windows:
        batch = in_results[w.index * len(points):(w.index + 1) * len(points)]
        chosen.append((batch[choose(batch, objective)], batch))
    out_jobs = [Job(plain, source, w.out_of_sample[0], w.out_of_sample[1],
                    tuple(tuple(p) for p in best["params"]), fill_model,
                    f"w{w.index} out-of-sample")
                for w, (best, _) in zip(windows, chosen, strict=True)]
    out_results = run_many(out_jobs)
    capital = out_results[0]["capital"]
    stitched_sessions: list[str] = []
    stitched: list[float] = []
    level = capital
    trades: list[Trade] = []
    rows = []
    for w, (best, batch), oos in zip(windows, chosen, out_results, strict=True):
        start_level = level
        for s, e in zip(oos["sessions"], oos["equity"], strict=True):
            stitched_sessions.append(s)
            stitched.append(start_level * e / oos["capital"])
        level = stitched[-1]
        trades += [Trade(**t) for t in oos["trades"]]
        rows.append({
            "window": w.index,
            "in_sample": f"{w.in_sample[0]} to {w.in_sample[1]}",
            "out_of_sample": f"{w.out_of_sample[0]} to {w.out_of_sample[1]}",
            "params": {k: v for k, v in best["params"]},
            "in_sample_sharpe": best["metrics"]["sharpe"],
            "in_sample_objective": best["metrics"].get(objective),
            "in_sample_grid": [{"params": {k: v for k, v in r["params"]},
                                objective: r["metrics"].get(objective),
                                "trades": r["metrics"]["trades"]} for r in batch],
            "out_of_sample_return": oos["metrics"]["total_return"],
            "out_of_sample_sharpe": oos["metrics"]["sharpe"],
            "out_of_sample_trades": oos["metrics"]["trades"],
        })
    return {
        "objective": objective,
        "in_sample_sessions": in_sample,
        "out_of_sample_sessions": out_of_sample,
        "grid": grid,
        "windows": rows,
        "out_of_sample": metrics(stitched, capital, trades),
        "equity": [{"session": s, "equity": e}
                   for s, e in zip(stitched_sessions, stitched, strict=True)],
        "trades": [_trade_dict(t) for t in trades],
    }
