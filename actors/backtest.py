"""Backtest jobs (walk-forward windows x grid points) fanned out as Ray tasks.

Each job is ``thetadesk.backtest.walkforward.run_job``: pure compute in a scratch directory of
the worker it lands on (no shared ledger), so Ray may place it on any node; ``num_cpus=1``
declares what it takes, and a task lost with its node is retried elsewhere (``max_retries``):
a job is a function of its arguments, so a retry gives the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ray

from thetadesk.backtest.walkforward import Job, run_job

__all__ = ["run_jobs"]


@ray.remote(num_cpus=1, max_retries=3, scheduling_strategy="SPREAD")
def _job_task(job: Job, fn: Callable[[Job], dict[str, Any]] = run_job) -> dict[str, Any]:
    from thetadesk.logging import configure_logging

    configure_logging(None, "backtest", "warning", console=False)
    return fn(job)


def run_jobs(jobs: Sequence[Job], progress: Callable[[], None] | None = None,
             fn: Callable[[Job], dict[str, Any]] = run_job) -> list[dict[str, Any]]:
    """Every job as a Ray task, results in the jobs' order (Ray must be initialised);
    ``progress()`` once per job done. ``fn`` runs one job (a module-level function, shipped
    by reference): ``walkforward.run_job`` by default, ``research.run_summary`` for the
    research protocol."""
    refs = [_job_task.remote(job, fn) for job in jobs]
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        if progress is not None:
            for _ in done:
                progress()
    return ray.get(refs)
