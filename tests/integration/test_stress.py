"""Monte Carlo stress on the session Ray cluster: worker count does not change the result, and
scripts/stress.py runs end to end (joining the session cluster through RAY_ADDRESS)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from actors.stress import run_stress, warm_up
from thetadesk.risk.montecarlo import run_local
from thetadesk.risk.portfolio_file import load_portfolio

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "examples" / "portfolio.yaml"

pytestmark = pytest.mark.integration


def test_run_stress_one_and_four_workers_identical(ray_address):
    book = load_portfolio(SMALL)
    warm_up(book, 2, hold_s=0.0)
    one = run_stress(book, 20_000, 2.0, seed=5, workers=1, model="full", chunk_size=1500,
                     keep_pnl=True)
    four = run_stress(book, 20_000, 2.0, seed=5, workers=4, model="full", chunk_size=1500,
                      keep_pnl=True)
    local = run_local(book, 20_000, 2.0, seed=5, workers=3, model="full", chunk_size=1500,
                      keep_pnl=True)
    assert one.chunks == 14
    assert (one.var95, one.var99, one.es95, one.es99) == (
        four.var95, four.var99, four.es95, four.es99)
    assert np.array_equal(one.pnl, four.pnl)
    assert np.array_equal(one.pnl, local.pnl)
    assert one.es99 >= one.var99 > 0


def test_stress_script_json_end_to_end(ray_address):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "stress.py"), "--portfolio", str(SMALL),
         "--scenarios", "20000", "--horizon-days", "1", "--seed", "3", "--workers", "2",
         "--model", "gbm", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "RAY_ADDRESS": ray_address},
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("var95", "var99", "es95", "es99", "scenarios", "positions", "workers",
                "seconds", "revaluations_per_s"):
        assert key in out
    assert out["scenarios"] == 20_000
    assert out["positions"] == 3
    assert out["workers"] == 2
    assert out["model"] == "gbm"
    assert out["es95"] >= out["var95"]
    assert out["es99"] >= out["var99"]
    assert out["stress"]
    want = run_local(load_portfolio(SMALL), 20_000, 1.0, seed=3, model="gbm")
    assert out["var99"] == want.var99


def test_stress_script_malformed_file_names_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.read_text().replace("vol: 0.22", "vol: -0.22"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "stress.py"), "--portfolio", str(bad), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "underlyings.QQQ.vol: must be > 0" in proc.stderr
