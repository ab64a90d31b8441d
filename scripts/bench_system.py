#!/usr/bin/env python
"""Benchmark the supervised system on the simulator; print one JSON object.

Usage: .venv/bin/python scripts/bench_system.py [--sim-days 30] [--seed 7]

Runs `supervisor.py --sim-days N` in a fresh state dir (its own local Ray cluster), reads the
run statistics it writes (`run_stats.json`), then measures a baseline in the same invocation: the
round trip of an empty Ray actor call on a fresh local cluster.

Keys:
  first_tick_s             seconds from the supervisor process starting to its first tick
                           (Python start, config, Ray start, five actors spawned; target <= 15)
  sim_minutes_per_s        simulated market minutes per wall second while ticking, full speed
  intent_to_broker_p50_ms  a symbol actor proposing an intent -> the order accepted by the broker
  intent_to_broker_p99_ms  (through the supervisor, the account actor, the risk actor, the
                           write-ahead ledger row and the paper broker; target p50 < 10)
  intents_measured         how many intents reached the broker in the run
  ray_call_p50_ms          baseline: one empty actor method call, round trip, median of 500
  sim_days_per_s           simulated trading days per wall second while ticking (2 symbols, the
                           whole system at full speed; target: a year, 252 days, in < 60 s)
  chain_snapshots_per_s    option chain snapshots per second from the simulated market, each at a
                           new minute (so re-priced), of about 400 contracts (chain_contracts)
  replay_chain_snapshots_per_s
                           the same for the historical replay (market.source: replay): SPY
                           chain snapshots per second in a 21-70 DTE window, a new minute each
  wall_s                   the supervisor run's wall time
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ray_call_p50_ms(calls: int = 500) -> float:
    import ray

    ray.init(include_dashboard=False, log_to_driver=False)

    @ray.remote
    class Echo:
        def ping(self, x):
            return x

    echo = Echo.remote()
    ray.get(echo.ping.remote(0))
    samples = []
    for i in range(calls):
        t0 = time.perf_counter()
        ray.get(echo.ping.remote(i))
        samples.append((time.perf_counter() - t0) * 1000.0)
    ray.shutdown()
    return statistics.median(samples)


def chain_snapshots_per_s(seconds: float = 3.0) -> tuple[float, int]:
    """Snapshots per second of a ~400-contract SPY chain, each at a new minute bar."""
    from datetime import timedelta

    from thetadesk.clock import MarketCalendar
    from thetadesk.config import DEFAULT_CONFIG, load_config
    from thetadesk.wiring import build_market

    config = load_config(DEFAULT_CONFIG)
    market = build_market(config)
    calendar = MarketCalendar()
    session = calendar.next_session(config.market.start)
    start = calendar.session_open(session) + timedelta(minutes=1)
    # Widen the DTE window until the chain holds at least 400 contracts.
    for window in range(1, 200):
        chain = market.chain("SPY", start, 0, window)
        size = sum(len(chain.rows(e)) for e in chain.expiries())
        if size >= 400:
            break
    market.chain("SPY", start + timedelta(minutes=1), 0, window)  # warm caches and kernels
    n, minute, t0 = 0, 2, time.perf_counter()
    while time.perf_counter() - t0 < seconds and minute < 380:
        market.chain("SPY", start + timedelta(minutes=minute), 0, window)
        n += 1
        minute += 1
    return n / (time.perf_counter() - t0), size


def replay_chain_snapshots_per_s(seconds: float = 3.0) -> float:
    """Replay chain snapshots per second (21-70 DTE), each at a new minute of 2016-03-01."""
    from datetime import date, timedelta

    from thetadesk.adapters.replay import HistoricalReplay
    from thetadesk.clock import MarketCalendar

    replay = HistoricalReplay()
    start = MarketCalendar().session_open(date(2016, 3, 1))
    replay.chain("SPY", start, 21, 70)  # warm-up: the listing grid and the kernels
    n, minute, t0 = 0, 1, time.perf_counter()
    while time.perf_counter() - t0 < seconds and minute < 380:
        replay.chain("SPY", start + timedelta(minutes=minute), 21, 70)
        n += 1
        minute += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sim-days", type=int, default=30,
                        help="simulated days (entries are rare: 30 days give ~7 samples)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as state:
        t0 = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(ROOT / "supervisor.py"), "--sim-days", str(args.sim_days),
             "--seed", str(args.seed), "--state-dir", state],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )
        wall = time.monotonic() - t0
        if result.returncode != 0:
            sys.exit(f"supervisor failed ({result.returncode}):\n{result.stderr[-3000:]}")
        stats = json.loads((Path(state) / "run_stats.json").read_text())

    snapshots, contracts = chain_snapshots_per_s()
    print(json.dumps({
        "first_tick_s": round(stats["first_tick_s"], 2),
        "sim_minutes_per_s": round(stats["sim_minutes_per_s"], 1),
        "intent_to_broker_p50_ms": stats["intent_to_broker_p50_ms"]
        and round(stats["intent_to_broker_p50_ms"], 2),
        "intent_to_broker_p99_ms": stats["intent_to_broker_p99_ms"]
        and round(stats["intent_to_broker_p99_ms"], 2),
        "intents_measured": len(stats["intent_to_broker_ms"]),
        "ray_call_p50_ms": round(ray_call_p50_ms(), 3),
        "sim_days_per_s": round(stats["sim_minutes_per_s"] / 390.0, 2),
        "chain_snapshots_per_s": round(snapshots, 1),
        "chain_contracts": contracts,
        "replay_chain_snapshots_per_s": round(replay_chain_snapshots_per_s(), 1),
        "ticks": stats["ticks"],
        "sim_days": args.sim_days,
        "wall_s": round(wall, 1),
        "measured": datetime.now(UTC).strftime("%Y-%m-%d"),
    }))


if __name__ == "__main__":
    main()
