"""Alpaca market data behind the ``MarketData`` port.

* ``AlpacaDataSettings.from_env(env)`` reads ``ALPACA_API_KEY`` and ``ALPACA_SECRET_KEY``
  (``ConfigError`` naming each missing one) and registers both with ``register_secret``. They
  travel only in the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers alpaca-py sets.
* ``AlpacaMarketData(settings, ...)`` answers ``chain`` from alpaca-py's
  ``OptionHistoricalDataClient.get_option_chain`` (``/v1beta1/options/snapshots/{underlying}``,
  every page: latest quote, Greeks and implied volatility per contract), ``quote`` from the same
  endpoint narrowed to one expiry, right and strike, and ``spot`` from
  ``StockHistoricalDataClient.get_stock_latest_trade``.

Open interest comes from the trading API's option contracts list (``/v2/options/contracts``,
``TradingClient.get_option_contracts``): the snapshots do not carry it. OCC publishes open
interest once a day, so the list is fetched once per chain window and kept for
``open_interest_ttl_s`` (4 hours by default; 10,000 contracts a page, so a window is usually one
request). The trading API sits on another host whose keys are paper or live (``paper``). If the
list cannot be read the chain is still served, with open interest None and one warning: open
interest informs a strategy, it never prices anything.

Why the SDK's HTTP session is replaced: alpaca-py retries 429 (and 504) three times with a plain
``time.sleep(3)`` outside any budget, sends requests without a timeout, and raises one
``APIError`` for every status. ``_GuardedSession`` stands in for the clients' ``requests``
session (a private attribute, ``_session``: alpaca-py 0.44 offers no public hook, and
``retry_attempts=0`` is ignored by its constructor). Every request, every page included, first
spends one unit of the ``RequestBudget``, runs with a timeout, and has its reply mapped the way
the Polygon adapter maps its own: 429 -> back off through the budget and retry, then
``TemporaryError``; 5xx and network failures -> ``TemporaryError``; 401/403 -> ``ConfigError``
naming the key variables; other non-2xx or malformed JSON -> ``DataError``. Rows are checked by
``thetadesk.adapters._chain_rows`` with the same rules as Polygon's.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import requests

from thetadesk.adapters._alpaca_sdk import sdk_import

with sdk_import():  # see thetadesk.adapters._alpaca_sdk
    from alpaca.data.enums import DataFeed, OptionsFeed
    from alpaca.data.historical.option import OptionHistoricalDataClient
    from alpaca.data.historical.stock import StockHistoricalDataClient
    from alpaca.data.requests import OptionChainRequest, StockLatestTradeRequest
    from alpaca.trading.client import TradingClient

from thetadesk.adapters._chain_rows import (
    CachedMarketData,
    ChainBuilder,
    RawRow,
    RowRejected,
    dividend_yield_for,
    to_quote,
)
from thetadesk.adapters.alpaca import contracts_request, parse_contracts_page
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

__all__ = ["ENV_API_KEY", "ENV_SECRET_KEY", "AlpacaDataSettings", "AlpacaMarketData"]

ENV_API_KEY = "ALPACA_API_KEY"
ENV_SECRET_KEY = "ALPACA_SECRET_KEY"
_VENDOR = "Alpaca"


def _log():
    return get_logger("thetadesk.adapters.alpaca_data")


@dataclass(frozen=True, slots=True)
class AlpacaDataSettings:
    api_key: str = field(repr=False)
    secret_key: str = field(repr=False)

    def __post_init__(self) -> None:
        for name, value in ((ENV_API_KEY, self.api_key), (ENV_SECRET_KEY, self.secret_key)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{name} is empty: set it to your Alpaca key")
            if value != value.strip():
                raise ConfigError(f"{name} has leading or trailing whitespace")
        register_secret(self.api_key)
        register_secret(self.secret_key)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AlpacaDataSettings:
        """Settings from the environment; ``ConfigError`` naming every missing variable."""
        missing = [name for name in (ENV_API_KEY, ENV_SECRET_KEY) if not env.get(name)]
        if missing:
            raise ConfigError(
                f"environment variable(s) {', '.join(missing)} not set: Alpaca market data "
                "needs an API key and secret (https://app.alpaca.markets, API keys)"
            )
        return cls(api_key=env[ENV_API_KEY], secret_key=env[ENV_SECRET_KEY])


class _GuardedSession(requests.Session):
    """A ``requests`` session with a budget, a timeout and ThetaDesk's error mapping."""

    def __init__(self, budget: RequestBudget, timeout_s: float,
                 max_rate_limit_retries: int) -> None:
        super().__init__()
        self._budget = budget
        self._timeout = timeout_s
        self._max_429 = max_rate_limit_retries
        self.what = "request"

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        what = self.what
        kwargs.setdefault("timeout", self._timeout)

        def send() -> requests.Response:
            try:
                return super(_GuardedSession, self).request(method, url, *args, **kwargs)
            except requests.RequestException as exc:
                raise TemporaryError(
                    f"Alpaca {what}: network error ({type(exc).__name__}); try again"
                ) from None

        return send_within_budget(
            self._budget, "Alpaca", what, send,
            lambda r: VendorReply(r.status_code, r.headers.get("Retry-After"), r.content),
            max_rate_limit_retries=self._max_429,
            refused_hint=f"check {ENV_API_KEY}/{ENV_SECRET_KEY} and that your data plan "
                         "includes this feed")


def _timestamp(value: Any) -> datetime | None:
    """Alpaca's RFC 3339 timestamps (nanosecond digits are cut to microseconds)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def _raw_row(symbol: str, snap: Any) -> RawRow:
    snap = snap if isinstance(snap, dict) else {}
    quote = snap.get("latestQuote") if isinstance(snap.get("latestQuote"), dict) else {}
    greeks = snap.get("greeks") if isinstance(snap.get("greeks"), dict) else {}
    bar = snap.get("dailyBar") if isinstance(snap.get("dailyBar"), dict) else {}
    try:
        contract: Contract | None = Contract.from_occ(symbol)
    except DataError:
        contract = None
    return RawRow(
        symbol=symbol, contract=contract,
        bid=quote.get("bp"), ask=quote.get("ap"),
        bid_size=quote.get("bs"), ask_size=quote.get("as"),
        quote_ts=_timestamp(quote.get("t")),
        delta=greeks.get("delta"), iv=snap.get("impliedVolatility"),
        open_interest=None, volume=bar.get("v"),
    )


def _with_open_interest(raw: RawRow, open_interest: Mapping[str, int | None]) -> RawRow:
    oi = open_interest.get(raw.symbol)
    return raw if oi is None else dataclasses.replace(raw, open_interest=oi)


class AlpacaMarketData(CachedMarketData):
    """``MarketData`` from Alpaca's market-data API.

    ``url_override`` points both alpaca-py clients at another base URL (a local server in
    tests); ``option_feed`` is "opra" or "indicative" (None: Alpaca picks by subscription),
    ``stock_feed`` "iex" or "sip" (None: Alpaca's default). ``requests_per_minute`` is the
    plan's market-data rate (200 on the basic plan). The other parameters mean what they mean
    for ``PolygonMarketData``.
    """

    def __init__(
        self,
        settings: AlpacaDataSettings,
        *,
        url_override: str | None = None,
        option_feed: str | None = None,
        stock_feed: str | None = None,
        requests_per_minute: int = 200,
        cache_ttl_s: float = 30.0,
        max_reject_fraction: float = 0.2,
        max_quote_age_s: float = 1200.0,
        max_spot_age_s: float = 1200.0,
        rate: float = 0.0,
        dividend_yields: Mapping[str, float] | None = None,
        timeout_s: float = 10.0,
        max_rate_limit_retries: int = 3,
        paper: bool = True,
        trading_url_override: str | None = None,
        open_interest: bool = True,
        open_interest_ttl_s: float = 4 * 3600.0,
        trading_requests_per_minute: int = 200,
        shared_budget_path: Path | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (0.0 <= max_reject_fraction <= 1.0):
            raise ConfigError(
                f"max_reject_fraction must be in [0, 1], got {max_reject_fraction!r}")
        self.budget = RequestBudget(
            requests_per_minute, vendor="Alpaca market data",
            setting="market.alpaca.requests_per_minute", clock=clock, sleep=sleep,
            shared_path=shared_budget_path)
        self.trading_budget = RequestBudget(
            trading_requests_per_minute, vendor="Alpaca trading API (option contracts)",
            setting="the Alpaca trading API's 200 requests/minute", clock=clock, sleep=sleep,
            shared_path=shared_budget_path)
        if clock is None:
            clock = time.monotonic
        self._cache = TTLCache(cache_ttl_s, clock=clock)
        self._oi_cache = TTLCache(open_interest_ttl_s, clock=clock)
        self.open_interest = open_interest
        self.max_reject_fraction = max_reject_fraction
        self.max_quote_age_s = max_quote_age_s
        self.max_spot_age_s = max_spot_age_s
        self.rate = rate
        self.dividend_yields = dict(dividend_yields or {})
        try:
            self._option_feed = OptionsFeed(option_feed) if option_feed else None
            self._stock_feed = DataFeed(stock_feed) if stock_feed else None
        except ValueError as exc:
            raise ConfigError(f"unknown Alpaca feed: {exc}") from None
        base = url_override.rstrip("/") if url_override else None
        self._session = _GuardedSession(self.budget, timeout_s, max_rate_limit_retries)
        self._options = OptionHistoricalDataClient(
            settings.api_key, settings.secret_key, raw_data=True, url_override=base)
        self._stocks = StockHistoricalDataClient(
            settings.api_key, settings.secret_key, raw_data=True, url_override=base)
        for client in (self._options, self._stocks):
            client._session = self._session  # see the module docstring
        self._trading_session = _GuardedSession(self.trading_budget, timeout_s,
                                                max_rate_limit_retries)
        self._trading = TradingClient(
            settings.api_key, settings.secret_key, paper=paper, raw_data=True,
            url_override=trading_url_override.rstrip("/") if trading_url_override else None)
        self._trading._session = self._trading_session
        self._trading._retry = 0

    # -- internals ---------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        self._session.what = what
        try:
            return fn()
        except ThetaDeskError:
            raise
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            raise DataError(
                f"Alpaca {what}: the reply has an unexpected shape ({type(exc).__name__})"
            ) from None

    def _snapshots(self, what: str, request: OptionChainRequest) -> dict[str, Any]:
        snaps = self._call(what, lambda: self._options.get_option_chain(request))
        if not isinstance(snaps, dict):
            raise DataError(f"Alpaca {what}: expected snapshots by symbol, got "
                            f"{type(snaps).__name__}")
        return snaps

    def _fetch_chain(self, symbol: str, now: datetime, low: date | None,
                     high: date | None) -> OptionChain:
        request = OptionChainRequest(underlying_symbol=symbol, feed=self._option_feed,
                                     expiration_date_gte=low, expiration_date_lte=high)
        snaps = self._snapshots(f"{symbol} chain", request)
        builder = ChainBuilder(
            _VENDOR, symbol, now, max_quote_age_s=self.max_quote_age_s,
            max_reject_fraction=self.max_reject_fraction, rate=self.rate,
            dividend_yield=dividend_yield_for(self.dividend_yields, symbol),
            expiry_range=(low, high),
        )
        open_interest = self._open_interest(symbol, low, high)
        for occ, snap in snaps.items():
            builder.add(_with_open_interest(_raw_row(occ, snap), open_interest))
        # The snapshots carry no underlying price: one more (budgeted, cached) request.
        return builder.build(self.spot(symbol, now))

    def _open_interest(self, symbol: str, low: date | None, high: date | None
                       ) -> Mapping[str, int | None]:
        """OCC symbol -> open interest from the contracts list (cached for hours); empty when
        it is switched off or cannot be read (one warning, the chain is still served)."""
        if not self.open_interest:
            return {}
        try:
            return self._oi_cache.get_or_load(
                ("open_interest", symbol, low, high),
                lambda: self._fetch_open_interest(symbol, low, high))
        except (TemporaryError, DataError, ConfigError) as exc:
            _log().warning(f"Alpaca open interest for {symbol} unavailable; chain served "
                           "without it", underlying=symbol, reason=str(exc))
            return {}

    def _fetch_open_interest(self, symbol: str, low: date | None, high: date | None
                             ) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        token: str | None = None
        what = f"{symbol} option contracts"
        self._trading_session.what = what
        for _ in range(1000):
            request = contracts_request(symbol, expiry_gte=low, expiry_lte=high,
                                        page_token=token)
            page = self._call(what, lambda r=request: self._trading.get_option_contracts(r))
            rows, token, _bad = parse_contracts_page(page)
            out.update((row.contract.occ, row.open_interest) for row in rows)
            if token is None:
                return out
        raise DataError(f"Alpaca {what}: too many pages")

    def _fetch_spot(self, symbol: str, now: datetime) -> float:
        """The latest trade's price, no older than ``max_spot_age_s`` against ``now``."""
        request = StockLatestTradeRequest(symbol_or_symbols=symbol, feed=self._stock_feed)
        trades = self._call(f"{symbol} spot",
                            lambda: self._stocks.get_stock_latest_trade(request))
        trade = trades.get(symbol) if isinstance(trades, dict) else None
        if not isinstance(trade, dict):
            raise DataError(f"Alpaca returned no latest trade for {symbol}")
        price, ts = trade.get("p"), _timestamp(trade.get("t"))
        if isinstance(price, bool) or not isinstance(price, int | float) or not (
                math.isfinite(price) and price > 0):
            raise DataError(f"Alpaca latest {symbol} trade has no usable price: {price!r}")
        if ts is None:
            raise DataError(f"Alpaca latest {symbol} trade has no timestamp")
        age = (now - ts).total_seconds()
        if age > self.max_spot_age_s:
            raise DataError(
                f"Alpaca latest {symbol} trade at {ts:%Y-%m-%d %H:%M:%S} UTC is {age:.0f} s "
                f"old (limit {self.max_spot_age_s:.0f} s)")
        return float(price)

    def _fetch_quote(self, contract: Contract, now: datetime) -> Quote:
        """The contract's latest quote (the chain endpoint narrowed to that one contract)."""
        request = OptionChainRequest(
            underlying_symbol=contract.underlying, feed=self._option_feed,
            expiration_date=contract.expiry,
            type="call" if contract.is_call else "put",
            strike_price_gte=contract.strike, strike_price_lte=contract.strike,
        )
        snaps = self._snapshots(f"{contract.occ} quote", request)
        if contract.occ not in snaps:
            raise DataError(f"Alpaca returned no snapshot for {contract.occ}")
        raw = _raw_row(contract.occ, snaps[contract.occ])
        try:
            return to_quote(contract.occ, raw.bid, raw.ask, raw.bid_size, raw.ask_size,
                            raw.quote_ts, now, self.max_quote_age_s)
        except RowRejected as exc:
            raise DataError(f"Alpaca quote unusable: {exc}") from None
