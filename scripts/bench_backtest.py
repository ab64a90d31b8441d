#!/usr/bin/env python
"""Benchmark the backtester on the real S&P 500 / NASDAQ replay; print one JSON object.

Usage: .venv/bin/python scripts/bench_backtest.py [--sessions 40] [--skip-five-year]

Everything runs in this process (``thetadesk.backtest.engine.Backtest``: the desk's own
components, no Ray) with the default config on 15-minute ticks (Monte Carlo VaR at the closes
off: that is the risk actor's job, benchmarked in bench_stress.py).

Keys:
  quote_events_per_s        option quotes the desk read per second of the backtest: each row of
                            each chain snapshot it asked for counts one, each single-contract
                            quote (marking, fills) counts one; over --sessions sessions from
                            2015-01-02
  data_quote_events_per_s   baseline: the replay alone producing full chains (every listed
                            contract of every symbol) at the same ticks, per second
  quote_events_ratio        quote_events_per_s / data_quote_events_per_s
  chain_rows_per_tick       mean chain rows read per tick (what the desk asks for)
  session_s                 seconds per backtest session (the same run)
  five_year_15m_s           seconds for five years (2013-11-01 to 2018-10-31) of the replay on
                            15-minute ticks, SPY and QQQ (the default config's symbols)
  five_year_sessions        sessions in that run
  measured_at               UTC time of the run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thetadesk.backtest.engine import Backtest, backtest_config  # noqa: E402
from thetadesk.config import DEFAULT_CONFIG, load_config_data  # noqa: E402
from thetadesk.logging import configure_logging  # noqa: E402
from thetadesk.wiring import build_market  # noqa: E402


class Counting:
    """The market, counting the quotes handed out."""

    def __init__(self, market):
        self.market = market
        self.rows = 0
        self.quotes = 0

    def chain(self, symbol, now, min_dte=None, max_dte=None):
        chain = self.market.chain(symbol, now, min_dte=min_dte, max_dte=max_dte)
        self.rows += len(chain)
        return chain

    def quote(self, contract, now):
        self.quotes += 1
        return self.market.quote(contract, now)

    def spot(self, symbol, now):
        return self.market.spot(symbol, now)

    def __getattr__(self, name):
        return getattr(self.market, name)


def _data() -> dict:
    data = load_config_data(DEFAULT_CONFIG)
    data["market"]["tick_seconds"] = 900
    data["risk_reports"]["monte_carlo_scenarios"] = 0
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=40)
    p.add_argument("--skip-five-year", action="store_true")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-backtest-"))
    configure_logging(tmp / "logs", "bench", "warning", console=False)
    out: dict = {}

    start = date(2015, 1, 2)
    config, _, _, _ = backtest_config(_data(), source="replay", start=start, end=start)
    from thetadesk.clock import MarketCalendar

    cal = MarketCalendar()
    sessions = cal.sessions(start, args.sessions)
    config, _, end, _ = backtest_config(_data(), source="replay", start=start, end=sessions[-1])
    market = Counting(build_market(config))
    bt = Backtest(config, tmp / "rate", end=end, market=market)
    t = time.perf_counter()
    bt.run()
    seconds = time.perf_counter() - t
    ticks = sum(len(cal.ticks(d, config.market.tick_seconds)) for d in sessions)
    events = market.rows + market.quotes
    out["quote_events_per_s"] = events / seconds
    out["chain_rows_per_tick"] = market.rows / ticks
    out["session_s"] = seconds / len(sessions)

    fresh = build_market(config)
    rows = 0
    t = time.perf_counter()
    for d in sessions:
        for now in cal.ticks(d, config.market.tick_seconds):
            for symbol in config.market.symbols:
                rows += len(fresh.chain(symbol, now))
    out["data_quote_events_per_s"] = rows / (time.perf_counter() - t)
    out["quote_events_ratio"] = out["quote_events_per_s"] / out["data_quote_events_per_s"]

    if not args.skip_five_year:
        config, _, end, _ = backtest_config(_data(), source="replay", start=date(2013, 11, 1),
                                            end=date(2018, 10, 31))
        bt = Backtest(config, tmp / "five", end=end)
        t = time.perf_counter()
        bt.run()
        out["five_year_15m_s"] = time.perf_counter() - t
        out["five_year_sessions"] = len(bt.session_dates)
    out["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()},
                     indent=1))


if __name__ == "__main__":
    main()
