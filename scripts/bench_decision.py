#!/usr/bin/env python
"""Benchmark the decision layer's proposal against the plain strategy's; print one JSON object.

Usage: .venv/bin/python scripts/bench_decision.py [--sessions 40] [--seed 7]

Both run in this process on the simulator (started a year before the measured sessions, so the
adaptive strategy has its history), for SPY at 10:30 New York on each of --sessions sessions.
Each figure comes with its baseline from the same run; the ratios are what to compare between
machines.

Keys:
  plain_ms              one ``SymbolEngine.tick`` of the plain bull put strategy, mean
  adaptive_ms           the same tick of the adaptive strategy (``strategy.kind: adaptive``):
                        timing, event calendar, regime, IV rank, structure, candidates, ranking
  adaptive_ratio        adaptive_ms / plain_ms
  first_tick_ms         the adaptive strategy's first tick of a session (the regime replayed
                        over ``decision.history_sessions`` of history), mean
  later_tick_ms         a later tick of the same session (the session's regime remembered)
  regime_share          (first_tick_ms - later_tick_ms) / first_tick_ms: what the regime costs
  intents               adaptive ticks that proposed a trade (of --sessions x 2)
  measured_at           UTC time of the run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, date, datetime
from datetime import time as wall
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thetadesk.adapters.sim_market import SimMarket, SimSymbol  # noqa: E402
from thetadesk.chain import NEW_YORK  # noqa: E402
from thetadesk.clock import MarketCalendar  # noqa: E402
from thetadesk.config import DEFAULT_CONFIG, load_config_data, parse_config  # noqa: E402
from thetadesk.logging import configure_logging  # noqa: E402
from thetadesk.symbol import Profiles, SymbolEngine  # noqa: E402


def _engine(kind: str, market) -> SymbolEngine:
    data = load_config_data(DEFAULT_CONFIG)
    data["strategy"]["kind"] = kind
    config = parse_config(data, env={})
    return SymbolEngine("SPY", Profiles.for_symbol(config, "SPY"), market)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=40)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    if args.sessions < 1:
        p.error("--sessions must be >= 1")
    configure_logging(None, "bench", "warning", console=False)
    cal = MarketCalendar()
    days = cal.sessions(date(2025, 2, 3), args.sessions)

    def fresh_market() -> SimMarket:
        return SimMarket(seed=args.seed, symbols={"SPY": SimSymbol(580.0, 0.16, 0.013, 5.0)},
                         rate=0.04, start=date(2024, 1, 2))

    plain, adaptive = _engine("bull_put_credit", fresh_market()), _engine("adaptive",
                                                                          fresh_market())
    # Warm both markets (paths simulated, kernels loaded) so the figures are the decisions'.
    for engine in (plain, adaptive):
        engine.market.chain("SPY", datetime.combine(days[-1], wall(15, 0), NEW_YORK))
        engine.market.chain("SPY", datetime.combine(days[0], wall(10, 0), NEW_YORK))
    plain_t, first_t, later_t = [], [], []
    intents = 0
    for d in days:
        first, later = (datetime.combine(d, wall(10, 30), NEW_YORK),
                        datetime.combine(d, wall(10, 45), NEW_YORK))
        for now in (first, later):
            t = time.perf_counter()
            plain.tick(now)
            plain_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        intents += bool(adaptive.tick(first).intents)
        first_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        intents += bool(adaptive.tick(later).intents)
        later_t.append(time.perf_counter() - t)
    plain_ms = 1000 * statistics.mean(plain_t)
    first_ms, later_ms = 1000 * statistics.mean(first_t), 1000 * statistics.mean(later_t)
    adaptive_ms = (first_ms + later_ms) / 2
    print(json.dumps({
        "plain_ms": round(plain_ms, 3),
        "adaptive_ms": round(adaptive_ms, 3),
        "adaptive_ratio": round(adaptive_ms / plain_ms, 2),
        "first_tick_ms": round(first_ms, 3),
        "later_tick_ms": round(later_ms, 3),
        "regime_share": round((first_ms - later_ms) / first_ms, 3),
        "intents": intents,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }, indent=1))


if __name__ == "__main__":
    main()
