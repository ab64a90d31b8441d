#!/usr/bin/env python
"""Many processes committing to one ledger at once: print one JSON object.

Usage: .venv/bin/python scripts/bench_ledger_lock.py [--writers 20] [--commits 10] [--rounds 3]

What the entry tick does to the ledger: every account actor writes its orders ahead and records
the broker's answers at the same moment, a few small transactions each, with a little work
between. Each writer process here makes ``--commits`` transactions of five rows on one WAL file
at ``synchronous=FULL``, with a few hundred microseconds of CPU between two, all starting
together. Two ways to wait for the write lock, in the same run, alternating:

  ledger    ``Ledger.transaction`` (thetadesk/store.py): polls in steps of 0.2 ms growing to 2 ms
  baseline  a plain sqlite3 connection: SQLite's own busy handler (sleeps 1, 2, 5, 10, 15, 20,
            25 ms and on)

Keys: ``writers``, ``commits``, ``rounds``; per way (``ledger``, ``baseline``) the median over
rounds of ``slowest_ms`` (the last writer done: what a tick waits for) and ``mean_ms``; and
``slowest_ratio``, baseline's slowest over the ledger's; ``measured_at``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thetadesk.store import Ledger  # noqa: E402

ROW = "x" * 200


def _work() -> int:
    x = 0
    for k in range(20_000):
        x += k * k
    return x


def _writer(path: str, way: str, commits: int, start: float, out) -> None:
    if way == "ledger":
        ledger = Ledger(path)
        conn = ledger._conn

        def transaction():
            return ledger.transaction()
    else:
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")

        class _Tx:
            def __enter__(self):
                conn.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind, value, tb):
                conn.execute("ROLLBACK" if kind else "COMMIT")

        def transaction():
            return _Tx()
    while time.time() < start:
        time.sleep(0.0005)
    t0 = time.perf_counter()
    for _ in range(commits):
        with transaction():
            for _ in range(5):
                conn.execute("INSERT INTO bench_rows (a, b) VALUES (?, ?)", (1, ROW))
        _work()
    out.put(time.perf_counter() - t0)


def _round(way: str, writers: int, commits: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-lock-") as tmp:
        path = str(Path(tmp) / "thetadesk.db")
        Ledger(path).close()  # the real schema, WAL mode
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("CREATE TABLE bench_rows (a INTEGER, b TEXT)")
        conn.close()
        out = mp.Queue()
        start = time.time() + 1.0
        procs = [mp.Process(target=_writer, args=(path, way, commits, start, out))
                 for _ in range(writers)]
        for p in procs:
            p.start()
        times = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join()
            if p.exitcode != 0:
                sys.exit(f"a {way} writer failed ({p.exitcode})")
    return max(times) * 1000.0, statistics.mean(times) * 1000.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--writers", type=int, default=20)
    p.add_argument("--commits", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if min(args.writers, args.commits, args.rounds) < 1:
        p.error("--writers, --commits and --rounds must be >= 1")
    found: dict[str, list[tuple[float, float]]] = {"ledger": [], "baseline": []}
    for _ in range(args.rounds):
        for way in ("baseline", "ledger"):
            found[way].append(_round(way, args.writers, args.commits))
    out: dict = {"writers": args.writers, "commits": args.commits, "rounds": args.rounds}
    for way, runs in found.items():
        out[way] = {"slowest_ms": round(statistics.median(r[0] for r in runs), 1),
                    "mean_ms": round(statistics.median(r[1] for r in runs), 1)}
    out["slowest_ratio"] = round(out["baseline"]["slowest_ms"] / out["ledger"]["slowest_ms"], 2)
    out["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
