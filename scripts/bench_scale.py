#!/usr/bin/env python
"""How the supervised system scales with accounts: print one JSON object.

Usage: .venv/bin/python scripts/bench_scale.py [--accounts 1,5,20] [--sim-days 2] [--seed 7]

For each account count it writes a config (the default one with four simulated symbols, SPY,
QQQ, IWM and DIA, and that many copies of its paper account, each trading all four), runs
``supervisor.py --sim-days N --quiet-ticks 0 --wait-for-reports`` in a fresh state dir (its own
local Ray cluster; ``--quiet-ticks 0`` makes every tick one lockstep round for every count, so
the figures compare; ``--wait-for-reports`` has each close's risk report done before the next
session, as live, where the night lies between them: ``--overlap-reports`` measures the
full-speed simulator's default instead, the report sharing the CPUs with the next session's
first ticks),
samples the memory of the supervisor and every process under it (Ray's GCS, raylet and actor
workers) once a second, and reads the run's ``run_stats.json``.

Keys: ``runs``, one object per count:
  accounts       account actors (each with its own paper broker)
  symbols        symbol actors (4)
  rss_mb         peak memory of all the run's processes together, MB: their proportional set
                 sizes (psutil, Linux: shared pages split among the processes sharing them;
                 summed resident sizes would count Ray's shared memory once per process)
  tick_p50_ms    median wall time of a tick's lockstep round
  tick_p99_ms    99th percentile of it (nearest rank: in a one-day run, 78 ticks, the slowest)
  tick_max_ms    the slowest tick: the entry tick, where every account enters at once
  ticks          ticks measured
  first_tick_s   process start to the first tick (Ray start and every actor spawned)
  wall_s         the whole run
  actor_mb       proportional set size per kind of actor at the end of the run, MB, the mean
                 over the actors of that kind (run_stats.json ``actors``): account, symbol,
                 risk, notification
  accounts_with_numba  account actors that had loaded numba by the end (0: their quotes and
                 deltas ran as Python, see thetadesk/pricing.py)
and ``measured_at``, ``sim_days``, ``reports`` ("waited" or "overlapped"). The issue's
target: 20 accounts x 4 symbols with tick p99 < 250 ms and
< 4 GB in all, on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thetadesk.config import DEFAULT_CONFIG, load_config_data, parse_config  # noqa: E402

EXTRA_SYMBOLS = {
    "IWM": {"spot": 220.0, "vol": 0.22, "dividend_yield": 0.012, "strike_step": 1.0},
    "DIA": {"spot": 430.0, "vol": 0.15, "dividend_yield": 0.017, "strike_step": 1.0},
}


def scale_config(accounts: int) -> dict:
    """The default config with four symbols and ``accounts`` copies of its first account."""
    data = load_config_data(DEFAULT_CONFIG)
    data["market"]["symbols"].update(copy.deepcopy(EXTRA_SYMBOLS))
    symbols = list(data["market"]["symbols"])
    template = data["accounts"][0]
    data["accounts"] = []
    for i in range(accounts):
        account = copy.deepcopy(template)
        account["name"] = f"{template['name']}-{i + 1:02d}"
        account["symbols"] = symbols
        data["accounts"].append(account)
    parse_config(data)  # a bad config fails here, not inside the run
    return data


def _tree_memory(root: psutil.Process) -> int:
    """Bytes of memory of ``root`` and every process under it: the proportional set size (PSS:
    a page shared by k processes counts 1/k in each, so Ray's shared object store and libraries
    are not counted once per worker) where the platform has it, else the resident size."""
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def run(accounts: int, sim_days: int, seed: int, overlap: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(scale_config(accounts), sort_keys=False))
        state = Path(tmp) / "state"
        out = (Path(tmp) / "out.txt").open("w")
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "supervisor.py"), "--config", str(config),
             "--sim-days", str(sim_days), "--seed", str(seed), "--state-dir", str(state),
             "--quiet-ticks", "0", *([] if overlap else ["--wait-for-reports"])],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
        root = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                peak = max(peak, _tree_memory(root))
            except psutil.NoSuchProcess:
                break
            time.sleep(1.0)
        wall = time.monotonic() - t0
        out.close()
        if proc.returncode != 0:
            sys.exit(f"supervisor with {accounts} accounts failed ({proc.returncode}):\n"
                     f"{(Path(tmp) / 'out.txt').read_text()[-3000:]}")
        stats = json.loads((state / "run_stats.json").read_text())
    return {**_row(accounts, peak, stats), "wall_s": round(wall, 1)}


def _row(accounts: int, peak: int, stats: dict) -> dict:
    """The JSON of one run from its peak memory (bytes) and its run_stats.json."""
    kinds: dict[str, list[float]] = {}
    for name, footprint in stats.get("actors", {}).items():
        if "pss_mb" in footprint:
            kinds.setdefault(name.split("-")[0], []).append(footprint["pss_mb"])
    return {
        "accounts": accounts,
        "symbols": len(EXTRA_SYMBOLS) + 2,
        "rss_mb": round(peak / 2**20, 1),
        "tick_p50_ms": round(stats["tick_p50_ms"], 2),
        "tick_p99_ms": round(stats["tick_p99_ms"], 2),
        "tick_max_ms": round(max(stats["tick_ms"]), 2),
        "ticks": stats["ticks"],
        "first_tick_s": round(stats["first_tick_s"], 2),
        "actor_mb": {kind: round(sum(v) / len(v), 1) for kind, v in sorted(kinds.items())},
        "accounts_with_numba": sum(1 for name, f in stats.get("actors", {}).items()
                                   if name.startswith("account-") and f.get("numba")),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accounts", default="1,5,20",
                   help="comma-separated account counts (default: %(default)s)")
    p.add_argument("--sim-days", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--overlap-reports", action="store_true",
                   help="let each close's risk report run into the next session (the full-speed "
                        "simulator's default) instead of waiting for it")
    args = p.parse_args()
    try:
        counts = [int(x) for x in args.accounts.split(",")]
    except ValueError:
        p.error(f"--accounts must be comma-separated integers, got {args.accounts!r}")
    if not counts or min(counts) < 1:
        p.error("--accounts: every count must be >= 1")
    runs = [run(n, args.sim_days, args.seed, args.overlap_reports) for n in counts]
    print(json.dumps({"runs": runs, "sim_days": args.sim_days,
                      "reports": "overlapped" if args.overlap_reports else "waited",
                      "measured_at": datetime.now(UTC).isoformat(timespec="seconds")},
                     indent=1))


if __name__ == "__main__":
    main()
