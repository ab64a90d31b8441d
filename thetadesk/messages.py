"""Messages between actors: frozen, picklable, comparable dataclasses (house rule 3).

Money is in dollars, prices are net per share with > 0 a credit (see thetadesk.models).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from thetadesk.models import Leg
from thetadesk.strategies.spreads import Spread


@dataclass(frozen=True, slots=True)
class TradeIntent:
    """A symbol actor's proposal to open one unit of a spread; accounts size it themselves.

    ``limit_price`` is the net per-share price the order will ask for (the mid credit);
    ``natural_price`` what crossing every leg would give. The per-spread money amounts are
    dollars for one spread at ``limit_price``.
    """

    intent_id: str
    symbol: str
    spread: Spread
    limit_price: float
    natural_price: float
    max_loss_per_spread: float
    max_profit_per_spread: float
    margin_per_spread: float
    decided_at: datetime
    context: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # The strategy profile that proposed it (config: strategies, accounts[].strategies); only
    # the accounts that trade that profile receive it.
    profile: str = "default"
    # The share of the account's budget per trade to size it with: 1.0 for the plain
    # strategy; the adaptive strategy's regime parameters set it (0 < size <= 2).
    size_multiplier: float = 1.0

    @property
    def strategy(self) -> str:
        return self.spread.kind.value


@dataclass(frozen=True, slots=True)
class SymbolTick:
    """What a symbol actor returns for one tick."""

    symbol: str
    now: datetime
    spot: float | None
    atm_iv: float | None
    intents: tuple[TradeIntent, ...] = ()
    note: str | None = None  # why no intent (outside entry window, IV too low, ...)


@dataclass(frozen=True, slots=True)
class RiskRequest:
    """An account's request to the risk gate for one order."""

    account: str
    client_order_id: str
    intent_id: str | None
    symbol: str
    opening: bool
    quantity: int
    max_loss: float  # dollars for the whole order at its limit price
    buying_power_needed: float  # dollars
    buying_power: float  # the account's buying power before the order, dollars
    open_positions: int  # positions (and open opening orders) before this one
    now: datetime
    legs: tuple[Leg, ...] = ()  # an option order's legs, ratios per unit of ``quantity``
    shares: int = 0  # a share order's signed shares (> 0 buy)
    # The prices the account saw at ``now`` for the contracts of its book and this order (OCC ->
    # mid per share) and for their underlyings (symbol -> spot): the gate prices the book with
    # them instead of asking the market again (anything missing it asks the market for).
    marks: tuple[tuple[str, float], ...] = ()
    spots: tuple[tuple[str, float], ...] = ()
    reduces_risk: bool = False  # an opening order that lowers risk (a hedge): passes REDUCING
    adds_to: str | None = None  # an opening order adding to this position (not a new one)

    def as_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["legs"] = [f"{leg.ratio:+d} {leg.contract.occ}" for leg in self.legs]
        out["marks"] = dict(self.marks)
        out["spots"] = dict(self.spots)
        return out


@dataclass(frozen=True, slots=True)
class HedgeOrder:
    """The hedging actor's order for one account (``thetadesk.hedging``); the account places
    it through the risk gate like any order. Exactly one of: ``shares`` (signed, > 0 buy), an
    option purchase (``legs``, each ratio +1, ``quantity`` units at ``limit_price`` net per
    share, < 0 a debit), or the close of the hedge position ``close_position_id``.

    ``kind``: "delta" (back to the band's middle), "tail" (protection bought: puts, or VIX
    calls with ``symbol`` "VIX"), "tail_roll" (protection near expiry sold before it is
    replaced), "unwind" (an option delta hedge that now adds delta), "gamma" (shares that
    delta-hedge the tail book's options: gamma scalping). ``reduces_risk``: the hedging engine
    found it lowers the book's risk; under a HALTED breaker the gate lets it through only when
    its own measures agree."""

    account: str
    kind: str
    symbol: str
    decided_at: datetime
    reason: str
    shares: int = 0
    legs: tuple[Leg, ...] = ()
    quantity: int = 0
    limit_price: float = 0.0
    close_position_id: str | None = None
    reduces_risk: bool = True
    detail: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def strategy(self) -> str:
        if self.kind in ("tail", "tail_roll"):
            return "hedge_tail"
        return "hedge_gamma" if self.kind == "gamma" else "hedge_delta"


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    approved: bool
    check: str | None = None  # the check that said no
    reason: str | None = None  # a sentence with the numbers in it
    # The request as the gate checked it (JSON, its figures included) when the gate left the
    # verdict for the caller to record (``RiskEngine.check_many(record=False)``): the account
    # writes it in the transaction that writes the order ahead.
    request: str | None = None


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


@dataclass(frozen=True, slots=True)
class Alert:
    severity: Severity
    kind: str  # e.g. breaker_tripped, actor_restarted, reconciliation_mismatch, fill
    key: str  # de-duplication key
    message: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AccountTick:
    """What an account actor returns for one tick (money in dollars)."""

    account: str
    now: datetime
    equity: float
    cash: float
    buying_power: float
    day_pnl: float
    open_positions: int
    opened: int = 0  # orders that opened positions (filled) this tick
    closed: int = 0  # positions closed this tick
    submitted: tuple[str, ...] = ()  # client order ids sent to the broker this tick
    rejected: tuple[str, ...] = ()  # client order ids the risk gate or broker refused
    latencies_ms: tuple[float, ...] = ()  # intent proposed -> order at the broker
    alerts: tuple[Alert, ...] = ()
    # Seconds the account has gone without usable quotes for a position it holds (0 when
    # every quote came through; None: not measured). The stale-data breaker's input.
    data_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class AccountRound:
    """What an account actor returns for one lockstep round: the tick's report and, when the
    round also prepared the next tick (fills, order upkeep, exits), the symbols whose intents
    the account would act on at that tick. ``ready`` is None when nothing was prepared; empty
    when no symbol's intent could lead anywhere (each holds a position or an open order, or the
    account fails closed), so the supervisor need not ask the symbol actors at all."""

    tick: AccountTick
    ready: tuple[str, ...] | None = None
