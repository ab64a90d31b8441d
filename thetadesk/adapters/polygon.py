"""Polygon.io option data behind the ``MarketData`` port.

* ``PolygonSettings.from_env(env)`` reads ``POLYGON_API_KEY`` (``ConfigError`` naming it when
  absent) and registers the key with ``thetadesk.logging.register_secret``. The key travels only
  in the ``Authorization: Bearer`` header the SDK sets; it is never logged or put in an error.
* ``PolygonMarketData(settings, ...)`` answers ``chain`` from the options chain snapshot
  (``/v3/snapshot/options/{underlying}``, every page), ``quote`` from the single-contract
  snapshot, and ``spot`` from the underlying price the chain snapshot carries or else the last
  1-minute aggregate. ``aggregates`` and ``option_trades`` return small frozen records for later
  use (volatility estimates, fill-quality checks).

Why the SDK's HTTP pool is replaced: ``polygon.RESTClient`` sends every request, including each
pagination page, through one ``urllib3.PoolManager``. Its own retry policy retries 429 and 5xx
three times at 0.1 s backoff (spending the rate budget behind our back), it never passes its
configured timeout to the requests, it turns every non-200 into a ``BadResponse`` carrying only
the body (no status code), and it answers malformed JSON with an empty list, which would read
as "no options listed". ``_GuardedPool`` stands in for that pool: every request (every page)
first spends one unit of the ``RequestBudget``, runs with a timeout and no hidden retries, and
has its status and body mapped to ThetaDesk's errors:

* 429: the budget is held back (``Retry-After`` if given, else a growing backoff) and the
  request is retried through the budget, up to ``max_rate_limit_retries`` times, then
  ``TemporaryError``;
* 5xx, network failures and timeouts: ``TemporaryError`` (the caller's loop owns retrying);
* 401/403: ``ConfigError`` saying the key or the plan was refused, with Polygon's message;
* any other non-200 or a body that is not JSON: ``DataError``.

Rows are checked by ``thetadesk.adapters._chain_rows`` (shared with the Alpaca adapter).
Polygon's timestamps are nanoseconds (snapshot ``last_updated``, trade ``sip_timestamp``) and
milliseconds (aggregate ``t``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import certifi
import urllib3
from polygon import RESTClient

from thetadesk.adapters._chain_rows import (
    CachedMarketData,
    ChainBuilder,
    RawRow,
    RowRejected,
    dividend_yield_for,
    ns_to_datetime,
    require_aware,
    to_quote,
)
from thetadesk.adapters.budget import (
    RequestBudget,
    TTLCache,
    VendorReply,
    send_within_budget,
)
from thetadesk.chain import OptionChain
from thetadesk.errors import ConfigError, DataError, TemporaryError, ThetaDeskError
from thetadesk.logging import get_logger, register_secret
from thetadesk.models import Contract, Quote

__all__ = [
    "ENV_API_KEY",
    "AggregateBar",
    "OptionTrade",
    "PolygonMarketData",
    "PolygonSettings",
]

ENV_API_KEY = "POLYGON_API_KEY"
DEFAULT_BASE_URL = "https://api.polygon.io"
_VENDOR = "Polygon"
_TIMESPANS = ("minute", "hour", "day")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _log():
    return get_logger("thetadesk.adapters.polygon")


@dataclass(frozen=True, slots=True)
class PolygonSettings:
    api_key: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key.strip():
            raise ConfigError(f"{ENV_API_KEY} is empty: set it to your Polygon.io API key")
        if self.api_key != self.api_key.strip():
            raise ConfigError(f"{ENV_API_KEY} has leading or trailing whitespace")
        register_secret(self.api_key)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> PolygonSettings:
        """Settings from ``POLYGON_API_KEY``; ``ConfigError`` naming the variable if unset."""
        key = env.get(ENV_API_KEY)
        if not key:
            raise ConfigError(
                f"environment variable {ENV_API_KEY} is not set: Polygon market data needs "
                "an API key (https://polygon.io/dashboard/keys)"
            )
        return cls(api_key=key)


@dataclass(frozen=True, slots=True)
class AggregateBar:
    """One OHLCV bar; ``start`` is the bar's opening instant (UTC)."""

    start: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None = None


@dataclass(frozen=True, slots=True)
class OptionTrade:
    """One reported option trade (SIP time, UTC), per share."""

    time: datetime
    price: float
    size: int
    exchange: int | None = None
    conditions: tuple[int, ...] = ()


class _GuardedPool:
    """Stands in for the SDK's ``urllib3.PoolManager``: budget, timeout, status mapping."""

    def __init__(self, headers: Mapping[str, str], budget: RequestBudget, timeout_s: float,
                 max_rate_limit_retries: int) -> None:
        self._pool = urllib3.PoolManager(
            headers=dict(headers), ca_certs=certifi.where(), cert_reqs="CERT_REQUIRED",
            retries=False, timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
        )
        self._budget = budget
        self._max_429 = max_rate_limit_retries
        self.what = "request"

    def request(self, method: str, url: str, fields: Any = None, headers: Any = None,
                **kwargs: Any) -> urllib3.BaseHTTPResponse:
        what = self.what

        def send() -> urllib3.BaseHTTPResponse:
            try:
                return self._pool.request(method, url, fields=fields, headers=headers,
                                          retries=False, **kwargs)
            except urllib3.exceptions.HTTPError as exc:
                raise TemporaryError(
                    f"Polygon {what}: network error ({type(exc).__name__}); try again"
                ) from None

        return send_within_budget(
            self._budget, "Polygon", what, send,
            lambda r: VendorReply(r.status, r.headers.get("Retry-After"), r.data),
            max_rate_limit_retries=self._max_429,
            refused_hint=f"check that {ENV_API_KEY} is a valid key and that your plan "
                         "includes this data")


def _contract(ticker: Any, shares: Any) -> Contract | None:
    if not isinstance(ticker, str) or not ticker.startswith("O:"):
        return None
    multiplier = int(shares) if isinstance(shares, int | float) and shares == int(shares) and (
        shares > 0) else 100
    try:
        return Contract.from_occ(ticker[2:], multiplier=multiplier)
    except DataError:
        return None


def _raw_row(snap: Any) -> RawRow:
    details = snap.details
    ticker = getattr(details, "ticker", None)
    quote = snap.last_quote
    greeks = snap.greeks
    day = snap.day
    return RawRow(
        symbol=ticker if isinstance(ticker, str) else "(no ticker)",
        contract=_contract(ticker, getattr(details, "shares_per_contract", None)),
        bid=getattr(quote, "bid", None),
        ask=getattr(quote, "ask", None),
        bid_size=getattr(quote, "bid_size", None),
        ask_size=getattr(quote, "ask_size", None),
        quote_ts=ns_to_datetime(getattr(quote, "last_updated", None)),
        delta=getattr(greeks, "delta", None),
        iv=snap.implied_volatility,
        open_interest=snap.open_interest,
        volume=getattr(day, "volume", None),
    )


def _positive(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


class PolygonMarketData(CachedMarketData):
    """``MarketData`` from Polygon.io.

    ``requests_per_minute`` is the plan's rate (5 on the free tier); ``cache_ttl_s`` how long a
    chain, spot or quote answers repeated questions without a request (a cached chain keeps the
    ``as_of`` of the call that fetched it); ``max_quote_age_s`` and ``max_spot_age_s`` how old a
    quote or price may be against the caller's ``now`` (the defaults admit 15-minute delayed
    plans); ``rate`` and ``dividend_yields`` (per underlying, continuously compounded) feed the
    Greeks computed where Polygon omits them. ``clock``/``sleep`` (monotonic seconds) drive the
    budget and the cache.
    """

    def __init__(
        self,
        settings: PolygonSettings,
        *,
        base_url: str | None = None,
        requests_per_minute: int = 5,
        cache_ttl_s: float = 30.0,
        max_reject_fraction: float = 0.2,
        max_quote_age_s: float = 1200.0,
        max_spot_age_s: float = 1200.0,
        rate: float = 0.0,
        dividend_yields: Mapping[str, float] | None = None,
        timeout_s: float = 10.0,
        max_rate_limit_retries: int = 3,
        page_limit: int = 250,
        shared_budget_path: Path | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (0.0 <= max_reject_fraction <= 1.0):
            raise ConfigError(
                f"max_reject_fraction must be in [0, 1], got {max_reject_fraction!r}")
        self.budget = RequestBudget(
            requests_per_minute,
            vendor="Polygon free tier" if requests_per_minute <= 5 else "Polygon plan",
            setting="market.polygon.requests_per_minute", clock=clock, sleep=sleep,
            shared_path=shared_budget_path,
        )
        self._cache = TTLCache(cache_ttl_s, clock=clock or time.monotonic)
        self.max_reject_fraction = max_reject_fraction
        self.max_quote_age_s = max_quote_age_s
        self.max_spot_age_s = max_spot_age_s
        self.rate = rate
        self.dividend_yields = dict(dividend_yields or {})
        self.page_limit = page_limit
        self._client = RESTClient(
            settings.api_key, base=(base_url or DEFAULT_BASE_URL).rstrip("/"), retries=0,
            connect_timeout=timeout_s, read_timeout=timeout_s, pagination=True,
        )
        self._pool = _GuardedPool(self._client.headers, self.budget, timeout_s,
                                  max_rate_limit_retries)
        self._client.client = self._pool

    # -- more data, for later use ----------------------------------------------------------

    def aggregates(self, symbol: str, multiplier: int, timespan: str, start: datetime,
                   end: datetime) -> list[AggregateBar]:
        """Bars of ``multiplier`` x ``timespan`` ("minute", "hour", "day") from ``start`` to
        ``end``, oldest first. Bars missing a price are dropped and counted in one log line."""
        if timespan not in _TIMESPANS:
            raise DataError(f"timespan must be one of {_TIMESPANS}, got {timespan!r}")
        require_aware(start)
        require_aware(end)
        aggs = self._call(f"{symbol} {multiplier} {timespan} bars", lambda: list(
            self._client.list_aggs(symbol, multiplier, timespan, start, end, sort="asc",
                                   limit=50000)))
        bars: list[AggregateBar] = []
        dropped = 0
        for agg in aggs:
            prices = [_positive(getattr(agg, n, None)) for n in ("open", "high", "low", "close")]
            t = getattr(agg, "timestamp", None)
            if None in prices or not isinstance(t, int):
                dropped += 1
                continue
            volume = getattr(agg, "volume", None)
            bars.append(AggregateBar(
                _EPOCH + timedelta(milliseconds=t), *prices,  # type: ignore[arg-type]
                volume=float(volume) if isinstance(volume, int | float) else 0.0,
                vwap=_positive(getattr(agg, "vwap", None)),
            ))
        if dropped:
            _log().warning("polygon bars without prices dropped", symbol=symbol,
                           dropped=dropped, kept=len(bars))
        return bars

    def option_trades(self, contract: Contract, start: datetime, end: datetime,
                      limit: int = 1000) -> list[OptionTrade]:
        """Up to ``limit`` trades of ``contract`` from ``start`` (inclusive) to ``end``
        (exclusive), oldest first. Stops paging once ``limit`` trades are in, so a busy
        contract costs one request, not hundreds."""
        require_aware(start)
        require_aware(end)

        def load() -> list[Any]:
            out = []
            for trade in self._client.list_trades(
                    f"O:{contract.occ}", timestamp_gte=start, timestamp_lt=end,
                    limit=min(limit, 50000), sort="timestamp", order="asc"):
                out.append(trade)
                if len(out) >= limit:
                    break
            return out

        trades = []
        for t in self._call(f"{contract.occ} trades", load):
            when = ns_to_datetime(getattr(t, "sip_timestamp", None))
            price = _positive(getattr(t, "price", None))
            size = getattr(t, "size", None)
            if when is None or price is None or not isinstance(size, int | float) or size <= 0:
                continue
            conditions = getattr(t, "conditions", None) or ()
            trades.append(OptionTrade(when, price, int(size), getattr(t, "exchange", None),
                                      tuple(int(c) for c in conditions)))
        return trades

    # -- internals ---------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one SDK call (all its pages) labelled ``what``; odd shapes become DataError."""
        self._pool.what = what
        try:
            return fn()
        except ThetaDeskError:
            raise
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            raise DataError(
                f"Polygon {what}: the reply has an unexpected shape ({type(exc).__name__})"
            ) from None

    def _fetch_chain(self, symbol: str, now: datetime, low: date | None,
                     high: date | None) -> OptionChain:
        params: dict[str, Any] = {"limit": self.page_limit}
        if low is not None:
            params["expiration_date.gte"] = low.isoformat()
        if high is not None:
            params["expiration_date.lte"] = high.isoformat()
        builder = ChainBuilder(
            _VENDOR, symbol, now, max_quote_age_s=self.max_quote_age_s,
            max_reject_fraction=self.max_reject_fraction, rate=self.rate,
            dividend_yield=dividend_yield_for(self.dividend_yields, symbol),
            expiry_range=(low, high),
        )
        underlying_prices: list[tuple[float, datetime | None]] = []

        def load() -> None:
            snaps: Iterable[Any] = self._client.list_snapshot_options_chain(symbol, params=params)
            for snap in snaps:
                builder.add(_raw_row(snap))
                asset = snap.underlying_asset
                price = _positive(getattr(asset, "price", None))
                if price is not None and not underlying_prices:
                    underlying_prices.append(
                        (price, ns_to_datetime(getattr(asset, "last_updated", None))))

        self._call(f"{symbol} chain", load)
        spot = None
        if underlying_prices:
            price, ts = underlying_prices[0]
            if ts is not None and (now - ts).total_seconds() <= self.max_spot_age_s:
                spot = price
        if spot is None:  # plans without the underlying's price in the snapshot
            spot = self.spot(symbol, now)
        return builder.build(spot)

    def _fetch_spot(self, symbol: str, now: datetime) -> float:
        """The close of the last 1-minute bar at or before ``now`` (no older than
        ``max_spot_age_s``)."""
        aggs = self._call(f"{symbol} spot", lambda: self._client.get_aggs(
            symbol, 1, "minute", now - timedelta(days=4), now, sort="desc", limit=1))
        for agg in aggs or ():
            t = getattr(agg, "timestamp", None)
            close = _positive(getattr(agg, "close", None))
            if not isinstance(t, int) or close is None:
                continue
            closed_at = _EPOCH + timedelta(milliseconds=t + 60_000)
            age = (now - closed_at).total_seconds()
            if age > self.max_spot_age_s:
                raise DataError(
                    f"Polygon {symbol} spot: the last 1-minute bar closed at "
                    f"{closed_at:%Y-%m-%d %H:%M} UTC, {age:.0f} s before now "
                    f"(limit {self.max_spot_age_s:.0f} s)"
                )
            return close
        raise DataError(f"Polygon has no 1-minute bar with a price for {symbol} in the 4 days "
                        f"before {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC")

    def _fetch_quote(self, contract: Contract, now: datetime) -> Quote:
        """The contract's last quote from its snapshot, checked like a chain row."""
        ticker = f"O:{contract.occ}"
        snap = self._call(f"{contract.occ} quote", lambda: self._client.get_snapshot_option(
            contract.underlying, ticker))
        if not hasattr(snap, "last_quote"):
            raise DataError(f"Polygon returned no snapshot for {ticker}")
        raw = _raw_row(snap)
        if raw.contract != contract:
            raise DataError(f"Polygon answered {raw.symbol} when asked for {ticker}")
        try:
            return to_quote(ticker, raw.bid, raw.ask, raw.bid_size, raw.ask_size, raw.quote_ts,
                            now, self.max_quote_age_s)
        except RowRejected as exc:
            raise DataError(f"Polygon quote unusable: {exc}") from None
