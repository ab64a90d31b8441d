"""Turning vendor option snapshots into chain rows: one set of rules for every vendor.

Polygon and Alpaca describe a contract's quote in different shapes, but what makes a row
unusable is the same: a missing field, a NaN, a crossed or empty quote, a quote older than the
caller's ``now`` allows. The adapters translate their payloads into ``RawRow`` and let
``ChainBuilder`` decide. Bad rows are counted by reason and logged as ONE summary line per chain
(a chain with 2,000 rows and a feed hiccup must not write 2,000 log lines), and a chain where
too many rows are bad is refused as a whole: a vendor that mangles a fifth of the chain cannot
be trusted on the rest.

Where the vendor omits Greeks or implied volatility (Polygon does for some deep in-the-money
contracts; Alpaca's indicative feed often does), they are computed here from the quote's mid
with ``thetadesk.pricing`` so that every row that reaches a strategy carries a delta it can
select on, or None when the mid admits no volatility.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from thetadesk.chain import NEW_YORK, OptionChain, OptionQuote, expiry_instant
from thetadesk.errors import DataError
from thetadesk.logging import get_logger
from thetadesk.models import Contract, Quote
from thetadesk.pricing import bsm_greeks, implied_vol

__all__ = [
    "CachedMarketData",
    "ChainBuilder",
    "RawRow",
    "RowRejected",
    "dte_window",
    "ns_to_datetime",
    "require_aware",
    "to_quote",
]

_YEAR = timedelta(days=365)

# Reject reasons, as they appear in the summary line.
MISSING = "missing_field"
NOT_FINITE = "not_finite"
CROSSED = "crossed"
ZERO = "zero_quote"
STALE = "stale"
BAD_CONTRACT = "bad_contract"


def _log():
    return get_logger("thetadesk.adapters.chain_rows")


class RowRejected(DataError):
    """One row is unusable; ``reason`` is one of the summary's reason keys."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def ns_to_datetime(ns: Any) -> datetime | None:
    """A vendor's integer nanoseconds since the epoch as an aware UTC datetime (None if absent)."""
    if ns is None or isinstance(ns, bool) or not isinstance(ns, int | float):
        return None
    if not math.isfinite(ns):
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(ns) // 1000)


def require_aware(now: datetime) -> None:
    """DataError unless ``now`` is a timezone-aware datetime (every port call's ``now``)."""
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise DataError(f"now must be a timezone-aware datetime, got {now!r}")


def dte_window(now: datetime, min_dte: int | None, max_dte: int | None
               ) -> tuple[date | None, date | None]:
    """The expiry dates ``min_dte``/``max_dte`` calendar days from ``now``'s New York date."""
    today = now.astimezone(NEW_YORK).date()
    low = today + timedelta(days=min_dte) if min_dte is not None else None
    high = today + timedelta(days=max_dte) if max_dte is not None else None
    return low, high


def _number(symbol: str, name: str, value: Any) -> float:
    if value is None:
        raise RowRejected(MISSING, f"{symbol}: {name} is missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowRejected(NOT_FINITE, f"{symbol}: {name} is not a number: {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise RowRejected(NOT_FINITE, f"{symbol}: {name} is {value!r}")
    return value


def _size(value: Any) -> int:
    """Quote sizes are informative only: a missing or odd size becomes 0, never a reject."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if not math.isfinite(value) or value < 0:
        return 0
    return int(value)


def to_quote(symbol: str, bid: Any, ask: Any, bid_size: Any, ask_size: Any,
             ts: datetime | None, now: datetime, max_age_s: float) -> Quote:
    """A validated ``Quote`` or ``RowRejected`` saying why not.

    A zero bid with a positive ask is a real one-sided market (far out-of-the-money options
    quote that way) and is kept; no ask at all (ask <= 0) is no market and is rejected. The
    quote's own timestamp against the caller's ``now`` decides staleness.
    """
    bid_f = _number(symbol, "bid", bid)
    ask_f = _number(symbol, "ask", ask)
    if ts is None:
        raise RowRejected(MISSING, f"{symbol}: quote timestamp is missing")
    if bid_f < 0 or ask_f <= 0:
        raise RowRejected(ZERO, f"{symbol}: no market (bid {bid_f}, ask {ask_f})")
    if bid_f > ask_f:
        raise RowRejected(CROSSED, f"{symbol}: crossed quote (bid {bid_f} > ask {ask_f})")
    age = (now - ts).total_seconds()
    if age > max_age_s:
        raise RowRejected(
            STALE, f"{symbol}: quote from {ts:%Y-%m-%d %H:%M:%S} UTC is {age:.0f} s old "
                   f"(limit {max_age_s:.0f} s)")
    return Quote(bid_f, ask_f, _size(bid_size), _size(ask_size), ts)


def _optional(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _optional_int(value: Any) -> int | None:
    v = _optional(value)
    return int(v) if v is not None and v >= 0 else None


@dataclass(frozen=True, slots=True)
class RawRow:
    """One vendor row, translated but not yet checked. ``symbol`` is the vendor's ticker (for
    messages); ``contract`` is None when the vendor's description of it was unusable."""

    symbol: str
    contract: Contract | None
    bid: Any
    ask: Any
    bid_size: Any
    ask_size: Any
    quote_ts: datetime | None
    delta: Any = None
    iv: Any = None
    open_interest: Any = None
    volume: Any = None


class ChainBuilder:
    """Collects one chain's rows, rejects the unusable ones, and builds the ``OptionChain``."""

    def __init__(
        self,
        vendor: str,
        underlying: str,
        now: datetime,
        *,
        max_quote_age_s: float,
        max_reject_fraction: float,
        rate: float = 0.0,
        dividend_yield: float = 0.0,
        expiry_range: tuple[date | None, date | None] = (None, None),
    ) -> None:
        self.vendor = vendor
        self.underlying = underlying
        self.now = now
        self.max_quote_age_s = max_quote_age_s
        self.max_reject_fraction = max_reject_fraction
        self.rate = rate
        self.dividend_yield = dividend_yield
        self.expiry_range = expiry_range
        self.rows: list[OptionQuote] = []
        self.rejects: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.seen = 0

    def add(self, raw: RawRow) -> None:
        """Check one row: keep it, count it as rejected, or skip it (outside the expiry range)."""
        contract = raw.contract
        if contract is not None:
            low, high = self.expiry_range
            if (low is not None and contract.expiry < low) or (
                    high is not None and contract.expiry > high):
                return  # asked for a range; a vendor that over-delivers is not at fault
        self.seen += 1
        try:
            if contract is None:
                raise RowRejected(BAD_CONTRACT, f"{raw.symbol}: unreadable contract description")
            if contract.underlying != self.underlying:
                raise RowRejected(BAD_CONTRACT,
                                  f"{raw.symbol}: contract is on {contract.underlying}")
            quote = to_quote(raw.symbol, raw.bid, raw.ask, raw.bid_size, raw.ask_size,
                             raw.quote_ts, self.now, self.max_quote_age_s)
        except RowRejected as exc:
            self.rejects[exc.reason] += 1
            self.examples.setdefault(exc.reason, str(exc))
            return
        iv = _optional(raw.iv)
        self.rows.append(OptionQuote(
            contract, quote, delta=_optional(raw.delta), iv=iv if iv is None or iv > 0 else None,
            open_interest=_optional_int(raw.open_interest), volume=_optional_int(raw.volume),
        ))

    def _fill_greeks(self, spot: float) -> list[OptionQuote]:
        """Rows with the vendor's missing delta/IV computed from the mid (None if impossible)."""
        need = [i for i, r in enumerate(self.rows) if r.delta is None or r.iv is None]
        if not need:
            return self.rows
        rows = [self.rows[i] for i in need]
        strikes = np.array([r.contract.strike for r in rows])
        years = np.array([(expiry_instant(r.contract.expiry) - self.now) / _YEAR for r in rows])
        calls = np.array([r.contract.is_call for r in rows], dtype=np.bool_)
        mids = np.array([r.quote.mid for r in rows])
        bids = np.array([r.quote.bid for r in rows])
        vendor_iv = np.array([np.nan if r.iv is None else r.iv for r in rows])
        solved = implied_vol(mids, spot, strikes, years, self.rate, self.dividend_yield, calls)
        # A one-sided quote has no real mid: its implied volatility would be fiction.
        solved = np.where(bids > 0.0, solved, np.nan)
        vol = np.where(np.isnan(vendor_iv), solved, vendor_iv)
        vol = np.where(vol > 0.0, vol, np.nan)
        delta = bsm_greeks(spot, strikes, years, self.rate, vol, self.dividend_yield,
                           calls).delta
        out = list(self.rows)
        for j, i in enumerate(need):
            row = self.rows[i]
            new_iv = row.iv if row.iv is not None else (
                float(vol[j]) if math.isfinite(vol[j]) else None)
            new_delta = row.delta if row.delta is not None else (
                float(delta[j]) if math.isfinite(delta[j]) else None)
            out[i] = OptionQuote(row.contract, row.quote, new_delta, new_iv,
                                 row.open_interest, row.volume)
        return out

    def summary(self) -> dict[str, int]:
        return dict(self.rejects)

    def build(self, spot: float) -> OptionChain:
        """The chain, after logging one summary line; ``DataError`` if too much was rejected."""
        rejected = sum(self.rejects.values())
        when = f"{self.now.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        if rejected:
            _log().warning(
                f"{self.vendor} {self.underlying} chain: rejected {rejected} of {self.seen} "
                "rows",
                vendor=self.vendor, underlying=self.underlying, rows=self.seen,
                rejected=rejected, reasons=dict(sorted(self.rejects.items())),
                examples=dict(sorted(self.examples.items())),
            )
        if self.seen == 0:
            raise DataError(
                f"{self.vendor} returned no {self.underlying} option contracts in the requested "
                f"expiry range as of {when}; not traded on"
            )
        if rejected / self.seen > self.max_reject_fraction:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.rejects.items()))
            raise DataError(
                f"{self.vendor} {self.underlying} chain as of {when}: {rejected} of {self.seen} "
                f"rows unusable ({reasons}), more than "
                f"{self.max_reject_fraction:.0%} allowed; not traded on"
            )
        return OptionChain(self.underlying, spot, self.now, self._fill_greeks(spot),
                           rate=self.rate, dividend_yield=self.dividend_yield)


class CachedMarketData:
    """The ``MarketData`` port's three calls for a vendor adapter: ``now`` checked, answers kept
    in the adapter's ``_cache`` (a ``TTLCache``) keyed by the request, misses sent to the
    adapter's ``_fetch_chain(symbol, now, low, high)``, ``_fetch_spot(symbol, now)`` and
    ``_fetch_quote(contract, now)``, whose docstrings say what each vendor answers with."""

    def chain(self, symbol: str, now: datetime, min_dte: int | None = None,
              max_dte: int | None = None) -> OptionChain:
        """Every contract of ``symbol`` expiring in the DTE window, checked row by row."""
        require_aware(now)
        low, high = dte_window(now, min_dte, max_dte)
        return self._cache.get_or_load(
            ("chain", symbol, low, high), lambda: self._fetch_chain(symbol, now, low, high))

    def spot(self, symbol: str, now: datetime) -> float:
        require_aware(now)
        return self._cache.get_or_load(("spot", symbol), lambda: self._fetch_spot(symbol, now))

    def quote(self, contract: Contract, now: datetime) -> Quote:
        require_aware(now)
        return self._cache.get_or_load(("quote", contract.occ),
                                       lambda: self._fetch_quote(contract, now))


def dividend_yield_for(yields: Mapping[str, float], symbol: str) -> float:
    value = float(yields.get(symbol, 0.0))
    if not math.isfinite(value):
        raise DataError(f"dividend yield for {symbol} must be finite, got {value!r}")
    return value
