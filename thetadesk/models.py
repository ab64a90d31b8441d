"""Frozen value types shared by every part of ThetaDesk.

Prices are per share in the underlying's currency (as exchanges quote options); a contract's
``multiplier`` (100 for US equity and ETF options) turns them into dollars per contract.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from enum import StrEnum
from numbers import Real

from thetadesk.errors import DataError

__all__ = [
    "BrokerAccount",
    "BrokerOrder",
    "BrokerPosition",
    "Contract",
    "Fill",
    "Greeks",
    "Leg",
    "OrderRequest",
    "OrderStatus",
    "Quote",
    "Right",
    "Settlement",
    "ShareOrder",
    "SharePosition",
]


class Right(StrEnum):
    CALL = "C"
    PUT = "P"


# OCC option symbol: root (1-6 characters, space-padded to 6 in the 21-character form), expiry
# YYMMDD, C or P, strike in thousandths of a dollar as 8 digits.
_OCC = re.compile(r"^(?P<root>[A-Z0-9]{1,6}) *(?P<date>\d{6})(?P<right>[CP])(?P<strike>\d{8})$")
_ROOT = re.compile(r"^[A-Z0-9]{1,6}$")


@dataclass(frozen=True, slots=True)
class Contract:
    """A listed option contract. ``strike`` is per share; OCC symbols carry it to $0.001."""

    underlying: str
    expiry: date
    right: Right
    strike: float
    multiplier: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.underlying, str) or not _ROOT.match(self.underlying):
            raise DataError(
                f"option root {self.underlying!r} must be 1-6 upper-case letters or digits"
            )
        if not isinstance(self.expiry, date) or isinstance(self.expiry, datetime):
            raise DataError(f"option expiry must be a date, got {self.expiry!r}")
        try:
            object.__setattr__(self, "right", Right(self.right))
        except ValueError:
            raise DataError(f"option right must be 'C' or 'P', got {self.right!r}") from None
        strike = float(self.strike)
        milli = round(strike * 1000.0) if math.isfinite(strike) else -1
        if not (0 < milli < 100_000_000) or abs(strike * 1000.0 - milli) > 1e-6:
            raise DataError(
                f"option strike {self.strike!r} must be > 0, below 100000 and a multiple of 0.001"
            )
        object.__setattr__(self, "strike", milli / 1000.0)
        if not isinstance(self.multiplier, int) or self.multiplier <= 0:
            raise DataError(
                f"contract multiplier must be a positive integer, got {self.multiplier!r}"
            )

    @property
    def is_call(self) -> bool:
        return self.right is Right.CALL

    @classmethod
    def from_occ(cls, symbol: str, multiplier: int = 100) -> Contract:
        """Parse an OCC symbol, compact (``SPY251219P00450000``) or padded (``SPY   251219...``)."""
        if not isinstance(symbol, str):
            raise DataError(f"OCC symbol must be a string, got {type(symbol).__name__}")
        if cls is Contract and type(multiplier) is int:
            return _parsed_occ(symbol, multiplier)  # the ledger and brokers parse the same few
        return cls._parse_occ(symbol, multiplier)

    @classmethod
    def _parse_occ(cls, symbol: str, multiplier: int) -> Contract:
        match = _OCC.match(symbol.strip())
        if match is None or (" " in symbol.strip() and len(symbol.strip()) != 21):
            raise DataError(
                f"malformed OCC option symbol {symbol!r}: expected ROOT(1-6) YYMMDD C|P "
                "and an 8-digit strike in thousandths, e.g. SPY251219P00450000"
            )
        raw = match["date"]
        try:
            expiry = date(2000 + int(raw[:2]), int(raw[2:4]), int(raw[4:]))
        except ValueError:
            raise DataError(f"OCC option symbol {symbol!r} has an invalid date {raw!r}") from None
        milli = int(match["strike"])
        if milli == 0:
            raise DataError(f"OCC option symbol {symbol!r} has a zero strike")
        return cls(match["root"], expiry, Right(match["right"]), milli / 1000.0, multiplier)

    @property
    def occ(self) -> str:
        """The compact OCC symbol, as Alpaca uses it: ``SPY251219P00450000``."""
        return self.underlying + self._occ_tail()

    @property
    def occ_padded(self) -> str:
        """The 21-character OCC symbol with the root space-padded to six characters."""
        return self.underlying.ljust(6) + self._occ_tail()

    def _occ_tail(self) -> str:
        return f"{self.expiry:%y%m%d}{self.right.value}{round(self.strike * 1000):08d}"

    def __str__(self) -> str:
        return self.occ



@functools.lru_cache(maxsize=4096)
def _parsed_occ(symbol: str, multiplier: int) -> Contract:
    """``Contract.from_occ`` remembered: a Contract is immutable, and a parse that fails raises
    (and is not remembered)."""
    return Contract._parse_occ(symbol, multiplier)

@dataclass(frozen=True, slots=True)
class Quote:
    """A two-sided quote, per share. Rejects NaN, negative, and crossed (bid > ask) quotes."""

    bid: float
    ask: float
    bid_size: int = 0
    ask_size: int = 0
    ts: datetime | None = None

    def __post_init__(self) -> None:
        bid, ask = self.bid, self.ask
        if type(bid) is not float or type(ask) is not float:  # the common case skips this
            for name in ("bid", "ask"):
                value = getattr(self, name)
                if not isinstance(value, Real) or isinstance(value, bool):
                    raise DataError(f"quote {name} must be a finite number >= 0, got {value!r}")
                object.__setattr__(self, name, float(value))
            bid, ask = self.bid, self.ask
        if not (0.0 <= bid <= ask < math.inf):  # NaN fails every comparison
            for name, value in (("bid", bid), ("ask", ask)):
                if not (0.0 <= value < math.inf):
                    raise DataError(f"quote {name} must be a finite number >= 0, got {value!r}")
            raise DataError(f"crossed quote: bid {bid} > ask {ask}")
        if not (type(self.bid_size) is int and type(self.ask_size) is int
                and self.bid_size >= 0 and self.ask_size >= 0):
            for name in ("bid_size", "ask_size"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise DataError(f"quote {name} must be an integer >= 0, got {value!r}")
                object.__setattr__(self, name, int(value))
        ts = self.ts
        if ts is not None and ts.tzinfo is not UTC and (ts.tzinfo is None
                                                         or ts.utcoffset() is None):
            raise DataError(f"quote timestamp must be timezone-aware, got {ts!r}")

    @property
    def mid(self) -> float:
        return 0.5 * (self.bid + self.ask)

    @property
    def spread(self) -> float:
        return self.ask - self.bid


@dataclass(frozen=True, slots=True)
class Leg:
    """One leg of a multi-leg position: ``ratio`` contracts per unit, > 0 long, < 0 short."""

    contract: Contract
    ratio: int

    def __post_init__(self) -> None:
        if not isinstance(self.ratio, int) or self.ratio == 0:
            raise DataError(f"leg ratio must be a non-zero integer, got {self.ratio!r}")

    @property
    def is_long(self) -> bool:
        return self.ratio > 0


@dataclass(frozen=True, slots=True)
class Greeks:
    """Sensitivities that add and scale, so a portfolio's Greeks are ``sum(qty * g for ...)``.

    Units follow ``thetadesk.pricing``: delta per 1.00 of spot, gamma per 1.00 of spot squared,
    vega per 1.00 of volatility, theta per year of calendar time, rho per 1.00 of rate. Per share
    as priced; multiply by ``contract.multiplier * quantity`` for a position.
    """

    delta: float = 0.0
    gamma: float = 0.0
    vega: float = 0.0
    theta: float = 0.0
    rho: float = 0.0

    # Make numpy scalars defer to __rmul__ instead of building object arrays.
    __array_ufunc__ = None

    @classmethod
    def zero(cls) -> Greeks:
        return cls()

    def _values(self) -> tuple[float, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def __add__(self, other: object) -> Greeks:
        if isinstance(other, Greeks):
            return Greeks(*(a + b for a, b in zip(self._values(), other._values(), strict=True)))
        if isinstance(other, Real) and other == 0:  # lets sum() start from 0
            return self
        return NotImplemented

    __radd__ = __add__

    def __neg__(self) -> Greeks:
        return Greeks(*(-a for a in self._values()))

    def __sub__(self, other: object) -> Greeks:
        if isinstance(other, Greeks):
            return self + (-other)
        return NotImplemented

    def __mul__(self, k: object) -> Greeks:
        if isinstance(k, Real) and not isinstance(k, bool):
            return Greeks(*(a * float(k) for a in self._values()))
        return NotImplemented

    __rmul__ = __mul__


# ---------------------------------------------------------------------------------------------
# Orders, fills and positions, as the Broker port speaks them. Prices of multi-leg orders are
# NET PER SHARE for one unit of the combination, signed from the trader's side: > 0 a credit
# received, < 0 a debit paid (the convention of `Spread.net_premium`). Quantities are units of
# the combination (spreads), > 0.


class OrderStatus(StrEnum):
    NEW = "new"  # accepted, resting
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"  # a day order still open at its session's close
    REPLACED = "replaced"  # superseded by the order named in ``BrokerOrder.replaced_by``

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A limit order for ``quantity`` units of the combination ``legs`` at ``limit_price`` net.

    ``opening`` is True to open a position (legs as given), False to close one (the legs are
    the position's legs with their ratios reversed). ``client_order_id`` is deterministic
    (derived from the intent) so that an ambiguous submission can be looked up, never re-sent.
    """

    client_order_id: str
    account: str
    legs: tuple[Leg, ...]
    quantity: int
    limit_price: float
    opening: bool = True
    # "limit", or "market": fill at the natural price (plus the broker's slippage), whatever
    # ``limit_price`` says (it must still be finite; it is kept but ignored).
    order_type: str = "limit"
    # "gtc": good until canceled (the default, as before); "day": the broker expires it if it
    # is still open at the close of its session (Alpaca's ``time_in_force``).
    time_in_force: str = "gtc"

    def __post_init__(self) -> None:
        if self.order_type not in ("limit", "market"):
            raise DataError(f"order_type must be 'limit' or 'market', got {self.order_type!r}")
        if self.time_in_force not in ("gtc", "day"):
            raise DataError(f"time_in_force must be 'gtc' or 'day', got {self.time_in_force!r}")
        if not self.client_order_id or len(self.client_order_id) > 48:
            raise DataError(f"client_order_id must be 1-48 characters: {self.client_order_id!r}")
        if not self.legs:
            raise DataError("an order needs at least one leg")
        if not isinstance(self.quantity, int) or self.quantity <= 0:
            raise DataError(f"order quantity must be a positive integer, got {self.quantity!r}")
        if not (isinstance(self.limit_price, Real) and math.isfinite(self.limit_price)):
            raise DataError(f"order limit price must be finite, got {self.limit_price!r}")


_TICKER = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")


@dataclass(frozen=True, slots=True)
class ShareOrder:
    """An order for shares of ``symbol``: ``quantity`` shares, > 0 to buy, < 0 to sell.

    Share orders close the shares that exercise and assignment leave behind (and, later, carry
    hedges). ``order_type`` "market" (``limit_price`` None) or "limit" (``limit_price`` > 0, per
    share). ``opening`` is False when the order reduces a held share position; the broker checks
    that it does. Fills of a share order carry ``quantity`` shares (> 0) at ``price`` per share
    (> 0); the side is the order's. Day orders by default, as brokers take market orders.
    """

    client_order_id: str
    account: str
    symbol: str
    quantity: int
    order_type: str = "market"
    limit_price: float | None = None
    time_in_force: str = "day"
    opening: bool = False

    def __post_init__(self) -> None:
        if not self.client_order_id or len(self.client_order_id) > 48:
            raise DataError(f"client_order_id must be 1-48 characters: {self.client_order_id!r}")
        if not isinstance(self.symbol, str) or not _TICKER.match(self.symbol):
            raise DataError(f"share symbol {self.symbol!r} must be 1-10 upper-case letters, "
                            "digits or dots, starting with a letter")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or (
                self.quantity == 0):
            raise DataError(f"share quantity must be a non-zero integer, got {self.quantity!r}")
        if self.order_type not in ("limit", "market"):
            raise DataError(f"order_type must be 'limit' or 'market', got {self.order_type!r}")
        if self.time_in_force not in ("gtc", "day"):
            raise DataError(f"time_in_force must be 'gtc' or 'day', got {self.time_in_force!r}")
        price = self.limit_price
        if self.order_type == "market":
            if price is not None:
                raise DataError(f"a market share order takes no limit price, got {price!r}")
        elif (price is None or isinstance(price, bool) or not isinstance(price, Real)
              or not (0 < price < math.inf)):
            raise DataError(f"a limit share order needs a limit price > 0, got {price!r}")

    @property
    def side(self) -> str:
        return "buy" if self.quantity > 0 else "sell"


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """The broker's view of an order."""

    client_order_id: str
    broker_order_id: str
    status: OrderStatus
    quantity: int
    filled_quantity: int
    limit_price: float
    avg_fill_price: float | None
    submitted_at: datetime
    updated_at: datetime
    reason: str | None = None  # why rejected or canceled, when known
    order_type: str = "limit"
    time_in_force: str = "gtc"
    expires_at: datetime | None = None  # a day order's session close
    replaces: str | None = None  # the client order id this order replaced
    replaced_by: str | None = None  # the client order id that replaced this order


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution: ``quantity`` units of the order's combination at ``price`` net per share.

    ``exec_id`` is unique per execution at the broker; the ledger de-duplicates on it.
    ``commission`` is in dollars for this execution (all legs).
    """

    exec_id: str
    client_order_id: str
    quantity: int
    price: float
    commission: float
    time: datetime


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    """A position in one contract at the broker: ``quantity`` contracts, > 0 long, < 0 short;
    ``avg_price`` per share."""

    contract: Contract
    quantity: int
    avg_price: float


@dataclass(frozen=True, slots=True)
class SharePosition:
    """Shares of ``symbol`` held at the broker: ``quantity`` > 0 long, < 0 short; ``avg_price``
    per share (the cost basis as the broker keeps it: the strike for shares from exercise or
    assignment)."""

    symbol: str
    quantity: int
    avg_price: float


@dataclass(frozen=True, slots=True)
class Settlement:
    """What happened to an option position at expiry (or on early assignment), as the broker
    books it (Alpaca calls these non-trade activities: OPEXP, OPEXC, OPASN).

    ``quantity`` contracts (signed, as held) of ``contract``; ``intrinsic`` per share against
    ``underlying_price``, the underlying's price when it happened; ``amount`` the cash it moved in
    dollars (> 0 received); ``shares`` the shares it delivered (> 0 received, < 0 delivered away;
    0 when nothing was exercised or the option was cash-settled). ``kind`` is one of "expired"
    (worthless), "exercised" (a long option), "assigned" (a short option), "early_assignment"
    (a short call assigned before an ex-dividend date), "cash_settled". ``activity_id`` is unique
    at the broker: the ledger de-duplicates on it.
    """

    contract: Contract
    quantity: int
    underlying_price: float
    intrinsic: float
    amount: float
    time: datetime
    kind: str = "cash_settled"
    shares: int = 0
    activity_id: str = ""


@dataclass(frozen=True, slots=True)
class BrokerAccount:
    """Cash and buying power in dollars, as the broker reports them."""

    cash: float
    buying_power: float
    equity: float
