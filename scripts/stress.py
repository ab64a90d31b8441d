#!/usr/bin/env python
"""Monte Carlo stress test of a portfolio file: VaR/ES at 95% and 99%, the stress-scenario
table, the time taken and revaluations per second.

Usage: scripts/stress.py --portfolio FILE [--scenarios N] [--horizon-days D] [--seed S]
                         [--workers W] [--model gbm|full] [--json]
       (run it with the project's venv: .venv/bin/python scripts/stress.py ...)

The portfolio file (YAML or JSON) is described in thetadesk/risk/portfolio_file.py; see
examples/portfolio.yaml. Models (thetadesk/risk/montecarlo.py): `gbm` moves each underlying's
spot lognormally with its own vol and the file's correlations, implied vol unchanged; `full`
(default) revalues every option under correlated Student-t (4 dof) spot shocks and implied
volatility shocks correlated -0.7 with spot (vol-of-vol 1.0 a year). The horizon is in trading
days (D / 252 years, also the time the options lose). Losses are positive dollars.

With --json, one JSON object: var95, var99, es95, es99 (dollars), scenarios, positions,
workers, seconds, revaluations_per_s (positions x scenarios / seconds), model, seed,
horizon_days, chunks, task_cpu_seconds (each Ray task's CPU time: well below `seconds` when
other processes compete for the cores), portfolio_value, and stress: [{name, pnl}] (the named
scenarios of thetadesk/risk/scenarios.py as instantaneous shocks, P&L in dollars, losses
negative). `seconds` runs from dispatch to the reduced result (the arrays'
ray.put, the tasks, the result transfer and the exact reduction); starting Ray and warming up
the compiled kernels in the worker processes are not included.

Ray: joins RAY_ADDRESS when set, else starts a local cluster with max(W, CPU count) CPUs.
A malformed portfolio file exits 2 with the field named; a bad option exits 2 (argparse).
"""

from __future__ import annotations

import argparse
import json
import sys

from thetadesk.errors import DataError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/stress.py", description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portfolio", required=True, metavar="FILE",
                        help="portfolio file, YAML or JSON")
    parser.add_argument("--scenarios", type=int, default=100_000, metavar="N",
                        help="Monte Carlo scenarios (default 100000)")
    parser.add_argument("--horizon-days", type=float, default=1.0, metavar="D",
                        help="horizon in trading days (default 1)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="run seed (default 0)")
    parser.add_argument("--workers", type=int, default=None, metavar="W",
                        help="Ray tasks to split the run into (default: the CPU count)")
    parser.add_argument("--model", choices=("gbm", "full"), default="full", metavar="gbm|full",
                        help="scenario model (default full)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.scenarios < 1:
        parser.error("--scenarios must be >= 1")
    if args.horizon_days < 0:
        parser.error("--horizon-days must be >= 0")
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be >= 1")
    return args


def format_table(out: dict) -> str:
    lines = [
        f"Monte Carlo: {out['scenarios']:,} scenarios, model {out['model']}, horizon "
        f"{out['horizon_days']:g} trading days, seed {out['seed']}",
        f"portfolio: {out['positions']} positions, value ${out['portfolio_value']:,.2f}",
        "",
        f"{'':8}{'VaR':>16}{'ES':>16}",
        f"{'95%':8}{out['var95']:>16,.2f}{out['es95']:>16,.2f}",
        f"{'99%':8}{out['var99']:>16,.2f}{out['es99']:>16,.2f}",
        "(losses in dollars, positive)",
        "",
        f"{'stress scenario':32}{'P&L ($)':>16}",
    ]
    lines += [f"{row['name']:32}{row['pnl']:>16,.2f}" for row in out["stress"]]
    lines += [
        "",
        f"{out['seconds']:.3f} s on {out['workers']} worker(s) ({out['chunks']} chunks): "
        f"{out['revaluations_per_s'] / 1e6:,.1f}M revaluations/s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from thetadesk.risk.portfolio_file import load_portfolio

    try:
        portfolio = load_portfolio(args.portfolio)
    except DataError as exc:
        print(f"scripts/stress.py: {exc}", file=sys.stderr)
        return 2

    import os

    from actors.stress import ensure_ray, run_stress, warm_up
    from thetadesk.risk.scenarios import DEFAULT_SCENARIOS, stress_table

    workers = args.workers or os.cpu_count() or 1
    ensure_ray(workers)
    warm_up(portfolio, workers)
    result = run_stress(portfolio, args.scenarios, args.horizon_days, args.seed, workers,
                        args.model)
    out = result.as_dict()
    out["portfolio_value"] = portfolio.value()
    out["stress"] = [{"name": name, "pnl": pnl}
                     for name, pnl in stress_table(portfolio, DEFAULT_SCENARIOS)]
    print(json.dumps(out) if args.json else format_table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
