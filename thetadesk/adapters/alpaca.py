"""The ``Broker`` port over Alpaca's Trading API v2 (alpaca-py's ``TradingClient``).

Price signs. ThetaDesk prices an order NET PER SHARE from the trader's side: > 0 a credit
received, < 0 a debit paid. Alpaca differs per order kind, so every price crosses one function
each way (``_to_alpaca_price`` / ``_from_alpaca_price``):

* multi-leg (``order_class=mleg``): Alpaca's ``limit_price`` and ``filled_avg_price`` are > 0 for
  a debit and < 0 for a credit (the docs' request example sends ``-0.55`` for a 0.55 credit), the
  exact negation of ours;
* a single option leg: Alpaca's prices are always > 0 and ``side`` says which way, so a sell is
  +price and a buy is -price for us;
* shares: prices are > 0 per share both sides (``ShareOrder`` carries the side in its quantity).

Never twice. alpaca-py re-sends a request by itself on 429 and 504 (three times, three seconds
apart) and its ``requests`` session has no timeout. A re-sent order POST could open a position
twice, and a hung socket would stall the trading loop, so the client built here retries nothing
and every request times out after ``timeout_s``. Whatever happens to a submission then maps to
one of three outcomes (see ``_submission_error``): ``OrderRejected`` (refused, nothing to do),
``TemporaryError`` (provably nothing accepted: safe to send again later) or
``AmbiguousOrderState`` (it may have landed: the caller looks it up by client order id and never
re-sends blindly).

Fills. Alpaca's order objects carry only the cumulative ``filled_qty`` and ``filled_avg_price``,
and the trade stream's events carry the same order object. ``_FillTracker`` turns each increase
of ``filled_qty`` into one ``Fill`` whose ``exec_id`` is ``"{broker_order_id}:{cumulative qty}"``,
so REST polling and the stream derive the same execution under the same id without sharing any
vendor execution id, and the ledger's de-duplication on ``exec_id`` holds across both.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

import requests
import urllib3.exceptions

from thetadesk.adapters._alpaca_sdk import sdk_import

with sdk_import():  # see thetadesk.adapters._alpaca_sdk
    from alpaca.common.exceptions import APIError
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import (
        OrderClass,
        OrderSide,
        PositionIntent,
        QueryOrderStatus,
        TimeInForce,
    )
    from alpaca.trading.requests import (
        GetOptionContractsRequest,
        GetOrdersRequest,
        LimitOrderRequest,
        MarketOrderRequest,
        OptionLegRequest,
        ReplaceOrderRequest,
    )

from thetadesk.errors import (
    AmbiguousOrderState,
    ConfigError,
    DataError,
    OperationalError,
    OrderRejected,
    TemporaryError,
)
from thetadesk.logging import get_logger, register_secret
from thetadesk.models import (
    BrokerAccount,
    BrokerOrder,
    BrokerPosition,
    Contract,
    Fill,
    OrderRequest,
    OrderStatus,
    Settlement,
    ShareOrder,
    SharePosition,
)

__all__ = [
    "ENV_API_KEY",
    "ENV_SECRET_KEY",
    "AlpacaBroker",
    "AlpacaSettings",
    "ListedContract",
    "contracts_request",
    "map_order_status",
    "parse_contracts_page",
]

ENV_API_KEY = "ALPACA_API_KEY"
ENV_SECRET_KEY = "ALPACA_SECRET_KEY"
_REDACTED = "***"

T = TypeVar("T")


def _log():
    return get_logger("thetadesk.adapters.alpaca")


@dataclass(frozen=True, slots=True)
class AlpacaSettings:
    """Alpaca API credentials. ``repr`` never shows either value; both are registered with the
    log redactor as soon as they exist, so no log line or error text can carry them."""

    api_key: str
    secret_key: str

    def __post_init__(self) -> None:
        for name, value in ((ENV_API_KEY, self.api_key), (ENV_SECRET_KEY, self.secret_key)):
            if not isinstance(value, str) or not value or value != value.strip():
                raise ConfigError(f"{name} is empty or has surrounding whitespace")
            register_secret(value)

    def __repr__(self) -> str:
        return f"AlpacaSettings(api_key='{_REDACTED}', secret_key='{_REDACTED}')"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, key_env: str = ENV_API_KEY,
                 secret_env: str = ENV_SECRET_KEY) -> AlpacaSettings:
        """Credentials from ``ALPACA_API_KEY`` and ``ALPACA_SECRET_KEY`` (or the variables an
        account's config names instead).

        Raises ConfigError naming every missing variable (never their values). Paper or live is
        not read here: it is a configuration choice (``AlpacaBroker(paper=...)``), so a stray
        environment variable cannot switch an account to live trading.
        """
        values = {name: (env.get(name) or "").strip() for name in (key_env, secret_env)}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise ConfigError(
                "the Alpaca broker needs the environment variable(s) " + ", ".join(missing)
            )
        return cls(values[key_env], values[secret_env])


class _TimeoutSession(requests.Session):
    """A ``requests`` session that never waits forever: alpaca-py passes no timeout."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._timeout_s = timeout_s

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", self._timeout_s)
        return super().request(method, url, *args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Order statuses. ThetaDesk has seven; Alpaca has about twenty. Each choice below follows one
# rule: an order is open (NEW / PARTIALLY_FILLED) while it can still trade, and final only once
# Alpaca says it can never trade again.

_OPEN_STATUSES = frozenset({
    "new", "accepted", "pending_new", "accepted_for_bidding",
    # A cancel or replace that is requested but not confirmed can still lose the race with a
    # fill: the order stays open until the final event arrives.
    "pending_cancel", "pending_replace",
    # done_for_day: no more executions today, but Alpaca does not list it as final; a gtc order
    # trades again tomorrow and a day order is reported `expired` afterwards.
    "done_for_day",
    # stopped (an execution is guaranteed), calculated (done for the day, settlement pending),
    # suspended and held (not eligible to trade right now): none is final.
    "stopped", "calculated", "suspended", "held",
})
_PLAIN = frozenset({"new", "accepted", "pending_new", "partially_filled", "filled"})
_FINAL_STATUSES = {
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
    "replaced": OrderStatus.REPLACED,
}


def map_order_status(status: str, filled_qty: int) -> OrderStatus:
    """ThetaDesk's status for Alpaca's ``status``: an open status becomes PARTIALLY_FILLED once
    anything has filled, NEW before; ``partially_filled`` is itself; the five final statuses map
    one to one. An unknown status raises DataError rather than guessing open or final."""
    if status == "partially_filled":
        return OrderStatus.PARTIALLY_FILLED
    if status in _OPEN_STATUSES:
        return OrderStatus.PARTIALLY_FILLED if filled_qty > 0 else OrderStatus.NEW
    try:
        return _FINAL_STATUSES[status]
    except KeyError:
        raise DataError(f"unknown Alpaca order status {status!r}") from None


# ---------------------------------------------------------------------------------------------
# Parsing Alpaca's JSON. alpaca-py serializes numbers as JSON numbers while Alpaca's docs show
# strings; both arrive here, so every numeric field goes through these helpers.


def _num(raw: Mapping[str, Any], key: str, what: str) -> float:
    value = raw.get(key)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"Alpaca {what}: field {key!r} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise DataError(f"Alpaca {what}: field {key!r} is not finite: {value!r}")
    return number


def _opt_num(raw: Mapping[str, Any], key: str, what: str) -> float | None:
    return None if raw.get(key) in (None, "") else _num(raw, key, what)


def _int(raw: Mapping[str, Any], key: str, what: str) -> int:
    number = _num(raw, key, what)
    if number != int(number):
        raise DataError(f"Alpaca {what}: field {key!r} is not a whole number: {raw.get(key)!r}")
    return int(number)


def _time(raw: Mapping[str, Any], key: str, what: str) -> datetime | None:
    value = raw.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise DataError(f"Alpaca {what}: field {key!r} is not a timestamp: {value!r}")
    text = value.strip()
    # Alpaca sends nanoseconds; datetime keeps microseconds.
    head, dot, frac = text.partition(".")
    if dot:
        digits = "".join(ch for ch in frac if ch.isdigit())
        zone = frac[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"Alpaca {what}: field {key!r} is not a timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise DataError(f"Alpaca {what}: timestamp {key!r} has no time zone: {value!r}")
    return parsed.astimezone(UTC)


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DataError(f"Alpaca {what}: expected a JSON object, got {type(value).__name__}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise DataError(f"Alpaca {what}: expected a JSON list, got {type(value).__name__}")
    return value


def _kind(raw: Mapping[str, Any]) -> str:
    """``"mleg"``, ``"option"`` (one contract) or ``"equity"``: what decides the price sign."""
    if raw.get("order_class") == "mleg":
        return "mleg"
    if raw.get("asset_class") == "us_option":
        return "option"
    return "equity"


def _from_alpaca_price(raw: Mapping[str, Any], price: float) -> float:
    """Alpaca's price of this order in ThetaDesk's convention (see the module docstring)."""
    kind = _kind(raw)
    if kind == "mleg":
        return -price
    if kind == "option":
        return price if raw.get("side") == "sell" else -price
    return price


def _to_alpaca_price(kind: str, side: str | None, price: float) -> float:
    """ThetaDesk's net price as Alpaca wants it for an order of ``kind`` (and ``side``)."""
    if kind == "mleg":
        return round(-price, 4) + 0.0  # + 0.0 turns -0.0 into 0.0
    if kind == "option":
        return round(abs(price), 4)
    return round(price, 4)


def _parse_order(value: Any) -> BrokerOrder:
    raw = _obj(value, "order")
    what = f"order {raw.get('client_order_id')!r}"
    cid = raw.get("client_order_id")
    oid = raw.get("id")
    if not isinstance(cid, str) or not cid or not isinstance(oid, str) or not oid:
        raise DataError(f"Alpaca {what}: missing id or client_order_id")
    status_text = raw.get("status")
    if not isinstance(status_text, str):
        raise DataError(f"Alpaca {what}: missing status")
    filled = _int(raw, "filled_qty", what) if raw.get("filled_qty") not in (None, "") else 0
    status = map_order_status(status_text, filled)
    limit = _opt_num(raw, "limit_price", what)
    avg = _opt_num(raw, "filled_avg_price", what)
    submitted = (_time(raw, "submitted_at", what) or _time(raw, "created_at", what))
    if submitted is None:
        raise DataError(f"Alpaca {what}: no submitted_at or created_at")
    updated = _time(raw, "updated_at", what) or submitted
    order_type = raw.get("type") or raw.get("order_type") or "limit"
    return BrokerOrder(
        client_order_id=cid,
        broker_order_id=oid,
        status=status,
        quantity=_int(raw, "qty", what),
        filled_quantity=filled,
        limit_price=0.0 if limit is None else _from_alpaca_price(raw, limit),
        avg_fill_price=None if avg is None or filled == 0 else _from_alpaca_price(raw, avg),
        submitted_at=submitted,
        updated_at=updated,
        # Keep Alpaca's own word where the mapping above folds it away (done_for_day,
        # pending_cancel, ...) or where it is the reason (rejected, expired, canceled).
        reason=None if status_text in _PLAIN else f"alpaca status {status_text}",
        order_type=str(order_type),
        time_in_force=str(raw.get("time_in_force") or "day"),
        expires_at=_time(raw, "expires_at", what),
        # Alpaca links replacements by broker order id; ``AlpacaBroker.observe_order`` turns
        # them into client order ids where it knows both.
        replaces=None,
        replaced_by=None,
    )


# ---------------------------------------------------------------------------------------------
# The option contracts list (GET /v2/options/contracts): what is listed, tradable, and its open
# interest as of the last session.


@dataclass(frozen=True, slots=True)
class ListedContract:
    """One row of Alpaca's option contracts list. ``open_interest`` is as of
    ``open_interest_date`` (the previous session; OCC publishes it once a day), None when
    Alpaca has none; ``close_price`` per share, likewise."""

    contract: Contract
    tradable: bool
    status: str
    open_interest: int | None
    open_interest_date: date | None
    close_price: float | None


CONTRACTS_PAGE_LIMIT = 10_000  # Alpaca's maximum page size for the contracts list


def contracts_request(underlying: str, *, expiry_gte: date | None = None,
                      expiry_lte: date | None = None, page_token: str | None = None,
                      limit: int = CONTRACTS_PAGE_LIMIT) -> GetOptionContractsRequest:
    """The request for one page of ``underlying``'s active contracts in an expiry range."""
    return GetOptionContractsRequest(
        underlying_symbols=[underlying], expiration_date_gte=expiry_gte,
        expiration_date_lte=expiry_lte, page_token=page_token, limit=limit)


def parse_contracts_page(value: Any) -> tuple[list[ListedContract], str | None, int]:
    """One page of the contracts list: the usable rows, the next page token (None on the last
    page), and how many rows were unusable (no or a bad OCC symbol, a bad multiplier). Raises
    DataError when the page itself is not the documented shape."""
    page = _obj(value, "option contracts page")
    rows = _list(page.get("option_contracts"), "option contracts page")
    token = page.get("next_page_token")
    if token is not None and (not isinstance(token, str) or not token):
        raise DataError(f"Alpaca option contracts page: bad next_page_token {token!r}")
    out: list[ListedContract] = []
    bad = 0
    for item in rows:
        try:
            raw = _obj(item, "option contract")
            symbol = str(raw.get("symbol") or "")
            what = f"option contract {symbol!r}"
            multiplier = _int(raw, "multiplier", what) if raw.get("multiplier") else 100
            contract = Contract.from_occ(symbol, multiplier=multiplier)
            oi = _opt_num(raw, "open_interest", what)
            oi_day = raw.get("open_interest_date")
            close_day = None
            if isinstance(oi_day, str) and oi_day:
                close_day = date.fromisoformat(oi_day[:10])
            out.append(ListedContract(
                contract=contract, tradable=bool(raw.get("tradable", False)),
                status=str(raw.get("status") or ""),
                open_interest=None if oi is None or oi < 0 else int(oi),
                open_interest_date=close_day,
                close_price=_opt_num(raw, "close_price", what),
            ))
        except (DataError, ValueError):
            bad += 1
    return out, token, bad


# ---------------------------------------------------------------------------------------------
# Fills derived from cumulative order state.


@dataclass(slots=True)
class _Seen:
    client_order_id: str
    filled: int = 0
    avg: float | None = None  # ThetaDesk sign, per unit
    final: bool = False


class _FillTracker:
    """Turns successive views of orders (REST or stream, in any order) into executions.

    Thread-safe: the stream's thread and the trading loop both feed it. A view whose
    ``filled_qty`` is not above the last one seen adds nothing, so a stale REST answer after a
    stream event, or the same event twice, cannot produce a duplicate or a negative fill.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._orders: dict[str, _Seen] = {}  # broker order id -> what was seen
        self._by_cid: dict[str, str] = {}  # client order id -> broker order id
        self._fills: dict[str, list[Fill]] = {}  # client order id -> fills, oldest first
        self._unpolled: list[Fill] = []

    def observe(self, value: Any) -> BrokerOrder:
        raw = _obj(value, "order")
        order = _parse_order(raw)
        with self._lock:
            seen = self._orders.get(order.broker_order_id)
            if seen is None:
                seen = self._orders[order.broker_order_id] = _Seen(order.client_order_id)
                self._by_cid[order.client_order_id] = order.broker_order_id
            if not order.status.is_open:
                seen.final = True
            if order.filled_quantity > seen.filled:
                fill = self._derive(raw, order, seen)
                self._fills.setdefault(order.client_order_id, []).append(fill)
                self._unpolled.append(fill)
        return order

    @staticmethod
    def _derive(raw: Mapping[str, Any], order: BrokerOrder, seen: _Seen) -> Fill:
        delta = order.filled_quantity - seen.filled
        avg = order.avg_fill_price
        if avg is None:
            raise DataError(
                f"Alpaca order {order.client_order_id!r}: filled_qty {order.filled_quantity} "
                "without a filled_avg_price"
            )
        before = 0.0 if seen.avg is None else seen.avg * seen.filled
        price = round((avg * order.filled_quantity - before) / delta, 6) + 0.0
        when = (_time(raw, "filled_at", "order") if order.status is OrderStatus.FILLED
                else None) or order.updated_at
        seen.filled, seen.avg = order.filled_quantity, avg
        # Alpaca charges no commission on options or shares; regulatory fees are booked as
        # separate account activities, not per execution.
        return Fill(
            exec_id=f"{order.broker_order_id}:{order.filled_quantity}",
            client_order_id=order.client_order_id,
            quantity=delta,
            price=price,
            commission=0.0,
            time=when,
        )

    def restore(self, fills: Iterable[Fill]) -> None:
        """Take fills recorded before a restart as already seen (and already polled)."""
        with self._lock:
            for fill in sorted(fills, key=lambda f: f.exec_id):
                oid, sep, cum_text = fill.exec_id.rpartition(":")
                if not sep or not cum_text.isdigit():
                    continue  # not one of ours (another broker's exec id): nothing to restore
                cum = int(cum_text)
                seen = self._orders.setdefault(oid, _Seen(fill.client_order_id))
                self._by_cid[fill.client_order_id] = oid
                if cum > seen.filled:
                    before = 0.0 if seen.avg is None else seen.avg * seen.filled
                    seen.avg = (before + fill.price * fill.quantity) / cum
                    seen.filled = cum
                    self._fills.setdefault(fill.client_order_id, []).append(fill)

    def fills(self, client_order_id: str) -> list[Fill]:
        with self._lock:
            return list(self._fills.get(client_order_id, ()))

    def drain(self) -> list[Fill]:
        with self._lock:
            out, self._unpolled = self._unpolled, []
        return sorted(out, key=lambda f: f.time)

    def unfinished(self) -> list[str]:
        """Broker order ids seen open and not yet seen final."""
        with self._lock:
            return [oid for oid, seen in self._orders.items() if not seen.final]


# ---------------------------------------------------------------------------------------------


def _api_message(exc: APIError) -> str:
    try:
        body = json.loads(str(exc))
        message = body.get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return str(message) if message else str(exc)[:300]


_REFUSED = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.NameResolutionError,
            ConnectionRefusedError)


def _never_sent(exc: requests.exceptions.RequestException) -> bool:
    """True if the connection failed before any byte of the request left (refused, DNS, connect
    timeout): only then is a submission provably not accepted."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return False
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, _REFUSED):
            return True
        if isinstance(item, BaseException):
            stack.extend(item.args)
            stack.extend((getattr(item, "reason", None), item.__cause__, item.__context__))
    return False


class AlpacaBroker:
    """``Broker`` over Alpaca's Trading API, one account per instance.

    ``account_name`` is ThetaDesk's name for the account (used in logs). ``url_override`` points
    the client elsewhere (tests, a proxy). ``stream`` (an ``AlpacaTradeUpdates``) may be attached
    later with ``attach_stream``: while it is live, ``poll`` returns the fills it delivered
    without asking the REST API.
    """

    def __init__(
        self,
        settings: AlpacaSettings,
        *,
        paper: bool = True,
        account_name: str,
        url_override: str | None = None,
        timeout_s: float = 10.0,
        order_lookback: timedelta = timedelta(days=3),
    ) -> None:
        if not (isinstance(timeout_s, int | float) and 0 < timeout_s < math.inf):
            raise ConfigError(f"Alpaca timeout_s must be > 0 seconds, got {timeout_s!r}")
        self._account = account_name
        self._paper = paper
        self._client = TradingClient(
            settings.api_key, settings.secret_key, paper=paper, raw_data=True,
            url_override=url_override,
        )
        # alpaca-py ignores retry_attempts=0 in its constructor (it keeps the default 3), so the
        # retry budget is cut on the instance: a 429 or 504 raises at once and nothing is re-sent.
        self._client._retry = 0
        self._client._retry_codes = []
        self._client._session = _TimeoutSession(float(timeout_s))
        self._tracker = _FillTracker()
        self._links: dict[str, str] = {}  # broker order id -> client order id
        self._lookback = order_lookback
        self._stream: Any = None
        self._synced_connects = -1  # the stream connection the last REST refresh covered
        self._log = _log().bind(account=account_name, paper=paper)

    # -- wiring --------------------------------------------------------------------------------

    def attach_stream(self, stream: Any) -> None:
        """Use ``stream`` (``AlpacaTradeUpdates``: ``connects`` and ``is_live()``) as the fast
        path for fills."""
        self._stream = stream

    def observe_order(self, raw_order: Any) -> BrokerOrder:
        """Feed one Alpaca order object (from the stream) into the fill tracker."""
        order = self._tracker.observe(raw_order)
        self._links[order.broker_order_id] = order.client_order_id
        raw = _obj(raw_order, "order")
        replaces = self._links.get(str(raw.get("replaces") or ""))
        replaced_by = self._links.get(str(raw.get("replaced_by") or ""))
        if replaces or replaced_by:
            order = dataclasses.replace(order, replaces=replaces, replaced_by=replaced_by)
        return order

    def restore_fills(self, fills: Iterable[Fill]) -> None:
        """Seed the fill tracker with fills the ledger recorded before a restart.

        Without it, an order that filled 1 of 2 before the restart and fills the second unit
        after it would be seen as one execution of 2 (cumulative 0 -> 2), and the ledger would
        count 3. Call it once at start-up with the ledger's fills of open orders.
        """
        self._tracker.restore(fills)

    # -- the Broker port -----------------------------------------------------------------------

    def submit(self, order: OrderRequest | ShareOrder, now: datetime) -> BrokerOrder:
        """Send one order, once. See ``_submission_error`` for how failures are reported."""
        request = self._build(order)
        raw = self._submit_call(order.client_order_id, lambda: self._client.submit_order(request))
        result = self.observe_order(raw)
        self._log.info("order_submitted", client_order_id=order.client_order_id,
                       broker_order_id=result.broker_order_id, status=result.status.value)
        return result

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        raw = self._raw_by_client_id(client_order_id)
        return None if raw is None else self.observe_order(raw)

    def _raw_by_client_id(self, client_order_id: str) -> Mapping[str, Any] | None:
        try:
            raw = self._read("look up order", self._client.get_order_by_client_id,
                             client_order_id)
        except _NotFound:
            return None
        return _obj(raw, "order")

    def cancel(self, client_order_id: str, now: datetime) -> BrokerOrder:
        """Request a cancel and return the order's state after it: usually still open (Alpaca
        confirms ``canceled`` later, on the stream or the next poll), or final if it already
        was (Alpaca's 422 "not cancelable"). Raises OrderRejected if there is no such order."""
        current = self.get_order_by_client_id(client_order_id)
        if current is None:
            raise OrderRejected(f"cannot cancel {client_order_id!r}: Alpaca has no such order")
        if not current.status.is_open:
            return current
        try:
            self._read("cancel order", self._client.cancel_order_by_id,
                       current.broker_order_id)
        except _NotFound:
            raise OrderRejected(
                f"cannot cancel {client_order_id!r}: Alpaca has no such order"
            ) from None
        except _Unprocessable as exc:
            self._log.info("cancel_not_possible", client_order_id=client_order_id,
                           reason=str(exc))
        after = self.get_order_by_client_id(client_order_id)
        return current if after is None else after

    def replace(
        self,
        client_order_id: str,
        new_client_order_id: str,
        now: datetime,
        limit_price: float | None = None,
        quantity: int | None = None,
    ) -> BrokerOrder:
        """Replace an open order's limit price and/or quantity (PATCH /v2/orders/{id}); the new
        order carries ``new_client_order_id``. Failures map like ``submit``'s: when the outcome
        is unknown, look up ``new_client_order_id``."""
        raw_current = self._raw_by_client_id(client_order_id)
        if raw_current is None:
            raise OrderRejected(f"cannot replace {client_order_id!r}: Alpaca has no such order")
        current = self.observe_order(raw_current)
        if not current.status.is_open:
            raise OrderRejected(
                f"cannot replace {client_order_id!r}: the order is {current.status.value}"
            )
        kind = _kind(raw_current)
        fields: dict[str, Any] = {"client_order_id": new_client_order_id}
        if limit_price is not None:
            fields["limit_price"] = _to_alpaca_price(kind, None, float(limit_price))
        if quantity is not None:
            fields["qty"] = quantity
        request = ReplaceOrderRequest(**fields)
        raw = self._submit_call(
            new_client_order_id,
            lambda: self._client.replace_order_by_id(current.broker_order_id, request),
        )
        return self.observe_order(raw)

    def open_orders(self) -> list[BrokerOrder]:
        raw = self._read("list open orders", self._client.get_orders,
                         GetOrdersRequest(status=QueryOrderStatus.OPEN, nested=True, limit=500))
        return [self.observe_order(o) for o in _list(raw, "open orders")]

    def fills(self, client_order_id: str) -> list[Fill]:
        """The executions of one order seen by this process (or restored), oldest first, after
        refreshing the order from the REST API."""
        self.get_order_by_client_id(client_order_id)
        return self._tracker.fills(client_order_id)

    def poll(self, now: datetime) -> list[Fill]:
        """Executions not returned before, oldest first.

        With a live stream the fills it derived are returned without a request. Otherwise (no
        stream, or one down longer than its grace period, or one that reconnected and may have
        missed events) the open orders and every order seen open but not yet final are
        refreshed over REST.
        """
        stream = self._stream
        if stream is None:
            self._refresh(now)
        else:
            connects = stream.connects  # read first: a reconnect during the refresh re-polls
            if connects != self._synced_connects or not stream.is_live():
                self._refresh(now)
                self._synced_connects = connects
        return self._tracker.drain()

    def positions(self) -> list[BrokerPosition]:
        return [p for p in self._positions() if isinstance(p, BrokerPosition)]

    def share_positions(self) -> list[SharePosition]:
        return [p for p in self._positions() if isinstance(p, SharePosition)]

    def account(self) -> BrokerAccount:
        raw = _obj(self._read("read account", self._client.get_account), "account")
        options_bp = _opt_num(raw, "options_buying_power", "account")
        return BrokerAccount(
            cash=_num(raw, "cash", "account"),
            buying_power=(options_bp if options_bp is not None
                          else _num(raw, "buying_power", "account")),
            equity=_num(raw, "equity", "account"),
        )

    def settlements(self, since: datetime | None = None) -> list[Settlement]:
        """Expirations (OPEXP), exercises (OPEXC) and assignments (OPASN) from
        GET /v2/account/activities, which alpaca-py 0.44 has no method for.

        Alpaca books them the next morning on paper. The activity shape is not in Alpaca's
        reference for options; see ``_parse_activity`` for what is assumed.
        """
        params: dict[str, Any] = {"activity_types": "OPEXP,OPEXC,OPASN", "direction": "asc",
                                  "page_size": 100}
        if since is not None:
            params["after"] = (since - timedelta(days=1)).date().isoformat()
        out: list[Settlement] = []
        while True:
            page = _list(self._read("read account activities", self._client.get,
                                    "/account/activities", dict(params)), "activities")
            for item in page:
                settlement = _parse_activity(item)
                if since is None or settlement.time >= since:
                    out.append(settlement)
            if len(page) < params["page_size"]:
                break
            params["page_token"] = _obj(page[-1], "activity").get("id")
        return sorted(out, key=lambda s: s.time)

    def option_contracts(self, underlying: str, *, expiry_gte: date | None = None,
                         expiry_lte: date | None = None) -> list[ListedContract]:
        """Every active contract on ``underlying`` expiring in the range, from the contracts
        list (every page), with open interest. Unusable rows are left out and counted in one
        log line."""
        out: list[ListedContract] = []
        bad = 0
        token: str | None = None
        for _ in range(1000):  # a bound on a server that never stops paging
            page = self._read("list option contracts", self._client.get_option_contracts,
                              contracts_request(underlying, expiry_gte=expiry_gte,
                                                expiry_lte=expiry_lte, page_token=token))
            rows, token, rejected = parse_contracts_page(page)
            out.extend(rows)
            bad += rejected
            if token is None:
                break
        else:
            raise DataError(f"Alpaca option contracts for {underlying}: too many pages")
        if bad:
            self._log.warning("option_contracts_rejected", underlying=underlying, rejected=bad,
                              kept=len(out))
        return out

    # -- kill switch ---------------------------------------------------------------------------

    def cancel_all(self) -> dict[str, int]:
        """DELETE /v2/orders: cancel every open order. Returns broker order id -> HTTP status
        of each cancel (Alpaca answers 207 with one status per order)."""
        raw = self._read("cancel all orders", self._client.cancel_orders) or []
        return {str(_obj(r, "cancel").get("id")): int(_obj(r, "cancel").get("status", 0))
                for r in _list(raw, "cancel-all answer")}

    def close_all_positions(self, cancel_orders: bool = True) -> dict[str, int]:
        """DELETE /v2/positions: liquidate everything (after canceling the open orders when
        ``cancel_orders``). Returns symbol -> HTTP status of each closing order."""
        raw = self._read("close all positions", self._client.close_all_positions,
                         cancel_orders) or []
        return {str(_obj(r, "close").get("symbol")): int(_obj(r, "close").get("status", 0))
                for r in _list(raw, "close-all answer")}

    # -- internals -----------------------------------------------------------------------------

    def _build(self, order: OrderRequest | ShareOrder) -> LimitOrderRequest | MarketOrderRequest:
        common: dict[str, Any] = {"client_order_id": order.client_order_id,
                                  "time_in_force": TimeInForce(order.time_in_force)}
        if isinstance(order, ShareOrder):
            common.update(symbol=order.symbol, qty=abs(order.quantity),
                          side=OrderSide.BUY if order.quantity > 0 else OrderSide.SELL)
            if order.order_type == "market":
                return MarketOrderRequest(**common)
            return LimitOrderRequest(limit_price=_to_alpaca_price("equity", None,
                                                                  float(order.limit_price or 0)),
                                     **common)
        if not isinstance(order, OrderRequest):
            raise DataError(f"submit needs an OrderRequest or a ShareOrder, got {order!r}")
        if len(order.legs) == 1:
            leg = order.legs[0]
            if abs(leg.ratio) != 1:
                raise DataError(f"a single-leg order needs ratio +1 or -1, got {leg.ratio}")
            side = OrderSide.BUY if leg.is_long else OrderSide.SELL
            common.update(symbol=leg.contract.occ, qty=order.quantity, side=side,
                          position_intent=_intent(leg.is_long, order.opening))
            if order.order_type == "market":
                return MarketOrderRequest(**common)
            # One long leg at a credit (or a short one at a debit) is not a price Alpaca can
            # take: its single-leg prices are > 0 and the side carries the direction.
            if (order.limit_price > 0) == leg.is_long and order.limit_price != 0:
                raise DataError(
                    f"order {order.client_order_id!r}: a {'buy' if leg.is_long else 'sell'} "
                    f"of one contract cannot be limited at net {order.limit_price}"
                )
            return LimitOrderRequest(
                limit_price=_to_alpaca_price("option", side.value, order.limit_price), **common)
        if len(order.legs) > 4:
            raise DataError(f"Alpaca takes at most 4 legs per order, got {len(order.legs)}")
        legs = [
            OptionLegRequest(
                symbol=leg.contract.occ, ratio_qty=abs(leg.ratio),
                side=OrderSide.BUY if leg.is_long else OrderSide.SELL,
                position_intent=_intent(leg.is_long, order.opening),
            )
            for leg in order.legs
        ]
        common.update(qty=order.quantity, order_class=OrderClass.MLEG, legs=legs)
        if order.order_type == "market":
            return MarketOrderRequest(**common)
        return LimitOrderRequest(limit_price=_to_alpaca_price("mleg", None, order.limit_price),
                                 **common)

    def _submit_call(self, client_order_id: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except APIError as exc:
            raise self._submission_error(client_order_id, exc) from None
        except requests.exceptions.JSONDecodeError:
            # A 2xx whose body cannot be read: the order was very likely accepted.
            raise AmbiguousOrderState(
                f"order {client_order_id!r}: Alpaca answered with a body that is not JSON; "
                "look the order up by client order id"
            ) from None
        except requests.exceptions.RequestException as exc:
            if _never_sent(exc):
                raise TemporaryError(
                    f"order {client_order_id!r} not sent: cannot connect to Alpaca "
                    f"({type(exc).__name__})"
                ) from None
            raise AmbiguousOrderState(
                f"order {client_order_id!r}: {type(exc).__name__} after the request was sent; "
                "look the order up by client order id"
            ) from None

    @staticmethod
    def _submission_error(client_order_id: str, exc: APIError) -> Exception:
        """429 -> TemporaryError: Alpaca accepted nothing. 5xx (504 included: the gateway gave up
        waiting, the order may still have landed) and 422 "client_order_id must be unique" (an
        earlier attempt did land) -> AmbiguousOrderState. Any other 4xx -> OrderRejected with
        Alpaca's message (403: insufficient buying power or quantity)."""
        status = exc.status_code or 0
        message = _api_message(exc)
        if status == 429:
            return TemporaryError(
                f"order {client_order_id!r} not accepted: Alpaca rate limit (429): {message}"
            )
        if status >= 500:
            return AmbiguousOrderState(
                f"order {client_order_id!r}: Alpaca answered {status} ({message}); "
                "look the order up by client order id"
            )
        if status == 422 and "client_order_id must be unique" in message:
            return AmbiguousOrderState(
                f"order {client_order_id!r}: Alpaca already has an order with this client "
                "order id; look it up"
            )
        return OrderRejected(f"Alpaca rejected order {client_order_id!r} ({status}): {message}")

    def _read(self, what: str, call: Callable[..., T], *args: Any) -> T:
        """A call that changes nothing that a retry could double: failures are TemporaryError
        (network, 429, 5xx), DataError (unreadable answer), OperationalError (401/403: the keys
        or the account need a person), _NotFound (404), _Unprocessable (422)."""
        try:
            return call(*args)
        except APIError as exc:
            status = exc.status_code or 0
            message = _api_message(exc)
            if status == 404:
                raise _NotFound(message) from None
            if status == 422:
                raise _Unprocessable(message) from None
            if status == 429 or status >= 500:
                raise TemporaryError(f"Alpaca {what}: {status} {message}") from None
            if status in (401, 403):
                raise OperationalError(f"Alpaca {what}: {status} {message}") from None
            raise DataError(f"Alpaca {what}: {status} {message}") from None
        except requests.exceptions.JSONDecodeError:
            raise DataError(f"Alpaca {what}: the answer is not JSON") from None
        except requests.exceptions.RequestException as exc:
            raise TemporaryError(f"Alpaca {what}: {type(exc).__name__}") from None

    def _refresh(self, now: datetime) -> None:
        open_raw = _list(self._read(
            "list open orders", self._client.get_orders,
            GetOrdersRequest(status=QueryOrderStatus.OPEN, nested=True, limit=500)),
            "open orders")
        seen_ids = set()
        for raw in open_raw:
            seen_ids.add(self.observe_order(raw).broker_order_id)
        missing = [oid for oid in self._tracker.unfinished() if oid not in seen_ids]
        if not missing:
            return
        # Orders this process saw open that are no longer open: fetch the recent ones (any
        # status) in one request rather than one request each.
        after = now - self._lookback
        closed = _list(self._read(
            "list recent orders", self._client.get_orders,
            GetOrdersRequest(status=QueryOrderStatus.ALL, nested=True, limit=500, after=after)),
            "recent orders")
        for raw in closed:
            order = self.observe_order(raw)
            if order.broker_order_id in missing:
                missing.remove(order.broker_order_id)
        for oid in missing:  # older than the window (or beyond 500): one request each
            try:
                raw = self._read("look up order", self._client.get_order_by_id, oid)
            except _NotFound:
                continue
            self.observe_order(raw)

    def _positions(self) -> list[BrokerPosition | SharePosition]:
        raw = _list(self._read("list positions", self._client.get_all_positions), "positions")
        out: list[BrokerPosition | SharePosition] = []
        for item in raw:
            pos = _obj(item, "position")
            symbol = pos.get("symbol")
            what = f"position {symbol!r}"
            qty = _int(pos, "qty", what)
            # Short positions carry a negative qty and side "short"; trust either.
            if pos.get("side") == "short" and qty > 0:
                qty = -qty
            avg = _num(pos, "avg_entry_price", what)
            if pos.get("asset_class") == "us_option":
                out.append(BrokerPosition(Contract.from_occ(str(symbol)), qty, avg))
            else:
                out.append(SharePosition(str(symbol), qty, avg))
        return out


class _NotFound(Exception):
    pass


class _Unprocessable(Exception):
    pass


def _intent(is_long: bool, opening: bool) -> PositionIntent:
    if opening:
        return PositionIntent.BUY_TO_OPEN if is_long else PositionIntent.SELL_TO_OPEN
    return PositionIntent.BUY_TO_CLOSE if is_long else PositionIntent.SELL_TO_CLOSE


# UNVERIFIED: Alpaca documents non-trade activities generically (id "<time>::<uuid>",
# activity_type, date, net_amount, symbol, qty, per_share_amount, description, status); the
# option kinds OPEXP/OPEXC/OPASN are listed but no example is published. What is assumed:
# ``symbol`` is the OCC symbol, ``qty`` counts contracts (sign not relied on), ``net_amount`` is
# the cash moved, and the date is the session it happened in (stamped at 16:00 New York, 20:00
# or 21:00 UTC; 20:00 UTC is used, the earlier, so a ``since`` at the close includes it).
_ACTIVITY_KIND = {"OPEXP": "expired", "OPEXC": "exercised", "OPASN": "assigned"}


def _parse_activity(value: Any) -> Settlement:
    raw = _obj(value, "activity")
    kind = _ACTIVITY_KIND.get(str(raw.get("activity_type")))
    activity_id = raw.get("id")
    if kind is None or not isinstance(activity_id, str) or not activity_id:
        raise DataError(f"Alpaca activity {raw.get('id')!r}: not an option settlement: {raw!r}")
    what = f"activity {activity_id!r}"
    contract = Contract.from_occ(str(raw.get("symbol")))
    count = abs(_int(raw, "qty", what))
    when = _time(raw, "transaction_time", what)
    if when is None:
        try:
            day = date.fromisoformat(str(raw.get("date"))[:10])
        except ValueError:
            raise DataError(f"Alpaca {what}: no usable date: {raw.get('date')!r}") from None
        when = datetime.combine(day, time(20, 0), UTC)
    if kind == "expired":
        # Held long or short is not in the activity; a worthless expiry moves nothing, so the
        # sign only matters to match a position: keep Alpaca's sign when it gives one.
        quantity = _int(raw, "qty", what) or count
        shares = 0
    elif kind == "exercised":  # only long options are exercised
        quantity = count
        shares = count * contract.multiplier * (1 if contract.is_call else -1)
    else:  # assigned: only short options are assigned
        quantity = -count
        shares = count * contract.multiplier * (-1 if contract.is_call else 1)
    amount = _opt_num(raw, "net_amount", what)
    return Settlement(
        contract=contract,
        quantity=quantity,
        # Alpaca's activity does not carry the underlying's price; 0.0 says "not reported".
        underlying_price=0.0,
        intrinsic=0.0,
        amount=0.0 if amount is None else amount,
        time=when,
        kind=kind,
        shares=shares,
        activity_id=activity_id,
    )
