"""RequestBudget and TTLCache on a fake monotonic clock: assertions are on the recorded sleeps
and the log, never on wall time."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from tests.fakes.clock import FakeTime
from thetadesk.adapters.budget import RequestBudget, TTLCache


@pytest.fixture
def t() -> FakeTime:
    return FakeTime(0.0)


def budget(t: FakeTime, rpm: int) -> RequestBudget:
    return RequestBudget(rpm, vendor="Polygon free tier",
                         setting="market.polygon.requests_per_minute",
                         clock=t.clock, sleep=t.sleep)


def warnings(logs: list[dict]) -> list[str]:
    return [e["event"] for e in logs if e["log_level"] == "warning"]


def test_requests_within_the_limit_do_not_wait(t):
    b = budget(t, 5)
    with capture_logs() as logs:
        waits = [b.acquire("SPY chain") for _ in range(5)]
    assert waits == [0.0] * 5
    assert t.sleeps == []
    assert warnings(logs) == []


def test_the_window_rolls(t):
    b = budget(t, 2)
    b.acquire("a")          # t=0
    t.now = 20.0
    b.acquire("b")          # t=20
    t.now = 30.0
    assert b.acquire("c") == 30.0  # until the t=0 request leaves the window at 60
    assert b.acquire("d") == 20.0  # until the t=20 request leaves at 80
    assert t.sleeps == [30.0, 20.0]
    assert t.now == 80.0


def test_one_plain_english_warning_per_minute(t):
    b = budget(t, 2)
    with capture_logs() as logs:
        b.acquire("SPY chain")      # t=0
        t.now = 10.0
        b.acquire("SPY chain")      # t=10
        t.now = 48.2
        b.acquire("SPY chain")      # waits 11.8 s, until t=60: warns
        b.acquire("SPY chain")      # waits 10 s, until t=70: within the minute, quiet
        t.now = 200.0
        b.acquire("QQQ chain")
        b.acquire("QQQ chain")
        b.acquire("QQQ chain")      # waits 60 s; the last warning is over a minute old
    assert t.sleeps == pytest.approx([11.8, 10.0, 60.0])
    assert warnings(logs) == [
        "Polygon free tier allows 2 requests/minute; waited 11.8 s for SPY chain; raise "
        "market.polygon.requests_per_minute if your plan allows more",
        "Polygon free tier allows 2 requests/minute; waited 60.0 s for QQQ chain; raise "
        "market.polygon.requests_per_minute if your plan allows more",
    ]


def test_defer_holds_requests_back_without_blaming_the_plan(t):
    b = budget(t, 100)
    b.defer(7.0)
    with capture_logs() as logs:
        assert b.acquire("SPY chain") == 7.0
    assert t.sleeps == [7.0]
    assert warnings(logs) == []


@pytest.mark.parametrize("rpm", [0, -1, 2.5, True])
def test_budget_needs_a_positive_integer_rate(rpm):
    with pytest.raises(ValueError, match="requests_per_minute"):
        RequestBudget(rpm)


def test_cache_keeps_values_for_the_ttl(t):
    cache = TTLCache(10.0, clock=t.clock)
    loads = []

    def load():
        loads.append(t.now)
        return f"chain@{t.now}"

    key = ("chain", "SPY", None, None)
    assert cache.get_or_load(key, load) == "chain@0.0"
    t.now = 9.9
    assert cache.get_or_load(key, load) == "chain@0.0"
    t.now = 10.0
    assert cache.get_or_load(key, load) == "chain@10.0"
    assert loads == [0.0, 10.0]
    assert cache.get(("chain", "QQQ", None, None)) is None


def test_cache_does_not_keep_errors(t):
    cache = TTLCache(10.0, clock=t.clock)

    def fail():
        raise RuntimeError("vendor down")

    with pytest.raises(RuntimeError):
        cache.get_or_load("k", fail)
    assert cache.get_or_load("k", lambda: 1) == 1


def test_zero_ttl_disables_the_cache_and_size_is_bounded(t):
    off = TTLCache(0.0, clock=t.clock)
    off.put("k", 1)
    assert off.get("k") is None
    small = TTLCache(60.0, clock=t.clock, max_entries=2)
    for k in "abc":
        small.put(k, k)
    assert [small.get(k) for k in "abc"] == [None, "b", "c"]


# -- one budget for several processes -----------------------------------------------------------


def shared(t: FakeTime, path, rpm: int = 5) -> RequestBudget:
    return RequestBudget(rpm, vendor="Polygon free tier",
                         setting="market.polygon.requests_per_minute",
                         clock=t.clock, sleep=t.sleep, shared_path=path)


def test_a_shared_budget_counts_every_process_using_the_file(t, tmp_path):
    path = tmp_path / "vendor-budget.db"
    symbol_actor, account_actor = shared(t, path), shared(t, path)
    for _ in range(3):
        symbol_actor.acquire("SPY chain")
        t.now += 1.0
    for _ in range(2):
        account_actor.acquire("SPY quote")
        t.now += 1.0

    with capture_logs() as logs:
        waited = account_actor.acquire("SPY quote")

    # Five went out in the window between the two of them: the sixth waits for the first
    # (sent at 0) to leave the window, although this budget itself sent only two.
    assert waited == pytest.approx(55.0)
    assert "shared by every actor" in warnings(logs)[0]


def test_a_shared_budget_passes_a_429_deferral_to_the_other_processes(t, tmp_path):
    path = tmp_path / "vendor-budget.db"
    first, second = shared(t, path, rpm=100), shared(t, path, rpm=100)
    first.defer(12.0)

    assert second.acquire("SPY chain") == pytest.approx(12.0)


def test_a_shared_budget_ignores_records_from_a_clock_that_stepped_back(t, tmp_path):
    path = tmp_path / "vendor-budget.db"
    t.now = 10_000.0
    early = shared(t, path, rpm=1)
    early.acquire("SPY chain")
    early.defer(7200.0)  # far more than any Retry-After: a clock problem, not a vendor's
    t.now = 100.0  # the wall clock was set back

    assert shared(t, path, rpm=1).acquire("SPY chain") == 0.0


def test_separate_keys_in_one_file_do_not_share_a_limit(t, tmp_path):
    path = tmp_path / "vendor-budget.db"
    polygon = shared(t, path, rpm=1)
    alpaca = RequestBudget(1, vendor="Alpaca market data",
                           setting="market.alpaca.requests_per_minute",
                           clock=t.clock, sleep=t.sleep, shared_path=path)
    polygon.acquire("SPY chain")

    assert alpaca.acquire("SPY chain") == 0.0
