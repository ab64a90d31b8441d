"""Three Ray nodes on one machine (``cluster_chaos.py``: a head and two worker nodes), a worker
node lost in the middle of a run: compute tasks are retried elsewhere and every result equals
the run without the failure; the trading run's ledger is intact and its trades are the same."""

import json
import subprocess
import sys

import pytest

from tests.integration.test_supervisor_runs import assert_ledger_matches_broker, ledger_of, trades
from thetadesk.config import DEFAULT_CONFIG
from thetadesk.risk.engine import RISK_FIGURES

pytestmark = pytest.mark.integration
ROOT = DEFAULT_CONFIG.parent


def chaos(*args: str, timeout: float = 600) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.integration.cluster_chaos", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_losing_a_worker_node_mid_stress_and_mid_backtest_changes_no_result():
    out = chaos("compute")
    assert out["nodes_before"] == 3
    assert out["stress_removed_mid_run"], "the node went while the Monte Carlo tasks ran"
    assert out["stress_cut"] == out["stress_whole"]
    assert out["walk_forward_removed_mid_run"], "the node went while the windows ran"
    assert out["walk_forward_equal"]
    assert out["walk_forward_windows"] == 2
    assert out["removed_nodes_dead"]


def test_losing_a_worker_node_mid_trading_run_keeps_the_ledger_and_the_trades(
        tmp_path, run_supervisor):
    # The run without the failure, on the suite's own cluster, alongside the one with it.
    baseline = run_supervisor(tmp_path / "whole", "--sim-days", "1")
    out = chaos("trading", str(tmp_path / "cut"), str(DEFAULT_CONFIG))
    code, _, err = baseline.wait()
    assert code == 0, err[-3000:]
    assert out["code"] == 0, out["stderr_tail"]
    assert out["removed_mid_run"], "the node went while the supervisor traded"
    assert trades(tmp_path / "cut") == trades(tmp_path / "whole")
    assert_ledger_matches_broker(tmp_path / "cut")
    # The close's Monte Carlo ran its tasks on the remaining worker: the same figures.
    figures = [json.loads(ledger_of(tmp_path / s).get_state(RISK_FIGURES + "paper"))
               for s in ("whole", "cut")]
    mc = [{k: v for k, v in f["monte_carlo"].items() if k != "seconds"} for f in figures]
    assert mc[0] == mc[1]
    assert mc[0]["scenarios"] == 100_000
