#!/usr/bin/env python
"""Benchmark position management and the hedging check; print one JSON object.

Usage: .venv/bin/python scripts/bench_positions.py [--sessions 8] [--calls 20000]

Everything runs in this process on the simulator (``thetadesk.lockstep``: the supervisor's
round without Ray), so the figures are the code's, not Ray's. Each figure comes with a baseline
measured in the same run; the ratios are what to compare between machines.

Keys:
  decide_us                 one ``thetadesk.positions.decide`` call (ladder, trail, stops on
                            credit multiple, breach and short delta, time exit, roll, repair),
                            microseconds, mean over --calls views (best of 3 passes)
  decide_exit_us            baseline: the plain take-profit / stop / DTE rule
                            (``thetadesk.exits.decide_exit``) on the same views
  decide_ratio              decide_us / decide_exit_us
  session_plain_s           one simulated session of the default desk (5-minute ticks), median
                            over --sessions after one warm-up session
  session_hedged_s          the same with hedging on (delta band, tail puts; a check every 15
                            minutes)
  hedging_overhead          session_hedged_s / session_plain_s
  hedge_check_ms            one HedgeEngine.decide on the hedged desk's book, mean
  exposure_ms               baseline: RiskEngine.exposure of the same book (the measurement a
                            check starts from)
  hedge_check_ratio         hedge_check_ms / exposure_ms
  measured_at               UTC time of the run
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from thetadesk.config import DEFAULT_CONFIG, parse_config  # noqa: E402
from thetadesk.exits import ExitRules, decide_exit  # noqa: E402
from thetadesk.lockstep import LockstepDesk  # noqa: E402
from thetadesk.logging import configure_logging  # noqa: E402
from thetadesk.positions.manage import PositionView, ShortLeg, decide  # noqa: E402
from thetadesk.positions.rules import ManageRules  # noqa: E402

HEDGING = {"enabled": True, "delta": {"band": 50}, "tail": {"premium_fraction": 0.5}}


def _views(n: int) -> list[PositionView]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        credit = rng.uniform(0.5, 1.5)
        value = -credit * rng.uniform(0.1, 2.5)
        spot = rng.uniform(540.0, 600.0)
        out.append(PositionView(
            position_id=f"p{i}", strategy="bull_put_credit", quantity=rng.randint(1, 6),
            initial_quantity=6, entry_price=credit, value=value,
            max_profit=credit * 100, max_loss=(5 - credit) * 100, multiplier=100,
            dte=rng.randint(1, 45), spot=spot,
            shorts=(ShortLeg(560.0, False, rng.uniform(0.05, 0.6)),),
            rungs_hit=rng.randint(0, 2), peak_profit=rng.uniform(0.2, 0.8)))
    return out


def bench_decide(calls: int) -> dict:
    config = parse_config(yaml.safe_load(DEFAULT_CONFIG.read_text()), env={})
    rules = ManageRules.from_config(config.exits)
    plain = ExitRules(config.exits.take_profit, config.exits.stop_multiple,
                      config.exits.close_dte)
    views = _views(calls)
    ours = base = math.inf
    for _ in range(3):  # best of three, interleaved
        t0 = time.perf_counter()
        for v in views:
            decide(v, rules)
        t1 = time.perf_counter()
        for v in views:
            decide_exit(v.entry_price, v.value, v.dte, plain)
        t2 = time.perf_counter()
        ours = min(ours, (t1 - t0) / calls * 1e6)
        base = min(base, (t2 - t1) / calls * 1e6)
    return {"decide_us": round(ours, 2), "decide_exit_us": round(base, 2),
            "decide_ratio": round(ours / base, 2)}


def _desk(hedged: bool, state: Path) -> LockstepDesk:
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    if hedged:
        data["hedging"] = copy.deepcopy(HEDGING)
    return LockstepDesk(parse_config(data, env={}), state)


def bench_sessions(sessions: int, tmp: Path) -> dict:
    times = {}
    for hedged in (False, True):
        desk = _desk(hedged, tmp / ("hedged" if hedged else "plain"))
        try:
            desk.run(1)  # warm-up: first chains, caches, the first entries
            per = []
            for _ in range(sessions):
                t0 = time.perf_counter()
                desk.run(1)
                per.append(time.perf_counter() - t0)
            times[hedged] = statistics.median(per)
            if hedged:
                now = desk.calendar.session_close(desk.calendar.previous_session(
                    desk._next_session))
                checks, exposures = [], []
                for _ in range(20):
                    t0 = time.perf_counter()
                    desk.hedger.decide(now)
                    t1 = time.perf_counter()
                    desk.risk.exposure("paper", now)
                    t2 = time.perf_counter()
                    checks.append(t1 - t0)
                    exposures.append(t2 - t1)
        finally:
            desk.close()
    check, exposure = statistics.median(checks) * 1e3, statistics.median(exposures) * 1e3
    return {"session_plain_s": round(times[False], 3), "session_hedged_s": round(times[True], 3),
            "hedging_overhead": round(times[True] / times[False], 2),
            "hedge_check_ms": round(check, 2), "exposure_ms": round(exposure, 2),
            "hedge_check_ratio": round(check / exposure, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        configure_logging(Path(tmp), "bench", "warning", console=False)
        out = bench_decide(args.calls)
        out.update(bench_sessions(args.sessions, Path(tmp)))
    out["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
