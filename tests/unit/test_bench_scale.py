"""Specifications of scripts/bench_scale.py's config and memory sampling (the runs are the
benchmark's, not the suite's)."""

import importlib.util
import os
from pathlib import Path

import psutil

from thetadesk.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "scripts" / "bench_scale.py")
bench_scale = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_scale)


def test_the_scale_config_has_four_symbols_and_the_asked_accounts_each_trading_all():
    config = parse_config(bench_scale.scale_config(20))
    assert list(config.market.symbols) == ["SPY", "QQQ", "IWM", "DIA"]
    names = [a.name for a in config.accounts]
    assert len(names) == len(set(names)) == 20
    assert all(a.symbols == ("SPY", "QQQ", "IWM", "DIA") for a in config.accounts)
    assert parse_config(bench_scale.scale_config(1)).accounts[0].name == "paper-01"


def test_the_memory_of_a_process_tree_counts_this_process():
    me = psutil.Process(os.getpid())
    total = bench_scale._tree_memory(me)
    assert 0 < total <= me.memory_info().rss * 1.01 + sum(
        c.memory_info().rss for c in me.children(recursive=True))


def test_a_run_row_reads_the_ticks_and_the_actors_memory_from_run_stats():
    stats = {"tick_p50_ms": 5.0, "tick_p99_ms": 20.0, "tick_ms": [5.0, 20.0, 31.5], "ticks": 3,
             "first_tick_s": 9.5, "actors": {
                 "account-paper-01": {"pss_mb": 90.0, "numba": False},
                 "account-paper-02": {"pss_mb": 100.0, "numba": True},
                 "symbol-SPY": {"pss_mb": 150.0, "numba": True},
                 "risk": {"pss_mb": 155.0, "numba": True},
                 "notification": {"numba": False}}}  # not Linux: no memory figures
    row = bench_scale._row(2, 3 * 2**30, stats)
    assert row["rss_mb"] == 3072.0
    assert row["tick_max_ms"] == 31.5
    assert row["actor_mb"] == {"account": 95.0, "risk": 155.0, "symbol": 150.0}
    assert row["accounts_with_numba"] == 1
