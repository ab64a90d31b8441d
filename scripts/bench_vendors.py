#!/usr/bin/env python
"""Benchmark the vendor data path: a Polygon option chain snapshot through the real
polygon-api-client against a local server, into a validated ``OptionChain``; print one JSON
object.

Usage: .venv/bin/python scripts/bench_vendors.py [--contracts 3000] [--seconds 3]

The chain is the simulated market's SPY chain at one instant, rendered as Polygon snapshot
pages of 250 (``tests/fakes/vendors.py`` serves them, so the payload is the documented shape).
Baselines in the same run: decoding the same pages' JSON with ``json.loads`` (the least any
client must do) and fetching them raw over the same local HTTP connection.

Keys:
  contracts                   rows in the chain (pages of 250)
  polygon_chain_ms            one whole chain: every page fetched, rows validated, missing
                              Greeks solved, the OptionChain built (median)
  polygon_rows_per_s          contracts per second through that path
  http_raw_ms                 baseline: the same pages fetched raw with urllib3 (median)
  json_decode_ms              baseline: json.loads of the same pages (median)
  overhead_vs_raw_http        polygon_chain_ms / (http_raw_ms + json_decode_ms): what the
                              SDK's models, the checks and the chain cost on top of transport
  chain_builder_rows_per_s    ChainBuilder alone (checks and chain, no HTTP, no SDK)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contracts", type=int, default=3000,
                        help="widen the DTE window until the chain holds at least this many")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()

    import logging

    import urllib3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    from tests.fakes.vendors import FakeVendors
    from thetadesk.adapters._chain_rows import ChainBuilder, RawRow
    from thetadesk.adapters.polygon import PolygonMarketData, PolygonSettings
    from thetadesk.adapters.sim_market import SimMarket, SimSymbol
    from thetadesk.chain import NEW_YORK

    now = datetime(2026, 8, 20, 11, 0, tzinfo=NEW_YORK)
    market = SimMarket(seed=3, symbols={"SPY": SimSymbol(580.0, 0.16, 0.013, 1.0)}, rate=0.04,
                       start=date(2026, 8, 3))
    chain = market.chain("SPY", now)
    expiries = chain.expiries()
    today = now.astimezone(NEW_YORK).date()
    for high in expiries:
        rows = [r for e in expiries if e <= high for r in chain.rows(e)]
        if len(rows) >= args.contracts:
            break
    max_dte = (high - today).days
    fake = FakeVendors(market, lambda: now).start()
    try:
        md = PolygonMarketData(PolygonSettings("bench" + "k" * 27), base_url=fake.url,
                               requests_per_minute=100_000, cache_ttl_s=0,
                               max_quote_age_s=86_400, max_spot_age_s=86_400, rate=0.04,
                               dividend_yields={"SPY": 0.013})

        def timed(fn) -> float:
            samples = []
            end = time.perf_counter() + args.seconds
            while time.perf_counter() < end or len(samples) < 3:
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
            return statistics.median(samples)

        got = md.chain("SPY", now, 0, max_dte)
        n = sum(len(got.rows(e)) for e in got.expiries())
        chain_s = timed(lambda: md.chain("SPY", now, 0, max_dte))

        # The same pages, raw: follow the cursors once and keep the bytes.
        pool = urllib3.PoolManager()
        first = f"{fake.url}/v3/snapshot/options/SPY?limit=250&expiration_date.lte=" + (
            today + timedelta(days=max_dte)).isoformat()

        def fetch_raw() -> list[bytes]:
            pages, url = [], first
            while url:
                body = pool.request("GET", url).data
                pages.append(body)
                nxt = json.loads(body).get("next_url")
                url = nxt and fake.url + nxt[nxt.index("/v3/"):]
            return pages

        pages = fetch_raw()
        raw_s = timed(fetch_raw)
        decode_s = timed(lambda: [json.loads(p) for p in pages])

        rows = [r for e in got.expiries() for r in got.rows(e)]
        raws = [RawRow(r.contract.occ, r.contract, r.quote.bid, r.quote.ask, r.quote.bid_size,
                       r.quote.ask_size, r.quote.ts, None, None, r.open_interest, r.volume)
                for r in rows]

        def build() -> None:
            builder = ChainBuilder("bench", "SPY", now, max_quote_age_s=86_400,
                                   max_reject_fraction=0.2, rate=0.04, dividend_yield=0.013)
            for raw in raws:
                builder.add(raw)
            builder.build(got.spot)

        build_s = timed(build)
    finally:
        fake.stop()

    print(json.dumps({
        "contracts": n,
        "pages": len(pages),
        "polygon_chain_ms": round(chain_s * 1000, 1),
        "polygon_rows_per_s": round(n / chain_s),
        "http_raw_ms": round(raw_s * 1000, 1),
        "json_decode_ms": round(decode_s * 1000, 1),
        "overhead_vs_raw_http": round(chain_s / (raw_s + decode_s), 2),
        "chain_builder_rows_per_s": round(n / build_s),
        "measured": datetime.now(UTC).strftime("%Y-%m-%d"),
    }))


if __name__ == "__main__":
    main()
