#!/usr/bin/env python
"""Benchmark the Monte Carlo stress test: one worker against all cores on the same run; print
one JSON object.

Usage: scripts/bench_stress.py [--portfolio examples/portfolio50.yaml] [--scenarios 1000000]
                               [--horizon-days 1] [--seed 0] [--model full] [--runs 3]
                               [--workers W]
       (run it with the project's venv: .venv/bin/python scripts/bench_stress.py)

One local Ray cluster (or RAY_ADDRESS) for the whole benchmark; the worker processes are warmed
up first. Then --runs runs alternate one worker and W workers (default: the CPU count), each
timed like scripts/stress.py (`seconds` from dispatch to the reduced result, Ray start-up
excluded). Keys:

  one_worker_seconds, all_workers_seconds     medians over --runs
  one_worker_revaluations_per_s, all_workers_revaluations_per_s
                                              positions x scenarios / median seconds
  ratio                                       all_workers_revaluations_per_s over the one-worker
                                              figure (target >= 1.5 on 2 cores)
  identical                                   the two runs' VaR/ES are bit-identical (same seed)
  var95, var99, es95, es99, scenarios, positions, workers, model, seed, horizon_days, chunks
  one_worker_runs_s, all_workers_runs_s       every run's seconds
  one_worker_task_cpu_s, all_workers_task_cpu_s  the Ray tasks' CPU seconds in each run: when
                                              they fall well short of the wall time, other
                                              processes were competing for the cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from datetime import UTC, datetime

from actors.stress import ensure_ray, run_stress, warm_up
from thetadesk.risk.portfolio_file import load_portfolio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--portfolio", default="examples/portfolio50.yaml")
    parser.add_argument("--scenarios", type=int, default=1_000_000)
    parser.add_argument("--horizon-days", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=("gbm", "full"), default="full")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    book = load_portfolio(args.portfolio)
    ensure_ray(args.workers)
    warm_up(book, args.workers)
    one, many = [], []
    for _ in range(args.runs):
        one.append(run_stress(book, args.scenarios, args.horizon_days, args.seed, 1, args.model))
        many.append(run_stress(book, args.scenarios, args.horizon_days, args.seed, args.workers,
                               args.model))
    t1 = statistics.median(r.seconds for r in one)
    tw = statistics.median(r.seconds for r in many)
    work = many[0].positions * many[0].scenarios
    measures = ("var95", "var99", "es95", "es99")
    print(json.dumps({
        **{k: getattr(many[0], k) for k in measures},
        "scenarios": args.scenarios, "positions": many[0].positions, "workers": args.workers,
        "model": args.model, "seed": args.seed, "horizon_days": args.horizon_days,
        "chunks": many[0].chunks,
        "one_worker_seconds": t1, "all_workers_seconds": tw,
        "one_worker_revaluations_per_s": work / t1, "all_workers_revaluations_per_s": work / tw,
        "ratio": t1 / tw,
        "identical": all(getattr(r, k) == getattr(many[0], k) for r in one + many
                         for k in measures),
        "one_worker_runs_s": [r.seconds for r in one],
        "all_workers_runs_s": [r.seconds for r in many],
        "one_worker_task_cpu_s": [sum(r.task_cpu_seconds) for r in one],
        "all_workers_task_cpu_s": [list(r.task_cpu_seconds) for r in many],
        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "date": datetime.now(UTC).date().isoformat(),
    }, indent=2))


if __name__ == "__main__":
    main()
