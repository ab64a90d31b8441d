"""Request budgets and a small TTL cache for the market-data adapters.

Data vendors sell request rates: Polygon's free tier allows 5 requests a minute, Alpaca's basic
market-data plan 200. Going over earns 429s, and repeated 429s can get a key throttled for
longer, so the adapters spend their requests through a ``RequestBudget`` that waits *before*
sending instead of being told off afterwards. When the budget is what slows the desk down, the
operator needs to know why ticks are late and which setting lifts the limit, so the budget says
so in one plain-English warning a minute (not one per request: that would drown the log).

``TTLCache`` keeps recent answers (a chain, a spot) for a few seconds so that several callers
asking the same question within one tick spend one request between them.

Both take their clock as a callable returning monotonic seconds and, for the budget, a ``sleep``
callable: tests pass fakes and assert on the recorded sleeps, never on wall time.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from thetadesk.clock import LiveClock
from thetadesk.errors import ConfigError, DataError, TemporaryError
from thetadesk.logging import get_logger

__all__ = ["RequestBudget", "TTLCache", "VendorReply", "send_within_budget", "vendor_message"]

T = TypeVar("T")

_WINDOW_S = 60.0
_WARN_EVERY_S = 60.0


def _log():
    return get_logger("thetadesk.adapters.budget")


def _wall_seconds() -> float:
    return LiveClock().now().timestamp()


class _LocalLog:
    """The requests of one process: what a budget remembers when nothing else shares it."""

    def __init__(self) -> None:
        self._sent: deque[float] = deque()
        self._blocked_until = -math.inf

    def reserve(self, now: float, limit: int) -> tuple[float, bool]:
        """Record a request at ``now`` if one fits and return ``(0, False)``; otherwise record
        nothing and return the wait and whether the window (not a ``defer``) is the reason."""
        while self._sent and self._sent[0] <= now - _WINDOW_S:
            self._sent.popleft()
        wait, window = _wait(now, limit, list(self._sent), self._blocked_until)
        if wait <= 0.0:
            self._sent.append(now)
        return wait, window

    def defer(self, until: float) -> None:
        self._blocked_until = max(self._blocked_until, until)


class _SharedLog:
    """The requests of every process on this machine that spends one vendor key, kept in a
    small SQLite file (``BEGIN IMMEDIATE`` serialises the processes' check-and-record). The
    clock must be one all of them share: wall seconds (``LiveClock``), not a process's own
    monotonic clock."""

    def __init__(self, path: Path, key: str) -> None:
        self._path = Path(path)
        self._key = key
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS sent (key TEXT NOT NULL, t REAL NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS sent_key_t ON sent (key, t)")
            conn.execute("CREATE TABLE IF NOT EXISTS blocked"
                         " (key TEXT PRIMARY KEY, until REAL NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # A lost record after a power cut only lets a few more requests through: no fsync.
        conn.execute("PRAGMA synchronous=OFF")
        return conn

    def reserve(self, now: float, limit: int) -> tuple[float, bool]:
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Rows from the future are a clock that stepped back: they must not block.
                conn.execute("DELETE FROM sent WHERE key = ? AND (t <= ? OR t > ?)",
                             (self._key, now - _WINDOW_S, now + _WINDOW_S))
                sent = [t for (t,) in conn.execute(
                    "SELECT t FROM sent WHERE key = ? ORDER BY t", (self._key,))]
                row = conn.execute("SELECT until FROM blocked WHERE key = ?",
                                   (self._key,)).fetchone()
                blocked = -math.inf if row is None or row[0] > now + 3600 else row[0]
                wait, window = _wait(now, limit, sent, blocked)
                if wait <= 0.0:
                    conn.execute("INSERT INTO sent VALUES (?, ?)", (self._key, now))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return wait, window

    def defer(self, until: float) -> None:
        with closing(self._connect()) as conn:
            conn.execute(
                "INSERT INTO blocked VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                " SET until = max(until, excluded.until)", (self._key, until))


def _wait(now: float, limit: int, sent: list[float], blocked_until: float
          ) -> tuple[float, bool]:
    """Seconds to wait before one more request fits (``sent``: this window's, oldest first),
    and whether the window rather than a ``defer`` is the reason."""
    deferred = blocked_until - now
    window = 0.0
    if len(sent) >= limit:
        window = sent[len(sent) - limit] + _WINDOW_S - now
    wait = max(deferred, window, 0.0)
    return wait, wait > 0.0 and window >= deferred


class RequestBudget:
    """At most ``requests_per_minute`` requests in any rolling 60-second window.

    ``acquire(what)`` blocks (through ``sleep``) until one more request fits, records it, and
    returns the seconds it waited. ``defer(seconds)`` holds every request back for a while:
    adapters call it when a vendor answers 429 anyway (another process sharing the key, a plan
    smaller than configured), so that the retry, and everyone else, waits too.

    ``shared_path``: a file where every process of the desk that uses the same key keeps its
    requests (the symbol, account and risk actors each have their own client), so the limit
    holds for all of them together, and a 429's ``defer`` holds them all back. Without it the
    budget counts this process only. A shared budget reads wall seconds (``LiveClock``) unless
    given a ``clock``.

    ``vendor`` names the limit in the warning ("Polygon free tier"); ``setting`` names the
    configuration key that raises it.
    """

    def __init__(
        self,
        requests_per_minute: int,
        *,
        vendor: str = "the data vendor",
        setting: str = "the requests_per_minute setting",
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        shared_path: Path | None = None,
    ) -> None:
        if isinstance(requests_per_minute, bool) or not isinstance(requests_per_minute, int) or (
                requests_per_minute <= 0):
            raise ValueError(
                f"requests_per_minute must be a positive integer, got {requests_per_minute!r}"
            )
        self.requests_per_minute = requests_per_minute
        self.vendor = vendor
        self.setting = setting
        self.shared_path = None if shared_path is None else Path(shared_path)
        if clock is None:
            clock = time.monotonic if shared_path is None else _wall_seconds
        self._clock = clock
        self._sleep = sleep
        self._log: _LocalLog | _SharedLog = (
            _LocalLog() if shared_path is None else _SharedLog(Path(shared_path), setting))
        self._last_warning: float | None = None

    def defer(self, seconds: float) -> None:
        """Send nothing for ``seconds`` from now (a vendor's 429 or its Retry-After)."""
        if seconds > 0:
            self._log.defer(self._clock() + seconds)

    def acquire(self, what: str) -> float:
        """Wait until one more request for ``what`` (e.g. "SPY chain") fits; return the wait.

        Warns (at most once a minute) only when the per-minute limit caused the wait: a wait
        imposed by a vendor's 429 is the adapter's to report.
        """
        waited = 0.0
        by_window = 0.0
        while True:
            now = self._clock()
            wait, window = self._log.reserve(now, self.requests_per_minute)
            if wait <= 0.0:
                break
            self._sleep(wait)
            waited += wait
            if window:
                by_window += wait
        if by_window > 0.0 and (self._last_warning is None
                                or now - self._last_warning >= _WARN_EVERY_S):
            self._last_warning = now
            shared = " (shared by every actor using this key)" if self.shared_path else ""
            _log().warning(
                f"{self.vendor} allows {self.requests_per_minute} requests/minute{shared}; "
                f"waited {waited:.1f} s for {what}; raise {self.setting} if your plan allows "
                "more",
                vendor=self.vendor,
                requests_per_minute=self.requests_per_minute,
                waited_s=round(waited, 3),
                request=what,
            )
        return waited


# -- one request, spent through the budget and mapped to ThetaDesk's errors ---------------------


@dataclass(frozen=True, slots=True)
class VendorReply:
    """What the error mapping needs of an HTTP reply, whatever the HTTP library."""

    status: int
    retry_after: str | None
    body: bytes


def vendor_message(body: bytes) -> str:
    """The vendor's own explanation in an error body (``error``/``message``/``status``), else
    the start of the body."""
    text = body.decode("utf-8", "replace")
    try:
        decoded = json.loads(text)
    except ValueError:
        return text.strip()[:200] or "(empty body)"
    if isinstance(decoded, dict):
        for name in ("error", "message", "status"):
            if isinstance(decoded.get(name), str):
                return decoded[name]
    return text.strip()[:200]


def send_within_budget(budget: RequestBudget, vendor: str, what: str, send: Callable[[], T],
                       view: Callable[[T], VendorReply], *, max_rate_limit_retries: int,
                       refused_hint: str) -> T:
    """Spend one unit of ``budget`` and ``send()`` (which raises TemporaryError itself when the
    network fails); then map the reply: 429 -> hold the budget back (``Retry-After``, else 5,
    10, 20... s up to 60) and try again, up to ``max_rate_limit_retries`` times, then
    TemporaryError; 5xx -> TemporaryError; 401/403 -> ConfigError with ``refused_hint``; any
    other non-2xx, or a body that is not JSON -> DataError. Returns the reply."""
    for attempt in range(max_rate_limit_retries + 1):
        budget.acquire(what)
        reply = send()
        r = view(reply)
        if r.status == 429:
            try:
                backoff = float(r.retry_after) if r.retry_after else 0.0
            except ValueError:
                backoff = 0.0
            if not (math.isfinite(backoff) and backoff > 0):
                backoff = min(60.0, 5.0 * 2 ** attempt)
            _log().warning(f"{vendor.lower()} rate limited (429); backing off", request=what,
                           backoff_s=backoff, attempt=attempt + 1)
            budget.defer(backoff)
            continue
        if r.status >= 500:
            raise TemporaryError(
                f"{vendor} {what}: server error {r.status} ({vendor_message(r.body)})")
        if r.status in (401, 403):
            raise ConfigError(f"{vendor} refused {what} ({r.status}: "
                              f"{vendor_message(r.body)}): {refused_hint}")
        if not 200 <= r.status < 300:
            raise DataError(
                f"{vendor} {what}: unexpected HTTP {r.status} ({vendor_message(r.body)})")
        if r.status != 204:  # "no content" is the one reply without a JSON body
            try:
                json.loads(r.body)
            except ValueError:
                raise DataError(f"{vendor} {what}: the reply is not valid JSON "
                                f"({len(r.body)} bytes)") from None
        return reply
    raise TemporaryError(f"{vendor} {what}: still rate limited (429) after "
                         f"{max_rate_limit_retries + 1} attempts")


_MISSING: Any = object()


class TTLCache:
    """Answers kept for ``ttl_s`` seconds of the injected clock, at most ``max_entries`` of them.

    Keys are the request's identity, e.g. ``("chain", "SPY", date(2026, 9, 1), date(2026, 9,
    30))``. A ``ttl_s`` of 0 disables caching. Errors are never cached: a failed request is
    retried by the next caller.
    """

    def __init__(
        self,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 256,
    ) -> None:
        if not (math.isfinite(ttl_s) and ttl_s >= 0):
            raise ValueError(f"ttl_s must be a finite number >= 0, got {ttl_s!r}")
        if max_entries <= 0:
            raise ValueError(f"max_entries must be positive, got {max_entries!r}")
        self.ttl_s = float(ttl_s)
        self._clock = clock
        self._max = max_entries
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value stored under ``key`` if it is younger than ``ttl_s``, else ``default``."""
        entry = self._data.get(key)
        if entry is None:
            return default
        expires, value = entry
        if self._clock() >= expires:
            del self._data[key]
            return default
        self._data.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        if self.ttl_s <= 0:
            return
        self._data[key] = (self._clock() + self.ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def get_or_load(self, key: Hashable, load: Callable[[], T]) -> T:
        """The cached value for ``key``, or ``load()``'s result, stored for next time."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            value = load()
            self.put(key, value)
        return value

    def clear(self) -> None:
        self._data.clear()
