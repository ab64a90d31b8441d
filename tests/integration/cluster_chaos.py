"""A three-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head with no CPUs,
so compute goes to the two worker nodes, each with one), and a worker node removed in the
middle of a run. Run as a subprocess by ``test_cluster.py`` (a process can join one cluster
only, and the suite's own cluster is another); prints one JSON object.

    python -m tests.integration.cluster_chaos compute
        Monte Carlo stress and walk-forward backtest windows, each run twice: once whole, once
        with a worker node removed while its tasks run. JSON: both runs' results and whether
        the removal came mid-run (tasks still pending).
    python -m tests.integration.cluster_chaos trading STATE CONFIG
        ``supervisor.py --sim-days 1`` on the cluster with a worker node removed once the run
        has its first fill. JSON: the supervisor's exit code and the nodes at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = 4_000_000  # a few seconds of Monte Carlo on one CPU: long enough to cut into


def start_cluster() -> tuple[Cluster, list]:
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    return cluster, workers


def alive_nodes() -> int:
    return sum(1 for n in ray.nodes() if n["Alive"])


def gone(node_ids: set[str], timeout_s: float = 90.0) -> bool:
    """Whether the cluster has marked every one of ``node_ids`` dead (within ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(n["NodeID"] in node_ids and n["Alive"] for n in ray.nodes()):
            return True
        time.sleep(0.5)
    return False


def during(cluster: Cluster, node, after_s: float, call):
    """``call()`` with ``node`` removed (killed, not drained) ``after_s`` seconds in, from
    another thread; its result and whether the removal came before it returned."""
    state = {"done": False, "mid": False}

    def cut() -> None:
        time.sleep(after_s)
        state["mid"] = not state["done"]
        cluster.remove_node(node, allow_graceful=False)

    thread = threading.Thread(target=cut)
    thread.start()
    result = call()
    state["done"] = True
    thread.join()
    return result, state["mid"]


def compute() -> dict:
    from actors.backtest import run_jobs
    from actors.stress import run_stress
    from thetadesk.backtest.walkforward import run_local, walk_forward
    from thetadesk.clock import MarketCalendar
    from thetadesk.config import DEFAULT_CONFIG, load_config_data
    from thetadesk.risk.portfolio_file import load_portfolio

    cluster, workers = start_cluster()
    ray.init(address=cluster.address, log_to_driver=False)
    out: dict = {"nodes_before": alive_nodes()}
    book = load_portfolio(ROOT / "examples" / "portfolio.yaml")
    args = dict(scenarios=SCENARIOS, horizon_days=1.0, seed=9, workers=8, model="full",
                chunk_size=SCENARIOS // 32)
    for _ in range(2):  # load the kernels in both nodes' worker processes first
        run_stress(book, **{**args, "scenarios": 100_000, "chunk_size": 10_000})
    started = time.monotonic()
    whole = run_stress(book, **args)
    out["stress_whole_s"] = round(time.monotonic() - started, 2)
    out["stress_whole"] = [whole.var95, whole.var99, whole.es95, whole.es99]
    cut, out["stress_removed_mid_run"] = during(
        cluster, workers[0], 0.3 * out["stress_whole_s"], lambda: run_stress(book, **args))
    out["stress_cut"] = [cut.var95, cut.var99, cut.es95, cut.es99]

    # Walk-forward windows: the other worker is lost mid-run, a fresh node takes its jobs.
    data = load_config_data(DEFAULT_CONFIG)
    data["market"]["tick_seconds"] = 1800
    data["risk_reports"]["monte_carlo_scenarios"] = 0
    sessions = MarketCalendar().sessions(date(2025, 1, 6), 12)
    kwargs = dict(grid={"strategy.short_delta": [0.20, 0.30]}, in_sample=4, out_of_sample=4,
                  embargo=0)
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    # The node goes when the first window job is done, the rest (and the out-of-sample
    # windows) still to run: an event of the run, not a delay that a fast machine outruns.
    state = {"cut": False, "returned": False, "mid": False}

    def cut_at_first_result() -> None:
        if not state["cut"]:
            state["cut"] = True
            state["mid"] = not state["returned"]
            cluster.remove_node(workers[1], allow_graceful=False)

    on_ray = walk_forward(data, "sim", sessions,
                          run_many=lambda jobs: run_jobs(jobs, cut_at_first_result), **kwargs)
    state["returned"] = True
    out["walk_forward_removed_mid_run"] = state["cut"] and state["mid"]
    here = walk_forward(data, "sim", sessions, run_many=run_local, **kwargs)
    out["walk_forward_equal"] = on_ray == here
    out["walk_forward_windows"] = len(here["windows"])
    out["removed_nodes_dead"] = gone({w.node_id for w in workers})
    ray.shutdown()
    cluster.shutdown()
    return out


def trading(state: str, config: str) -> dict:
    from thetadesk.store import LEDGER_FILE, Ledger

    cluster, workers = start_cluster()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "supervisor.py"), "--state-dir", state, "--config", config,
         "--address", cluster.address, "--sim-days", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ))
    ledger_path = Path(state) / LEDGER_FILE
    deadline = time.monotonic() + 240
    removed_mid_run = False
    while time.monotonic() < deadline and proc.poll() is None:
        if ledger_path.exists():
            ledger = Ledger(ledger_path)
            try:
                if ledger.fills():
                    cluster.remove_node(workers[0], allow_graceful=False)
                    removed_mid_run = proc.poll() is None
                    break
            finally:
                ledger.close()
        time.sleep(0.2)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    ray.init(address=cluster.address, log_to_driver=False)
    nodes = alive_nodes()
    ray.shutdown()
    cluster.shutdown()
    return {"code": proc.returncode, "removed_mid_run": removed_mid_run, "nodes_after": nodes,
            "stderr_tail": err[-3000:]}


if __name__ == "__main__":
    mode = sys.argv[1]
    result = compute() if mode == "compute" else trading(sys.argv[2], sys.argv[3])
    print(json.dumps(result))
