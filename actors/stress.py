"""Monte Carlo stress tasks fanned out across the Ray cluster.

``run_stress`` puts the portfolio's arrays in the object store once, splits the run's chunks
(``thetadesk.risk.montecarlo``) into ``workers`` contiguous ranges, runs one Ray task per range,
and reduces the concatenated P&L exactly. The chunks' seeds depend only on the run seed and the
chunk index, so any ``workers`` gives bit-identical results; ``thetadesk.risk.montecarlo.
run_local`` computes the same without Ray.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import numpy as np
import ray

from thetadesk.risk.montecarlo import (
    MonteCarloPlan,
    StressResult,
    chunks_pnl,
    make_plan,
    result_from,
    split_chunks,
)
from thetadesk.risk.portfolio import Portfolio, PortfolioArrays

__all__ = ["StressResult", "ensure_ray", "run_stress", "warm_up"]


@ray.remote(num_cpus=1, max_retries=3, scheduling_strategy="SPREAD")  # retried if its node goes
def _chunks_task(arrays: PortfolioArrays, plan: MonteCarloPlan, start: int,
                 stop: int) -> tuple[np.ndarray, float]:
    cpu = time.process_time()
    pnl = chunks_pnl(arrays, plan, start, stop)
    return pnl, time.process_time() - cpu


@ray.remote(num_cpus=1)
def _warm_task(portfolio: Portfolio, hold_s: float) -> int:
    # Load (or compile) the numba kernels in this worker process, for both models, then hold
    # the CPU a moment so that the other warm-up tasks land on other worker processes.
    for model in ("gbm", "full"):
        plan = make_plan(portfolio, 64, 1.0, 0, model, chunk_size=32)
        chunks_pnl(portfolio.arrays(), plan, 0, plan.n_chunks)
    time.sleep(hold_s)
    return os.getpid()


def ensure_ray(workers: int) -> None:
    """Join ``RAY_ADDRESS`` if set, else start a local cluster with at least ``workers`` CPUs
    (no dashboard, worker logs not forwarded). No-op if Ray is already initialised."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=False)


def warm_up(portfolio: Portfolio, workers: int, hold_s: float = 0.3) -> set[int]:
    """Run a tiny job in as many concurrent tasks as the cluster has CPUs (at least
    ``workers``, at most 64) so that whichever worker processes the timed run lands on have
    imported and loaded the compiled kernels, then a tiny ``run_stress`` (the first call of a
    remote function exports it to the cluster). Returns the warmed workers' pids."""
    cpus = int(ray.cluster_resources().get("CPU", 1))
    tasks = min(max(workers, cpus), 64)
    pids = set(ray.get([_warm_task.remote(portfolio, hold_s) for _ in range(tasks)]))
    run_stress(portfolio, 64 * workers, 1.0, 0, workers, "full", chunk_size=64)
    return pids


def run_stress(portfolio: Portfolio, scenarios: int, horizon_days: float = 1.0, seed: int = 0,
               workers: int = 1, model: str = "full", chunk_size: int | None = None,
               keep_pnl: bool = False) -> StressResult:
    """Monte Carlo VaR/ES of ``portfolio`` over ``scenarios`` in ``workers`` Ray tasks (one per
    contiguous range of chunks; ``workers=1`` is a single task). ``seconds`` runs from here
    (plan, ``ray.put`` of the arrays, dispatch) to the reduced result, transfer included; Ray
    start-up is not included. ``task_cpu_seconds`` is each task's CPU time (far below
    ``seconds`` x cores when other processes compete for the CPUs). Ray must be initialised
    (``ensure_ray``)."""
    started = time.perf_counter()
    plan = make_plan(portfolio, scenarios, horizon_days, seed, model, chunk_size)
    arrays_ref = ray.put(portfolio.arrays())
    refs = [_chunks_task.remote(arrays_ref, plan, a, b)
            for a, b in split_chunks(plan.n_chunks, workers)]
    parts = ray.get(refs)
    pnl = np.concatenate([p for p, _ in parts])
    result = result_from(pnl, plan, portfolio, workers, horizon_days, started, keep_pnl)
    return replace(result, task_cpu_seconds=tuple(cpu for _, cpu in parts))
