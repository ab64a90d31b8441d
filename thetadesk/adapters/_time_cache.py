"""Shared by the simulated and replayed markets: integer-nanosecond instants and a small LRU."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from typing import Any

from thetadesk.errors import DataError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE_NS = 60 * 1_000_000_000
_US = timedelta(microseconds=1)


def to_ns(now: datetime) -> int:
    """A timezone-aware instant as integer nanoseconds since the epoch (microsecond precision)."""
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise DataError(f"now must be a timezone-aware datetime, got {now!r}")
    return ((now - EPOCH) // _US) * 1000


def from_ns(ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(ns) // 1000)


class LRU:
    """A small least-recently-used map."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self._size:
            self._data.popitem(last=False)
