"""One account's trading: sizing, the risk gate, write-ahead orders, fills, positions, exits.

Order safety, in the order things happen:

1. The client order id is derived from the decision (account, symbol, strategy, legs, decision
   time; for exits the position, reason and time), so the same decision always has the same id.
2. The intent and its order (status ``pending_submit``) are written to the ledger in one
   transaction before the broker is called.
3. The broker's answer updates the order. A timeout, an unknown error or a crash in between
   leaves the outcome unknown; it is resolved by looking the order up by its client order id
   (``resolve``), never by submitting again. A ``pending_submit`` order the broker does not know
   was never sent: it becomes ``not_submitted``.
4. Fills are de-duplicated by execution id and applied to positions in the same transaction.

Expiry: a position held to its expiry close is closed in the ledger from the broker's
settlements (expired, exercised, assigned) at the legs' intrinsic value; shares that exercise
and assignment leave (ETF options settle physically) are booked at the underlying's price at that
close and closed with a market share order, written ahead like every order. A symbol holding
shares takes no new entries until they are gone.

Close-all (Telegram ``/closeall``): ``request_close_all`` records the request in the ledger's
run state (``close_all:<account>``) before anything else, so a restart carries it on. From the
next round on, every open position gets a marketable closing order (reason ``close_all``)
whatever the exit rules say, opening orders still working are cancelled, and shares go as
always. When the ledger holds nothing and no order works, positions the broker still reports
(ones ThetaDesk never opened) are closed with the broker's own close-everything call, once;
when the broker holds nothing either, the request is cleared with an info alert. It does not
stop new entries by itself: the caller halts them first (the manual halt breaker).

Construction is recovery: the engine resolves every unfinished order against the broker,
imports missed fills, books missed settlements, and compares positions (options and shares). A
mismatch it cannot explain fails the account closed (no new entries; exits and cancels still run)
with a critical alert.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from thetadesk import failpoints
from thetadesk.chain import NEW_YORK, expiry_instant
from thetadesk.config import DEFAULT_PROFILE
from thetadesk.errors import AmbiguousOrderState, DataError, OrderRejected, TemporaryError
from thetadesk.exits import ExitRules
from thetadesk.logging import get_logger
from thetadesk.messages import (
    AccountTick,
    Alert,
    HedgeOrder,
    RiskRequest,
    RiskVerdict,
    Severity,
    TradeIntent,
)
from thetadesk.models import (
    BrokerAccount,
    BrokerOrder,
    Contract,
    Fill,
    Leg,
    OrderRequest,
    OrderStatus,
    Settlement,
    ShareOrder,
)
from thetadesk.ports import Broker, MarketData
from thetadesk.positions import Action, ManageRules, PositionView, RollPlan, choose_roll, decide
from thetadesk.positions.manage import ShortLeg
from thetadesk.pricing import bsm_greeks, implied_vol
from thetadesk.risk.breakers import session_of
from thetadesk.signals.timing import LimitLadder
from thetadesk.sizing import Sizing, SizingRules, buckets, portfolio_room, size, trade_budget
from thetadesk.store import HEDGE_PREFIX, Ledger, legs_from_json
from thetadesk.strategies.spreads import Spread, SpreadKind

OPEN_STATUSES = ("pending_submit", OrderStatus.NEW.value, OrderStatus.PARTIALLY_FILLED.value)
_FINAL = {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED}
ENTRY_TIMEOUT_TICKS = 3  # an unfilled opening order is cancelled after this many ticks
CLOSE_ALL = "close_all:"  # run-state key prefix of an account's pending close-all request
LADDER = "ladder"  # decision kind: a working entry stepping from mid toward natural
_KINDS = frozenset(k.value for k in SpreadKind)


@dataclass(frozen=True, slots=True)
class _Ladder:
    """A working entry's prices (``signals.timing.LimitLadder``), signed like every net
    premium here: > 0 a credit, < 0 a debit."""

    mid: float
    natural: float
    credit: bool
    rule: LimitLadder

    def price(self, step: int) -> float:
        return self.rule.net(self.mid, self.natural, step)

    def as_detail(self) -> dict:
        return {"mid": self.mid, "natural": self.natural, "credit": self.credit,
                "step_minutes": self.rule.step_minutes, "tick": self.rule.tick,
                "max_steps": self.rule.max_steps}

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> _Ladder:
        rule = LimitLadder(int(spec["step_minutes"]), float(spec["tick"]),
                           int(spec["max_steps"]))
        ladder = cls(float(spec["mid"]), float(spec["natural"]), bool(spec["credit"]), rule)
        ladder.price(0)  # unusable prices raise here
        if (ladder.mid > 0) != ladder.credit or (ladder.natural > 0) != ladder.credit:
            raise ValueError(f"mid {ladder.mid} and natural {ladder.natural} do not match a "
                             f"{'credit' if ladder.credit else 'debit'}")
        return ladder


def _ladder_of(context: Mapping[str, Any]) -> _Ladder | None:
    """The working-order ladder an intent asks for (``context["ladder"]``), if any."""
    spec = context.get("ladder")
    return None if not spec else _Ladder.parse(spec)


def _step_of(decision_id: str, client_order_id: str) -> int:
    """A ladder order's step: 0 for the first (its id is the decision's), k for ``<id>.k``."""
    if client_order_id == decision_id:
        return 0
    return int(client_order_id.rsplit(".", 1)[1])


_DONE = (OrderStatus.CANCELED.value, OrderStatus.REJECTED.value, "not_submitted")
SHARE_MARGIN = 0.5  # of a share order's notional: the buying power a hedge's shares hold


@dataclass(frozen=True, slots=True)
class AccountRules:
    """``exits`` (take profit, stop, time) is the short form; ``manage`` the full position
    management rules (``thetadesk.positions``), derived from ``exits`` when not given.
    ``rate`` and ``dividend_yields`` (symbol, yield) price the short legs' deltas."""

    name: str
    symbols: tuple[str, ...]
    max_risk_per_trade: float
    exits: ExitRules
    manage: ManageRules | None = None
    rate: float = 0.0
    dividend_yields: tuple[tuple[str, float], ...] = ()
    sizing: SizingRules = field(default_factory=SizingRules)
    # Strategy positions one symbol may hold (accounts[].risk.max_positions_per_symbol; None:
    # no limit of the account's own). A symbol at its limit is not asked for entries; the risk
    # gate checks the same limit on every order.
    max_positions_per_symbol: int | None = 1
    # Per-structure exit sets (``exits.structures``: strategy name, its rules), in place of
    # ``management`` for positions of that structure.
    structures: tuple[tuple[str, ManageRules], ...] = ()

    @classmethod
    def from_config(cls, account, exits, *, rate: float = 0.0,
                    dividend_yields: tuple[tuple[str, float], ...] = (),
                    sizing=None) -> AccountRules:
        return cls(account.name, tuple(account.symbols), account.max_risk_per_trade,
                   ExitRules(exits.take_profit, exits.stop_multiple, exits.close_dte),
                   ManageRules.from_config(exits), rate, tuple(dividend_yields),
                   SizingRules() if sizing is None else SizingRules.from_config(sizing),
                   account.risk.max_positions_per_symbol, ManageRules.by_structure(exits))

    def management_of(self, strategy: str) -> ManageRules:
        """The exit rules of a structure: its own set if ``exits.structures`` has one."""
        return next((r for kind, r in self.structures if kind == strategy), self.management)

    @property
    def management(self) -> ManageRules:
        if self.manage is not None:
            return self.manage
        e = self.exits
        return ManageRules(take_profit=e.take_profit, stop_multiple=e.stop_multiple,
                           close_dte=e.close_dte)


def _why(action) -> str:
    """A management decision's reason in words (the ledger's ``decisions.reason``)."""
    return str(action.detail.get("why") or action.reason)


def is_hedge(position: dict) -> bool:
    """Whether a ledger position belongs to the hedge book (the hedging actor's)."""
    return position["strategy"].startswith(HEDGE_PREFIX)


def client_order_id(*parts: object) -> str:
    """A deterministic id (<= 48 characters) from the parts of a decision."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()
    return f"td-{digest[:32]}"


def entry_order_id(account: str, intent: TradeIntent) -> str:
    legs = ",".join(f"{leg.ratio:+d}{leg.contract.occ}" for leg in intent.spread.legs)
    # The default profile's ids are what they were before profiles existed (resumed ledgers).
    profile = () if intent.profile == DEFAULT_PROFILE else (intent.profile,)
    return client_order_id(account, intent.symbol, intent.strategy, legs,
                           intent.decided_at.isoformat(), *profile)


def _reversed(legs: Iterable[Leg]) -> tuple[Leg, ...]:
    return tuple(Leg(leg.contract, -leg.ratio) for leg in legs)


def _long_max_profit(legs: tuple[Leg, ...], limit: float) -> float:
    """Dollars per unit a bought option hedge can make at most: a put its strike less the
    premium, a call without bound (inf); 0 for shares (not a position row)."""
    if not legs:
        return 0.0
    if all(not leg.contract.is_call for leg in legs):
        return sum(leg.contract.strike for leg in legs) * legs[0].contract.multiplier - abs(
            limit) * legs[0].contract.multiplier
    return math.inf


def _natural(legs: Iterable[Leg], quotes: dict) -> float:
    return -sum(leg.ratio * (quotes[leg.contract].ask if leg.ratio > 0
                             else quotes[leg.contract].bid) for leg in legs)


@dataclass(frozen=True, slots=True)
class _Entry:
    """An intent sized for the account and its request to the risk gate, awaiting the verdict."""

    intent: TradeIntent
    request: RiskRequest
    ladder: _Ladder | None
    sizing: Sizing | None = None


@dataclass(frozen=True, slots=True)
class _EntryBook:
    """What entries are measured against: the symbols that take none now, the max loss at
    stake per symbol (open strategy positions and the unfilled part of working opening
    orders; the hedge book is not max loss), and the net option contracts held per contract
    (every open position's legs, hedges included, and the unfilled part of working opening
    orders): what the broker nets into one position per contract."""

    busy: frozenset[str]
    at_risk: dict[str, float]
    legs: dict[Contract, int] = field(default_factory=dict)


class AccountEngine:
    def __init__(
        self,
        rules: AccountRules,
        ledger: Ledger,
        broker: Broker,
        market: MarketData,
        risk_gate: Callable[[RiskRequest], RiskVerdict],
        now: datetime,
        risk_batch: Callable[[Sequence[RiskRequest]], Sequence[RiskVerdict]] | None = None,
    ) -> None:
        """``risk_gate`` checks one order; ``risk_batch``, if given, checks a tick's entries
        together in one call (``RiskEngine.check_many``: each request sees the ones approved
        before it in the batch), one round trip to the risk actor per tick rather than one per
        entry. A verdict that comes back with its request (``RiskVerdict.request``: the gate
        left the recording to the caller) is recorded by the account: an entry's in the
        transaction that writes its order ahead, any other before it is acted on."""
        self.rules = rules
        self.name = rules.name
        self.ledger = ledger
        self.broker = broker
        self.market = market
        self.risk_gate = risk_gate
        self.risk_batch = risk_batch
        self.log = get_logger("account").bind(account=self.name)
        self.fail_closed: str | None = None
        self._alerts: list[Alert] = []
        self._opened = 0
        self._closed = 0
        self._order_age: Counter[str] = Counter()
        # Positions' own exit levels, by (structure, JSON).
        self._own_rules: dict[tuple[str, str], ManageRules] = {}
        self._wall: Callable[[], float] = lambda: 0.0
        self._submit_wall = 0.0
        self._prepared: datetime | None = None  # the tick whose first half has run
        self._day_recorded: date | None = None  # the session whose opening equity is recorded
        self._submitted: list[str] = []
        self._rejected: list[str] = []
        self._session = session_of(now)
        self._quotes_good_at = now  # stale-data breaker: the last tick with every quote usable
        self._bucket_session: date | None = None  # the session ``_bucket_cache`` belongs to
        self._bucket_cache: list[tuple[str, ...]] = []
        self._book_cache: tuple[tuple, _EntryBook] | None = None  # ((now, changes), book)
        self._positions_cache: tuple[tuple, list[dict]] | None = None
        stored = ledger.get_state(CLOSE_ALL + self.name)
        self._close_all: dict | None = json.loads(stored) if stored else None
        self.recover(now)

    # -- recovery -----------------------------------------------------------------------------

    def recover(self, now: datetime) -> None:
        """Bring the ledger in line with the broker: unfinished orders, missed fills, positions."""
        for order in self.ledger.orders(self.name, OPEN_STATUSES):
            self.resolve(order["client_order_id"], now)
        for order in self.ledger.orders(self.name):
            # Fully filled per the ledger's own fills: nothing can be missing (its status alone
            # proves nothing: the broker's "filled" is recorded before the fills are).
            if order["status"] in ("not_submitted",) or (
                    (order["filled_quantity"] or 0) >= order["quantity"]):
                continue
            for fill in self.broker.fills(order["client_order_id"]):
                self._apply_fill(fill, now)
        self._settle_expired(now)
        self._adopt_external_orders(now)
        self.reconcile_positions(now)

    def _adopt_external_orders(self, now: datetime) -> None:
        """Open orders at the broker that the ledger never placed: recorded as external and
        reported once (a warning); left alone (never cancelled, fills not booked), except by a
        close-all. Positions they open show up in ``reconcile_positions`` and fail the account
        closed, as any position the ledger cannot explain."""
        try:
            found = self.broker.open_orders()
        except TemporaryError as exc:
            self.log.warning("open_orders_unavailable", reason=str(exc))
            return
        for order in found:
            cid = order.client_order_id
            if self.ledger.order(cid) is not None:
                continue
            if self.ledger.adopt_external_order(
                    account=self.name, client_order_id=cid,
                    broker_order_id=order.broker_order_id, status=order.status.value,
                    quantity=order.quantity, now=now):
                self._alert(Severity.WARNING, "external_order", f"{self.name}:external:{cid}",
                            f"{self.name}: an order ThetaDesk did not place is open at the "
                            f"broker (client id {cid}, {order.quantity} units, "
                            f"{order.status.value}); it is left alone and its fills are not "
                            "booked", now)

    def resolve(self, cid: str, now: datetime) -> BrokerOrder | None:
        """Settle an order whose state we do not know by looking it up at the broker."""
        order = self.ledger.order(cid)
        try:
            found = self.broker.get_order_by_client_id(cid)
        except TemporaryError as exc:
            self.log.warning("lookup_failed", client_order_id=cid, reason=str(exc))
            return None
        if found is None:
            if order is not None and order["status"] == "pending_submit":
                self.ledger.update_order(cid, status="not_submitted", now=now,
                                         reason="never reached the broker (resolved by lookup)")
                self.log.info("order_not_submitted", client_order_id=cid)
            elif order is not None:
                self._alert(Severity.CRITICAL, "reconciliation_mismatch", cid,
                            f"{self.name}: order {cid} is {order['status']} in the ledger but "
                            "unknown to the broker", now)
            return None
        self._record_outcome(found, self.broker.fills(cid), now)
        return found

    def reconcile_positions(self, now: datetime) -> None:
        mine: Counter[str] = Counter()
        for pos in self.ledger.positions(self.name):
            for leg in legs_from_json(pos["legs"]):
                mine[leg.contract.occ] += leg.ratio * pos["quantity"]
        for symbol, quantity in self.ledger.all_shares(self.name).items():
            mine[f"{symbol} shares"] += quantity
        theirs: Counter[str] = Counter()
        for held in self.broker.positions():
            theirs[held.contract.occ] += held.quantity
        for stock in self.broker.share_positions():
            theirs[f"{stock.symbol} shares"] += stock.quantity
        diff = {occ: (mine[occ], theirs[occ]) for occ in set(mine) | set(theirs)
                if mine[occ] != theirs[occ]}
        if diff:
            detail = ", ".join(f"{occ}: ledger {a} vs broker {b}" for occ, (a, b) in sorted(
                diff.items()))
            self.fail_closed = f"positions do not match the broker ({detail})"
            self._alert(Severity.CRITICAL, "reconciliation_mismatch", f"{self.name}:positions",
                        f"{self.name}: {self.fail_closed}; new entries halted", now)
        else:
            self.fail_closed = None

    # -- the tick -------------------------------------------------------------------------------

    def tick(self, now: datetime, intents: Iterable[TradeIntent] = (),
             proposed_wall: float | None = None, wall: Callable[[], float] | None = None,
             ) -> AccountTick:
        """One whole round: ``prepare`` then ``enter``."""
        self.prepare(now)
        return self.enter(now, intents, proposed_wall, wall)

    def prepare(self, now: datetime) -> None:
        """The first half of a round, independent of the symbols' proposals: fills, order
        upkeep and exits (the supervisor runs it while the symbol actors think)."""
        self._opened = self._closed = 0
        self._submitted, self._rejected = [], []
        self._session = session_of(now)
        self._prepared = now
        if self._day_recorded != self._session:  # the first tick of a session (or of a run)
            acct = self.broker.account()
            self.ledger.start_day(account=self.name, session=self._session, equity=acct.equity)
            self._day_recorded = self._session
        for fill in self.broker.poll(now):
            self._apply_fill(fill, now)
        self._settle_expired(now)
        for order in self.ledger.orders(self.name, OPEN_STATUSES):
            self._upkeep(order, now)
        self._advance_ladders(now, self._submitted, self._rejected)
        self._close_shares(now, self._submitted, self._rejected)
        self._manage_exits(now, self._submitted, self._rejected)
        if self._close_all is not None:
            self._cancel_external(now)
            self._close_all_done(now)

    # -- close-all ----------------------------------------------------------------------------

    def request_close_all(self, now: datetime, by: str) -> int:
        """Close every open position from the next round on (see the module doc); returns how
        many positions and share holdings are open. Asking again while one is pending keeps the
        first request."""
        if self._close_all is None:
            request = {"requested_at": now.isoformat(), "by": by}
            self.ledger.set_state(CLOSE_ALL + self.name, json.dumps(request))
            self._close_all = request
            self.log.warning("close_all_requested", by=by)
        return (len(self.ledger.positions(self.name))
                + len(self.ledger.share_positions(self.name)))

    def close_all_pending(self) -> dict | None:
        """The pending close-all request (``requested_at``, ``by``), or None."""
        return None if self._close_all is None else dict(self._close_all)

    def _liquidate_leftovers(self, now: datetime) -> bool:
        """Once everything the ledger holds is closed, what the broker still holds is a
        position ThetaDesk never opened (traded by hand, a mismatch): the kill switch closes
        it too, through the broker's own close-everything call where it has one (Alpaca:
        DELETE /v2/positions, market orders leg by leg), once per request; a broker without
        one gets a warning naming them. True while close-all must wait for the broker."""
        try:
            left = [*self.broker.positions(), *self.broker.share_positions()]
        except TemporaryError as exc:
            self.log.warning("close_all_positions_unavailable", reason=str(exc))
            return True
        if not left:
            return False
        liquidate = getattr(self.broker, "close_all_positions", None)
        request = self._close_all
        what = ", ".join(sorted(getattr(p, "symbol", None) or p.contract.occ for p in left))
        if liquidate is None:  # a broker without the call (the paper broker): say, and finish
            self._alert(Severity.WARNING, "close_all_leftovers",
                        f"{self.name}:leftovers:{request['requested_at']}",
                        f"{self.name}: close-all: the broker still holds {len(left)} "
                        f"position(s) ThetaDesk did not open ({what}); close them by hand", now)
            return False
        if request.get("liquidated"):
            return True  # sent already: wait for the broker
        try:
            liquidate(cancel_orders=True)
        except (TemporaryError, DataError, OrderRejected) as exc:
            self.log.warning("close_all_positions_failed", reason=str(exc))
            return True
        request["liquidated"] = now.isoformat()
        self.ledger.set_state(CLOSE_ALL + self.name, json.dumps(request))
        self._alert(Severity.WARNING, "close_all_liquidation",
                    f"{self.name}:liquidate:{request['requested_at']}",
                    f"{self.name}: close-all: the broker still held {len(left)} position(s) "
                    f"ThetaDesk did not open ({what}); asked the broker to close them at "
                    "market", now)
        return True

    def _cancel_external(self, now: datetime) -> None:
        """Close-all is the kill switch: orders placed outside ThetaDesk are cancelled too."""
        for row in self.ledger.external_orders(self.name):
            if row["status"] not in ("new", "partially_filled"):
                continue
            try:
                found = self.broker.cancel(row["client_order_id"], now)
            except (TemporaryError, DataError) as exc:
                self.log.warning("external_cancel_failed", client_order_id=row["client_order_id"],
                                 reason=str(exc))
                continue
            self.ledger.adopt_external_order(
                account=self.name, client_order_id=row["client_order_id"],
                broker_order_id=found.broker_order_id, status=found.status.value,
                quantity=found.quantity, now=now)
            self.log.info("external_order_cancelled", client_order_id=row["client_order_id"],
                          status=found.status.value)

    def _close_all_done(self, now: datetime) -> None:
        if (self.ledger.positions(self.name) or self.ledger.share_positions(self.name)
                or self.ledger.orders(self.name, OPEN_STATUSES)):
            return
        if self._liquidate_leftovers(now):
            return
        request, self._close_all = self._close_all, None
        self.ledger.delete_state(CLOSE_ALL + self.name)
        self._alert(Severity.INFO, "close_all_done",
                    f"{self.name}:close_all:{request['requested_at']}",
                    f"{self.name}: close-all requested by {request['by']} is done; nothing is "
                    "open. New entries stay halted until /start.", now)

    def enter(self, now: datetime, intents: Iterable[TradeIntent] = (),
              proposed_wall: float | None = None, wall: Callable[[], float] | None = None,
              hedges: Iterable[HedgeOrder] = ()) -> AccountTick:
        """The second half: place the hedging actor's orders, take the symbols' intents, then
        report. ``proposed_wall`` and ``wall`` (wall-clock seconds, supplied by the actor shell)
        only measure the latency from an intent's proposal to its order reaching the broker."""
        if self._prepared != now:
            self.prepare(now)
        if wall is not None:
            self._wall = wall
        submitted, rejected = self._submitted, self._rejected
        for hedge in hedges:
            if hedge.account == self.name:
                self._hedge(hedge, now, submitted, rejected)
        latencies: list[float] = []
        if self._close_all is not None:
            if intents:
                self.log.info("entries_skipped", reason="close-all pending")
        elif self.fail_closed is None:
            mine = [i for i in intents if i.symbol in self.rules.symbols]
            placed: list[float] = []
            if self.risk_batch is not None:
                self._enter_batch(mine, now, submitted, rejected, placed)
            else:
                for intent in mine:
                    self._enter(intent, now, submitted, rejected, placed)
            if proposed_wall is not None and wall is not None:
                latencies.extend((at - proposed_wall) * 1000.0 for at in placed)
        elif intents:
            self.log.warning("entries_halted", reason=self.fail_closed)
        acct = self.broker.account()
        # Strategy positions: the hedge book is reported on its own (the hedging actor's).
        positions = [p for p in self._open_positions() if not is_hedge(p)]
        day = self.ledger.day(self.name, self._session)
        self.ledger.end_day(account=self.name, session=self._session, equity=acct.equity,
                            cash=acct.cash, open_positions=len(positions))
        alerts = self.take_alerts()
        return AccountTick(
            account=self.name, now=now, equity=acct.equity, cash=acct.cash,
            buying_power=acct.buying_power, day_pnl=acct.equity - day["start_equity"],
            open_positions=len(positions), opened=self._opened, closed=self._closed,
            submitted=tuple(submitted), rejected=tuple(rejected), latencies_ms=tuple(latencies),
            alerts=alerts, data_age_s=(now - self._quotes_good_at).total_seconds(),
        )

    def take_alerts(self) -> tuple[Alert, ...]:
        """The alerts raised since the last tick (recovery's, at start-up), now handed over:
        a start-up finding (an external order, a mismatch) is reported when it is found, not
        at the first tick, which live can be a night away."""
        alerts, self._alerts = tuple(self._alerts), []
        return alerts

    def prewarm(self, at: datetime) -> int:
        """Quote what the round at ``at`` will quote first (the contracts of the account's
        positions and working opening orders, and their underlyings), ahead of it: for a
        simulated or replayed market, whose quotes are a function of the instant and cached by
        it, so the next session's first tick does not build the new day's market in it. Nothing
        is decided, written or sent; a contract the market cannot quote is left to the tick.
        Returns how many quotes were made."""
        contracts = self._book_contracts()
        made = 0
        for contract in sorted(contracts, key=lambda c: c.occ):
            try:
                self.market.quote(contract, at)
                made += 1
            except DataError:
                continue
        for symbol in sorted({c.underlying for c in contracts} | set(self.rules.symbols)):
            try:
                self.market.spot(symbol, at)
            except DataError:
                continue
        return made

    def prepared(self, now: datetime) -> bool:
        """Whether the first half of the round at ``now`` has run (``enter`` would not run it)."""
        return self._prepared == now

    def entry_symbols(self, now: datetime | None = None) -> tuple[str, ...]:
        """The account's symbols whose intents ``enter`` would act on at ``now`` (default: the
        round whose first half ran): none while it fails closed, none that is busy
        (``_entry_book``: ``_enter`` drops those intents before any side effect). The
        supervisor asks the symbol actors only for these."""
        if self.fail_closed is not None or self._close_all is not None:
            return ()
        busy = self._entry_book(now).busy
        return tuple(s for s in self.rules.symbols if s not in busy)

    # -- entries ------------------------------------------------------------------------------

    def _entry_book(self, now: datetime | None = None) -> _EntryBook:
        """The symbols that take no new entry at ``now`` and the max loss at stake (see
        ``_EntryBook``). Busy: a working strategy order or assigned shares in the symbol, a
        working entry between two steps, as many strategy positions as
        ``max_positions_per_symbol`` allows, or an entry fewer than ``min_days_between_entries``
        calendar days ago (New York dates). The hedge book blocks nothing."""
        now = self._prepared if now is None else now
        # Asked twice a round (which symbols to ask, then the entries): the same answer while
        # nothing was written in between.
        key = (now, self.ledger.changes)
        if self._book_cache is not None and self._book_cache[0] == key:
            return self._book_cache[1]
        book = self._entry_book_now(now)
        self._book_cache = (key, book)
        return book

    def _entry_book_now(self, now: datetime | None) -> _EntryBook:
        positions = [p for p in self._open_positions() if not is_hedge(p)]
        working = self.ledger.orders(self.name, OPEN_STATUSES)  # the hedge book's included
        orders = [o for o in working if not o["purpose"].startswith(HEDGE_PREFIX)]
        busy = {o["symbol"] for o in orders}
        busy |= {p["symbol"] for p in self.ledger.share_positions(self.name)}
        # A working entry between two steps (the old order cancelled, the next not yet sent).
        busy |= {d["symbol"] for d in self.ledger.decisions(self.name, status="open",
                                                            kind=LADDER)}
        held = Counter(p["symbol"] for p in positions)
        limit = self.rules.max_positions_per_symbol
        if limit is not None:
            busy |= {s for s, n in held.items() if n >= limit}
        spacing = self.rules.sizing.min_days_between_entries
        if spacing > 0 and now is not None:
            today = now.astimezone(NEW_YORK).date()
            busy |= {s for s, at in self.ledger.latest_openings(self.name).items()
                     if (today - at.astimezone(NEW_YORK).date()).days < spacing}
        at_risk: Counter[str] = Counter()
        legs: Counter[Contract] = Counter()
        for p in self._open_positions():
            for leg in legs_from_json(p["legs"]):
                legs[leg.contract] += leg.ratio * p["quantity"]
        for p in positions:
            if math.isfinite(p["max_loss_per_spread"]):
                at_risk[p["symbol"]] += p["max_loss_per_spread"] * p["quantity"]
        for o in working:
            if o["opening"] and o["instrument"] == "options":
                for leg in legs_from_json(o["legs"]):
                    legs[leg.contract] += leg.ratio * (o["quantity"] - o["filled_quantity"])
        for o in orders:
            if o["opening"] and o["instrument"] == "options":
                intent = (self.ledger.intent_for_order(o["client_order_id"])
                          or self.ledger.intent_for_order(o["position_id"]) or {})
                loss = json.loads(intent.get("context") or "{}").get("max_loss_per_spread")
                if isinstance(loss, int | float) and math.isfinite(loss):
                    at_risk[o["symbol"]] += loss * (o["quantity"] - o["filled_quantity"])
        return _EntryBook(frozenset(busy), dict(at_risk), {c: n for c, n in legs.items() if n})

    def _open_positions(self) -> list[dict]:
        """The account's open positions (ledger rows), read once per round while nothing is
        written: only the account writes its own positions, so within one round its own
        writes are all that can change them."""
        key = (self._prepared, self.ledger.changes)
        if self._positions_cache is None or self._positions_cache[0] != key:
            self._positions_cache = (key, self.ledger.positions(self.name))
        return self._positions_cache[1]

    def _busy_symbols(self) -> frozenset[str]:
        return self._entry_book().busy

    def _enter(self, intent: TradeIntent, now: datetime, submitted: list[str],
               rejected: list[str], placed: list[float]) -> None:
        """One intent: checked by the gate on its own, then placed."""
        book = self._entry_book(now)
        if intent.symbol in book.busy:
            return
        entry = self._entry_request(intent, now, self.broker.account(), book.at_risk)
        if entry is not None:
            # The raw verdict: ``_place_entry`` records it (with the order it approves).
            self._place_entry(entry, self.risk_gate(entry.request), now, submitted, rejected,
                              placed)

    def _enter_batch(self, intents: Sequence[TradeIntent], now: datetime,
                     submitted: list[str], rejected: list[str], placed: list[float]) -> None:
        """The tick's intents checked together (``risk_batch``), then placed in order. The same
        outcome as one at a time: an intent for a busy symbol is dropped; of several for one
        symbol the first goes, and the next is tried (in a further batch) only if the gate
        refused it. Each entry is sized with the max loss of the batch's earlier entries
        counted as at stake (as if approved: a refusal only makes the later ones smaller)."""
        remaining = list(intents)
        while remaining:
            book = self._entry_book(now)
            at_risk = Counter(book.at_risk)
            acct = self.broker.account()
            batch: list[_Entry] = []
            later: list[TradeIntent] = []
            taken: set[str] = set()
            for intent in remaining:
                if intent.symbol in book.busy:
                    continue
                if intent.symbol in taken:
                    later.append(intent)
                    continue
                entry = self._entry_request(intent, now, acct, at_risk)
                if entry is not None:
                    batch.append(entry)
                    taken.add(intent.symbol)
                    at_risk[intent.symbol] += entry.request.max_loss
            if not batch:
                return
            verdicts = list(self.risk_batch([e.request for e in batch]))
            if len(verdicts) != len(batch):
                raise ValueError(f"the risk gate answered {len(verdicts)} verdicts for "
                                 f"{len(batch)} requests")
            for entry, verdict in zip(batch, verdicts, strict=True):
                self._place_entry(entry, verdict, now, submitted, rejected, placed)
            remaining = later

    def _buckets(self) -> list[tuple[str, ...]]:
        """The account's symbols in buckets of correlated underlyings, from the recorded closes
        (``thetadesk.sizing.buckets``), worked out once per session."""
        if self._bucket_session != self._session:
            s = self.rules.sizing
            closes = {sym: self.ledger.closes(sym, s.correlation_window + 1)
                      for sym in self.rules.symbols}
            self._bucket_cache = buckets(self.rules.symbols, closes,
                                         threshold=s.bucket_correlation,
                                         window=s.correlation_window)
            self._bucket_session = self._session
        return self._bucket_cache

    def _size(self, intent: TradeIntent, acct: BrokerAccount,
              at_risk: Mapping[str, float]) -> Sizing:
        """How many spreads ``intent`` gets (``thetadesk.sizing``), from the account's equity
        and what is at stake."""
        s = self.rules.sizing
        iv = intent.context.get("atm_iv")
        budget, vol = trade_budget(s, equity=acct.equity,
                                   fixed_budget=self.rules.max_risk_per_trade,
                                   size_multiplier=intent.size_multiplier,
                                   atm_iv=iv if isinstance(iv, int | float) else None)
        bucket = next((b for b in self._buckets() if intent.symbol in b), (intent.symbol,)) \
            if s.needs_buckets else ()
        room_total, room_bucket = portfolio_room(s, equity=acct.equity, at_risk=at_risk,
                                                 symbol=intent.symbol, bucket=bucket)
        quantity, why = size(intent.max_loss_per_spread, budget, room_total, room_bucket)
        if why and intent.size_multiplier != 1 and quantity == 0 and "budget" in why:
            why += f" (x{intent.size_multiplier:g} for the regime)"
        if why and vol != 1 and "budget" in why:
            why += f" (x{vol:.2f} for implied volatility {iv:.1%})"
        return Sizing(quantity, budget, vol, room_total, room_bucket, tuple(bucket), why)

    def _entry_request(self, intent: TradeIntent, now: datetime, acct: BrokerAccount,
                       at_risk: Mapping[str, float] | None = None) -> _Entry | None:
        """The risk request for an intent, sized for this account (``_size``), or None (with
        the reason logged) if the intent is unusable, too big for the budget or the room left,
        or already handled."""
        if not (intent.max_loss_per_spread > 0 and math.isfinite(intent.max_loss_per_spread)):
            self.log.warning("intent_rejected", intent_id=intent.intent_id,
                             reason=f"max loss per spread {intent.max_loss_per_spread} unusable")
            return None
        multiplier = intent.size_multiplier
        if not (isinstance(multiplier, int | float) and math.isfinite(multiplier)
                and 0 < multiplier <= 2):
            self.log.warning("intent_rejected", intent_id=intent.intent_id,
                             reason=f"size multiplier {multiplier!r} outside (0, 2]")
            return None
        # The broker keeps one net position per contract: a leg opposite to what other
        # positions hold there would net against them, and closing either would then be
        # refused as not matching what is held (or open what the other still needs).
        held = self._entry_book(now).legs
        for leg in intent.spread.legs:
            if held.get(leg.contract, 0) * leg.ratio < 0:
                self.log.info("intent_skipped", intent_id=intent.intent_id, reason=(
                    f"leg {leg.contract.occ} x{leg.ratio:+d} is opposite to the "
                    f"{held[leg.contract]:+d} other positions or orders hold: the broker would "
                    "net them into one position"))
                return None
        sizing = self._size(intent, acct, at_risk if at_risk is not None
                            else self._entry_book(now).at_risk)
        quantity = sizing.quantity
        if quantity < 1:
            self.log.info("intent_skipped", intent_id=intent.intent_id, reason=sizing.reason)
            return None
        try:
            ladder = _ladder_of(intent.context)
        except (KeyError, TypeError, ValueError) as exc:
            self.log.warning("intent_rejected", intent_id=intent.intent_id,
                             reason=f"unusable limit ladder: {exc}")
            return None
        if ladder is not None and abs(ladder.price(0) - intent.limit_price) > 1e-9:
            self.log.warning("intent_rejected", intent_id=intent.intent_id, reason=(
                f"limit {intent.limit_price} is not its ladder's first step "
                f"{ladder.price(0)}"))
            return None
        cid = entry_order_id(self.name, intent)
        if self.ledger.order(cid) is not None:
            return None  # the same decision, already handled (e.g. a re-sent tick)
        request = RiskRequest(
            account=self.name, client_order_id=cid, intent_id=intent.intent_id,
            symbol=intent.symbol, opening=True, quantity=quantity,
            max_loss=quantity * intent.max_loss_per_spread,
            buying_power_needed=quantity * (intent.margin_per_spread
                                            - intent.limit_price * intent.spread.multiplier),
            buying_power=acct.buying_power, open_positions=self._open_count(),
            now=now, legs=intent.spread.legs,
            **self._marks(intent.spread.legs, now, intent.context.get("leg_mids")),
        )
        return _Entry(intent, request, ladder, sizing)

    def _check(self, request: RiskRequest) -> RiskVerdict:
        """One order through the risk gate; a verdict the gate left to the caller to record
        (``RiskVerdict.request``) is recorded here, before anything acts on it."""
        verdict = self.risk_gate(request)
        self._record_verdict(request, verdict)
        return verdict

    def _record_verdict(self, request: RiskRequest, verdict: RiskVerdict) -> None:
        """The gate's verdict, when it left it to the account to record (``check_many`` with
        ``record=False``): in the caller's transaction if one is open, else in its own."""
        if verdict.request is None:
            return
        with self.ledger.transaction():
            self.ledger.record_verdict(
                account=request.account, client_order_id=request.client_order_id,
                intent_id=request.intent_id, approved=verdict.approved,
                check_name=verdict.check, reason=verdict.reason, request=verdict.request,
                now=request.now)

    def _place_entry(self, entry: _Entry, verdict: RiskVerdict, now: datetime,
                     submitted: list[str], rejected: list[str], placed: list[float]) -> None:
        """After the gate's verdict: the verdict, the intent and its order written ahead in one
        transaction, then the order sent (a refusal: the verdict recorded, nothing sent)."""
        intent, request, ladder = entry.intent, entry.request, entry.ladder
        cid, quantity = request.client_order_id, request.quantity
        if not verdict.approved:
            self._record_verdict(request, verdict)
            rejected.append(cid)
            self.log.info("risk_rejected", intent_id=intent.intent_id, check=verdict.check,
                          reason=verdict.reason)
            return
        order = OrderRequest(cid, self.name, intent.spread.legs, quantity, intent.limit_price,
                             opening=True)
        context = {**intent.context, "quantity": quantity,
                   "max_loss_per_spread": intent.max_loss_per_spread,
                   "max_profit_per_spread": intent.max_profit_per_spread}
        if entry.sizing is not None:
            context["sizing"] = entry.sizing.as_detail()
        with self.ledger.transaction():
            self._record_verdict(request, verdict)
            if ladder is not None:  # a working order: its steps are one decision
                self.ledger.record_decision(
                    decision_id=cid, account=self.name, symbol=intent.symbol,
                    position_id=cid, kind=LADDER, reason="entry at mid, stepping to natural",
                    detail={**ladder.as_detail(), "quantity": quantity,
                            "intent_id": intent.intent_id}, now=now, status="open",
                    open_order_id=cid)
            self.ledger.record_intent_and_order(
                intent_id=intent.intent_id, account=self.name, symbol=intent.symbol,
                strategy=intent.strategy, decided_at=intent.decided_at, context=context,
                client_order_id=cid, position_id=cid, opening=True, purpose="entry",
                legs=intent.spread.legs, quantity=quantity, limit_price=intent.limit_price,
                now=now, decision_id=cid if ladder is not None else None,
            )
        failpoints.hit("account.after_write_ahead")
        before = len(submitted)
        self._submit(order, now, submitted, rejected, intent=intent)
        if len(submitted) > before:
            placed.append(self._submit_wall)

    # -- working entries: the limit ladder ----------------------------------------------------

    def _advance_ladders(self, now: datetime, submitted: list[str], rejected: list[str]) -> None:
        for decision in self.ledger.decisions(self.name, status="open", kind=LADDER):
            did = decision["decision_id"]
            try:
                self._advance_ladder(decision, now, submitted, rejected)
            except (TemporaryError, AmbiguousOrderState, OSError) as exc:
                # The broker did not answer: the ledger says where the ladder stands, and the
                # next tick takes it from there.
                self.log.warning("ladder_waiting", decision_id=did, reason=str(exc))
            except (OrderRejected, DataError, ValueError) as exc:
                # The broker refused the cancel (it does not know the order) or the record is
                # unusable: stop stepping, say so; reconciliation deals with the order itself.
                self.ledger.update_decision(did, now=now, status="abandoned",
                                            note=f"stopped: {exc}")
                self._alert(Severity.WARNING, "ladder_stopped", did,
                            f"{self.name}: the working entry {did} stopped: {exc}", now)

    def _ladder_end(self, did: str, filled: int, total: int, now: datetime, why: str) -> None:
        status = "done" if filled else "abandoned"
        self.ledger.update_decision(did, now=now, status=status,
                                    new_position_id=did if filled else None,
                                    note=f"{why} ({filled} of {total} filled)")
        self.log.info("ladder_end", decision_id=did, status=status, filled=filled, why=why)

    def _advance_ladder(self, decision: dict, now: datetime, submitted: list[str],
                        rejected: list[str]) -> None:
        """One working entry's step: every ``step_minutes`` since the decision, cancel the
        working order and send the rest of the quantity one tick nearer natural; after
        ``max_steps``, cancel and stop. Each step's order is written ahead (id ``<id>.k``), the
        decision's note says which cancel is the ladder's own, so a restart anywhere in a step
        continues it or ends it, never sends a step twice."""
        did = decision["decision_id"]
        detail = json.loads(decision["detail"])
        ladder = _Ladder.parse(detail)
        total = int(detail["quantity"])
        cur = self.ledger.order(decision["open_order_id"] or "")
        if cur is None:
            self._ladder_end(did, 0, total, now, "its order was never written")
            return
        cid = cur["client_order_id"]
        step = _step_of(did, cid)

        def filled() -> int:
            return sum(o["filled_quantity"] or 0 for o in self.ledger.decision_orders(did))

        if filled() >= total:
            self._ladder_end(did, total, total, now, "filled")
            return
        started = datetime.fromisoformat(decision["decided_at"])
        due = int((now - started).total_seconds() // (60 * ladder.rule.step_minutes))
        cancelling = f"step {step}: cancelling {cid}"
        if cur["status"] in OPEN_STATUSES:
            if cur["status"] == "pending_submit" or due <= step:
                return  # not sent yet (upkeep resolves it), or not yet time to step
            if self._close_all is not None:
                return  # close-all cancels the working order (upkeep); the ladder then ends
            # (Failing closed, the step is cancelled all the same and the ladder ends below.)
            self.ledger.update_decision(did, now=now, note=cancelling)
            found = self.broker.cancel(cid, now)
            self._sync(found, now)
            for fill in self.broker.fills(cid):
                self._apply_fill(fill, now)
            cur = self.ledger.order(cid)
            if cur["status"] in OPEN_STATUSES:
                return  # the cancel is not final yet: the next tick looks again
            failpoints.hit("account.ladder_after_cancel")
        done = filled()
        if done >= total:
            self._ladder_end(did, total, total, now, "filled")
            return
        note = (self.ledger.decision(did) or {}).get("note") or ""
        if cur["status"] != OrderStatus.CANCELED.value or note != cancelling:
            self._ladder_end(did, done, total, now, f"{cid} ended {cur['status']}")
            return
        nxt = max(due, step + 1)
        if nxt > ladder.rule.max_steps:
            self._ladder_end(did, done, total, now,
                             f"unfilled after {ladder.rule.max_steps} steps of "
                             f"{ladder.rule.step_minutes} minutes: cancelled")
            return
        if self._close_all is not None or self.fail_closed is not None:
            self._ladder_end(did, done, total, now, "entries halted")
            return
        new_cid = f"{did}.{nxt}"
        if self.ledger.order(new_cid) is not None:  # written before a restart: carry on
            self.ledger.update_decision(did, now=now, open_order_id=new_cid,
                                        note=f"step {nxt}")
            return
        intent = self.ledger.intent_for_order(did) or {}
        legs = legs_from_json(cur["legs"])
        spread = Spread(SpreadKind(intent.get("strategy", "")), legs)
        price = ladder.price(nxt)
        remaining = total - done
        acct = self.broker.account()
        # After a partial fill the position exists: the rest adds to it, not a new position.
        held = done > 0 and self.ledger.position(did) is not None
        verdict = self._check(RiskRequest(
            account=self.name, client_order_id=new_cid, intent_id=intent.get("intent_id"),
            symbol=cur["symbol"], opening=True, quantity=remaining,
            max_loss=remaining * spread.max_loss(price),
            buying_power_needed=remaining * (spread.margin() - price * spread.multiplier),
            buying_power=acct.buying_power,
            open_positions=self._open_count() - (1 if held else 0), now=now,
            legs=legs, adds_to=did if held else None, **self._marks(legs, now),
        ))
        if not verdict.approved:
            rejected.append(new_cid)
            self._ladder_end(did, done, total, now,
                             f"the risk gate refused step {nxt}: {verdict.reason}")
            return
        with self.ledger.transaction():
            self.ledger.record_intent_and_order(
                intent_id=None, account=self.name, symbol=cur["symbol"],
                strategy=intent.get("strategy", spread.kind.value), decided_at=now, context={},
                client_order_id=new_cid, position_id=did, opening=True, purpose="entry",
                legs=legs, quantity=remaining, limit_price=price, now=now, decision_id=did)
            self.ledger.update_decision(did, now=now, open_order_id=new_cid,
                                        note=f"step {nxt}")
        self.log.info("ladder_step", decision_id=did, step=nxt, limit=price,
                      quantity=remaining)
        self._submit(OrderRequest(new_cid, self.name, legs, remaining, price, opening=True),
                     now, submitted, rejected)

    # -- hedges -------------------------------------------------------------------------------

    def _hedge(self, hedge: HedgeOrder, now: datetime, submitted: list[str],
               rejected: list[str]) -> None:
        """Place one of the hedging actor's orders: its decision and order written ahead, the
        risk gate asked (a hedge that opens is flagged as reducing risk: it passes a REDUCING
        breaker, and a HALTED one only when the gate's measures show it lowers VaR and ES)."""
        if hedge.close_position_id is not None:
            self._close_hedge(hedge, now, submitted, rejected)
            return
        if self.fail_closed is not None or self._close_all is not None:
            self.log.info("hedge_skipped", kind=hedge.kind, reason=self.fail_closed
                          or "close-all pending")
            return
        what = (f"{hedge.shares:+d} {hedge.symbol}" if hedge.shares else
                ",".join(f"{leg.ratio:+d}{leg.contract.occ}" for leg in hedge.legs))
        cid = client_order_id(self.name, "hedge", hedge.kind, what, hedge.quantity,
                              hedge.decided_at.isoformat())
        if self.ledger.order(cid) is not None:
            return
        acct = self.broker.account()
        decision_id = f"dec-{cid[3:]}"
        if hedge.shares:
            held = dict((r["symbol"], r["quantity"]) for r in self.ledger.hedge_shares(self.name))
            have = held.get(hedge.symbol, 0)
            shares = hedge.shares
            opening = not (have and have * shares < 0)
            if not opening:  # reduce the hedge held; never flip it in one order
                shares = max(-abs(have), min(abs(have), shares))
            try:
                spot = self.market.spot(hedge.symbol, now)
            except DataError as exc:
                self.log.warning("hedge_skipped", kind=hedge.kind, reason=str(exc))
                return
            # The gate measures every hedge, one that buys back part of the hedge book too: it
            # is "closing" to the broker, but it changes the book's delta like any hedge.
            request = RiskRequest(
                account=self.name, client_order_id=cid, intent_id=None, symbol=hedge.symbol,
                opening=True, quantity=abs(shares), max_loss=0.0,
                buying_power_needed=SHARE_MARGIN * abs(shares) * spot if opening else 0.0,
                buying_power=acct.buying_power, open_positions=0, now=now, shares=shares,
                reduces_risk=hedge.reduces_risk, **self._marks((), now))
            order: OrderRequest | ShareOrder = ShareOrder(cid, self.name, hedge.symbol, shares,
                                                          opening=opening)
            legs: tuple[Leg, ...] = ()
            quantity, limit, side = abs(shares), 0.0, "buy" if shares > 0 else "sell"
        else:
            legs, quantity, limit, side = hedge.legs, hedge.quantity, hedge.limit_price, None
            premium = abs(limit) * legs[0].contract.multiplier * quantity
            request = RiskRequest(
                account=self.name, client_order_id=cid, intent_id=None, symbol=hedge.symbol,
                opening=True, quantity=quantity, max_loss=0.0, buying_power_needed=premium,
                buying_power=acct.buying_power, open_positions=0, now=now, legs=legs,
                reduces_risk=hedge.reduces_risk, **self._marks(legs, now))
            order = OrderRequest(cid, self.name, legs, quantity, limit, opening=True)
        verdict = self._check(request)
        detail = {**hedge.detail, "why": hedge.reason, "approved": verdict.approved,
                  "check": verdict.check, "refused": verdict.reason}
        if not verdict.approved:
            rejected.append(cid)
            self.ledger.record_decision(
                decision_id=decision_id, account=self.name, symbol=hedge.symbol,
                position_id=None, kind=f"hedge_{hedge.kind}", reason=hedge.reason,
                detail=detail, now=now, status="abandoned")
            self.log.info("hedge_refused", kind=hedge.kind, check=verdict.check,
                          reason=verdict.reason)
            return
        multiplier = legs[0].contract.multiplier if legs else 1
        context = {"quantity": quantity, "hedge": hedge.kind, "decision_id": decision_id,
                   "max_loss_per_spread": abs(limit) * multiplier,
                   "max_profit_per_spread": _long_max_profit(legs, limit)}
        with self.ledger.transaction():
            self.ledger.record_decision(
                decision_id=decision_id, account=self.name, symbol=hedge.symbol,
                position_id=None, kind=f"hedge_{hedge.kind}", reason=hedge.reason,
                detail=detail, now=now, open_order_id=cid)
            self.ledger.record_intent_and_order(
                intent_id=f"hedge:{cid}", account=self.name, symbol=hedge.symbol,
                strategy=hedge.strategy, decided_at=now, context=context, client_order_id=cid,
                position_id=f"hedge-shares-{hedge.symbol}" if hedge.shares else cid,
                opening=order.opening, purpose=hedge.strategy, legs=legs, quantity=quantity,
                limit_price=limit, now=now, instrument="shares" if hedge.shares else "options",
                side=side, decision_id=decision_id)
        self.log.info("hedge", kind=hedge.kind, what=what, quantity=quantity, limit=limit,
                      why=hedge.reason, client_order_id=cid)
        self._submit(order, now, submitted, rejected)

    def _close_hedge(self, hedge: HedgeOrder, now: datetime, submitted: list[str],
                     rejected: list[str]) -> None:
        pos = self.ledger.position(hedge.close_position_id or "")
        if pos is None or pos["status"] != "open" or not is_hedge(pos):
            return
        if any(o["position_id"] == pos["position_id"] and not o["opening"]
               for o in self.ledger.orders(self.name, OPEN_STATUSES)):
            return
        legs = legs_from_json(pos["legs"])
        try:
            quotes = {leg.contract: self.market.quote(leg.contract, now) for leg in legs}
        except DataError as exc:
            self.log.warning("hedge_close_skipped", position_id=pos["position_id"],
                             reason=str(exc))
            return
        action = Action("close", hedge.kind, pos["quantity"], {**hedge.detail,
                                                                "why": hedge.reason})
        self._close(pos, legs, quotes, action, now, submitted, rejected,
                    purpose=f"{HEDGE_PREFIX}_{hedge.kind}")

    def _book_contracts(self) -> set[Contract]:
        """The option contracts of the account's positions and working opening orders."""
        contracts = set()
        for pos in self._open_positions():
            contracts |= {leg.contract for leg in legs_from_json(pos["legs"])}
        for order in self.ledger.orders(self.name, OPEN_STATUSES):
            if order["opening"] and order["instrument"] == "options":
                contracts |= {leg.contract for leg in legs_from_json(order["legs"])}
        return contracts

    def _marks(self, legs: Iterable[Leg], now: datetime, known: object = None) -> dict:
        """What the account sees at ``now`` of its book and ``legs`` (mids, spots), for the risk
        gate to price the book with; what it cannot quote it leaves to the gate. ``known``: mids
        the proposal already carries (OCC -> mid, from the same instant's chain)."""
        contracts = {leg.contract for leg in legs} | self._book_contracts()
        given = {}
        if isinstance(known, dict):
            given = {occ: mid for occ, mid in known.items()
                     if isinstance(mid, float) and math.isfinite(mid) and mid > 0}
        marks, spots = [], []
        for contract in sorted(contracts, key=lambda c: c.occ):
            if contract.occ in given:
                marks.append((contract.occ, given[contract.occ]))
                continue
            try:
                mid = self.market.quote(contract, now).mid
            except DataError:
                continue
            if mid > 0:
                marks.append((contract.occ, mid))
        held = set(self.ledger.all_shares(self.name))
        for symbol in sorted({c.underlying for c in contracts} | held | {"SPY"}):
            try:
                spots.append((symbol, self.market.spot(symbol, now)))
            except DataError:
                continue
        return {"marks": tuple(marks), "spots": tuple(spots)}

    # -- exits --------------------------------------------------------------------------------

    def _manage_exits(self, now: datetime, submitted: list[str], rejected: list[str]) -> None:
        """Position management (``thetadesk.positions``): every open strategy position gets
        at most one decision per tick; hedge positions are the hedging actor's, except under
        close-all, which closes everything."""
        self._advance_rolls(now, submitted, rejected)
        closing = {o["position_id"] for o in self.ledger.orders(self.name, OPEN_STATUSES)
                   if not o["opening"]}
        rolling = {d["position_id"] for d in self.ledger.decisions(self.name, status="open",
                                                                  kind="roll")}
        stale = False  # some position went without a usable quote (stale-data breaker)
        for pos in self._open_positions():
            if pos["position_id"] in closing or pos["quantity"] <= 0:
                continue
            if pos["position_id"] in rolling:
                continue
            if is_hedge(pos) and self._close_all is None:
                continue
            legs = legs_from_json(pos["legs"])
            if any(expiry_instant(leg.contract.expiry, leg.contract.underlying) <= now
                   for leg in legs):
                continue  # expired: settled from the broker's settlements, not traded
            try:
                quotes: dict = {leg.contract: self.market.quote(leg.contract, now)
                                for leg in legs}
            except DataError as exc:
                self.log.warning("exit_skipped", position_id=pos["position_id"],
                                 reason=f"no usable quote: {exc}")
                stale = True
                continue
            if self._close_all is not None:
                action = Action("close", "close_all", pos["quantity"], {
                    "why": f"requested by {self._close_all['by']} at "
                           f"{self._close_all['requested_at']}"})
                self._close(pos, legs, quotes, action, now, submitted, rejected)
                continue
            # The short legs' deltas (an implied volatility each) only where a rule reads them;
            # else only for the record of a decision, which they cannot change.
            needs_deltas = self._rules_read_deltas()
            view = self._view(pos, legs, quotes, now, deltas=needs_deltas)
            self._track_peak(pos, view)
            rules = self._management_of(pos)
            action = decide(view, rules)
            if action is not None and not needs_deltas:
                view = self._view(pos, legs, quotes, now)
                action = decide(view, rules)
            plan: RollPlan | str | None = None
            if action is not None and action.kind == "roll":
                plan = self._plan_roll(pos, legs, quotes, view, now)
                if isinstance(plan, str):
                    self.log.info("roll_skipped", position_id=pos["position_id"], reason=plan,
                                  **{k: v for k, v in action.detail.items() if k != "why"})
                    action = decide(view, rules, allow_roll=False)
            if action is None:
                continue
            if action.kind == "roll" and isinstance(plan, RollPlan):
                self._start_roll(pos, legs, quotes, plan, action, now, submitted, rejected)
            elif action.kind == "add":
                self._add(pos, legs, quotes, action, now, submitted, rejected)
            elif action.quantity <= 0:
                self._mark_rung(pos, action, view, now)
            else:
                self._close(pos, legs, quotes, action, now, submitted, rejected, view)
        if not stale or session_of(self._quotes_good_at) != session_of(now):
            self._quotes_good_at = now  # stale data counts within a session

    # -- position management --------------------------------------------------------------------

    def _management_of(self, pos: dict) -> ManageRules:
        """The exit rules of one position: the account's, with the position's own levels (the
        adaptive strategy's regime parameters: ``take_profit``, ``stop_multiple``) where it has
        them. A take-profit level replaces the last rung; earlier rungs at or above it go."""
        text = pos.get("exit_rules")
        strategy = pos.get("strategy") or ""
        base = self.rules.management_of(strategy)
        if not text:
            return base
        cached = self._own_rules.get((strategy, text))
        if cached is None:
            own = json.loads(text)
            cached = base
            if "stop_multiple" in own:
                cached = replace(cached, stop_multiple=float(own["stop_multiple"]))
            if "take_profit" in own:
                tp = float(own["take_profit"])
                cached = replace(cached, take_profit=tp,
                                 ladder=tuple(r for r in cached.ladder if r < tp))
            self._own_rules[(strategy, text)] = cached
        return cached

    def _rules_read_deltas(self) -> bool:
        """Whether position management decides on short legs' deltas (a delta stop, rolls)."""
        m = self.rules.management
        return m.short_delta_stop is not None or m.roll.enabled

    def _view(self, pos: dict, legs: tuple[Leg, ...], quotes: dict, now: datetime,
              deltas: bool = True) -> PositionView:
        """The position as ``decide`` sees it: prices at mid, short legs' deltas from their
        mids' implied volatility (NaN with ``deltas`` False)."""
        value = sum(leg.ratio * quotes[leg.contract].mid for leg in legs)
        multiplier = legs[0].contract.multiplier
        dte = (legs[0].contract.expiry - now.astimezone(NEW_YORK).date()).days
        try:
            spot: float | None = self.market.spot(pos["symbol"], now)
        except DataError:
            spot = None
        shorts = []
        for leg in legs:
            if leg.ratio >= 0:
                continue
            delta = math.nan
            if spot is not None and deltas:
                c = leg.contract
                close = expiry_instant(c.expiry, c.underlying)
                years = max((close - now).total_seconds(), 60.0) / (365.0 * 86400.0)
                q = dict(self.rules.dividend_yields).get(c.underlying, 0.0)
                vol = float(implied_vol(quotes[c].mid, spot, c.strike, years, self.rules.rate,
                                        q, c.is_call))
                if math.isfinite(vol) and vol > 0:
                    delta = abs(float(bsm_greeks(spot, c.strike, years, self.rules.rate, vol, q,
                                                 c.is_call).delta))
            shorts.append(ShortLeg(leg.contract.strike, leg.contract.is_call, delta))
        max_profit, max_loss = pos["max_profit_per_spread"], pos["max_loss_per_spread"]
        credit = pos["entry_price"] * multiplier
        if not (max_profit is not None and math.isfinite(max_profit) and max_profit > 0):
            max_profit = credit if credit > 0 else math.nan
        if not (max_loss is not None and math.isfinite(max_loss) and max_loss > 0):
            max_loss = math.nan
        return PositionView(
            position_id=pos["position_id"], strategy=pos["strategy"], quantity=pos["quantity"],
            initial_quantity=pos["initial_quantity"] or pos["quantity"],
            entry_price=pos["entry_price"], value=value, max_profit=max_profit,
            max_loss=max_loss, multiplier=multiplier, dte=dte, spot=spot, shorts=tuple(shorts),
            rungs_hit=pos["rungs_hit"] or 0, peak_profit=pos["peak_profit"],
            reduced=bool(pos["reduced"]), added=bool(pos["added"]), rolls=pos["rolls"] or 0,
        )

    def _track_peak(self, pos: dict, view: PositionView) -> None:
        """After a rung, the trailing rule needs the best profit since (kept in the ledger)."""
        profit = view.profit_fraction
        if view.rungs_hit > 0 and math.isfinite(profit) and (
                view.peak_profit is None or profit > view.peak_profit + 1e-9):
            self.ledger.update_position_state(pos["position_id"], peak_profit=profit)
            pos["peak_profit"] = profit

    def _decision_detail(self, action: Action, **extra) -> dict:
        detail = dict(action.detail)
        if action.rung is not None:
            detail["rung"] = action.rung
        detail.update(extra)
        return detail

    def _state_after(self, pos: dict, action: Action, view: PositionView | None) -> dict:
        """The position's management state once ``action`` is decided (ladder, repair)."""
        state: dict = {}
        if action.rung is not None:
            state["rungs_hit"] = max(action.rung, pos["rungs_hit"] or 0)
            if view is not None and math.isfinite(view.profit_fraction):
                state["peak_profit"] = max(view.profit_fraction, pos["peak_profit"] or -math.inf)
        if action.reason == "repair_reduce":
            state["reduced"] = 1
        if action.reason == "repair_add":
            state["added"] = 1
        return state

    def _mark_rung(self, pos: dict, action: Action, view: PositionView, now: datetime) -> None:
        """A rung reached with nothing planned to close at it (a small position): recorded."""
        decision_id = client_order_id(self.name, pos["position_id"], "rung", action.rung,
                                      now.isoformat())
        with self.ledger.transaction():
            self.ledger.record_decision(
                decision_id=decision_id, account=self.name, symbol=pos["symbol"],
                position_id=pos["position_id"], kind=action.reason, reason=_why(action),
                detail=self._decision_detail(action, quantity=0), now=now)
            self.ledger.update_position_state(pos["position_id"],
                                              **self._state_after(pos, action, view))
        self.log.info("rung_reached", position_id=pos["position_id"], rung=action.rung,
                      why=action.detail.get("why"))

    def _close(self, pos: dict, legs: tuple[Leg, ...], quotes: dict, action: Action,
               now: datetime, submitted: list[str], rejected: list[str],
               view: PositionView | None = None, purpose: str | None = None) -> str | None:
        """A marketable closing order for ``action.quantity`` of the position, through the risk
        gate (a risk-reducing order: recorded, never refused), with its decision written ahead
        in the same transaction as the order. Returns the client order id (None if this
        decision was handled already)."""
        reason = purpose or action.reason
        close_legs = _reversed(legs)
        natural = _natural(close_legs, quotes)
        limit = math.floor(natural * 100 + 1e-9) / 100  # marketable: the natural price
        cid = client_order_id(self.name, pos["position_id"], "close", reason, now.isoformat())
        if self.ledger.order(cid) is not None:
            return None
        self._check(RiskRequest(
            account=self.name, client_order_id=cid, intent_id=None, symbol=pos["symbol"],
            opening=False, quantity=action.quantity, max_loss=0.0, buying_power_needed=0.0,
            buying_power=self.broker.account().buying_power, open_positions=0, now=now,
            legs=close_legs, reduces_risk=True,
        ))  # closing orders reduce risk: recorded, never refused
        value = sum(leg.ratio * quotes[leg.contract].mid for leg in legs)
        dte = (legs[0].contract.expiry - now.astimezone(NEW_YORK).date()).days
        self.log.info("exit", position_id=pos["position_id"], reason=reason,
                      detail=action.detail.get("why"), quantity=action.quantity,
                      value=round(value, 4), limit=limit, dte=dte)
        decision_id = f"dec-{cid[3:]}"
        with self.ledger.transaction():
            if reason != "roll":
                self.ledger.record_decision(
                    decision_id=decision_id, account=self.name, symbol=pos["symbol"],
                    position_id=pos["position_id"], kind=reason, reason=_why(action),
                    detail=self._decision_detail(action, limit=limit,
                                                 natural=round(natural, 4)),
                    now=now, close_order_id=cid)
                state = self._state_after(pos, action, view)
                if state:
                    self.ledger.update_position_state(pos["position_id"], **state)
            else:
                decision_id = self._roll_decision_id(pos, now)
            self.ledger.record_intent_and_order(
                intent_id=None, account=self.name, symbol=pos["symbol"],
                strategy=pos["strategy"], decided_at=now, context={}, client_order_id=cid,
                position_id=pos["position_id"], opening=False, purpose=reason,
                legs=close_legs, quantity=action.quantity, limit_price=limit, now=now,
                decision_id=decision_id,
            )
        order = OrderRequest(cid, self.name, close_legs, action.quantity, limit, opening=False)
        self._submit(order, now, submitted, rejected)
        return cid

    # -- rolls: one decision, a closing order then an opening order -------------------------------

    def _roll_decision_id(self, pos: dict, now: datetime) -> str:
        return client_order_id(self.name, pos["position_id"], "roll", now.isoformat())

    def _plan_roll(self, pos: dict, legs: tuple[Leg, ...], quotes: dict, view: PositionView,
                   now: datetime) -> RollPlan | str:
        from thetadesk.models import Right

        rules = self.rules.management.roll
        tested = frozenset(
            Right.CALL if s.is_call else Right.PUT for s in view.shorts
            if math.isfinite(s.delta) and s.delta >= rules.when_short_delta - 1e-9)
        close_natural = _natural(_reversed(legs), quotes)
        try:
            chain = self.market.chain(pos["symbol"], now, min_dte=view.dte + 1,
                                      max_dte=max(2 * rules.target_dte, view.dte + 30))
        except DataError as exc:
            return f"no usable chain: {exc}"
        return choose_roll(chain, legs, pos["strategy"], close_natural, rules, tested)

    def _start_roll(self, pos: dict, legs: tuple[Leg, ...], quotes: dict, plan: RollPlan,
                    action: Action, now: datetime, submitted: list[str], rejected: list[str],
                    ) -> None:
        """Record the roll (one decision holding both orders), close the tested spread, and
        open the new one as soon as the close has filled (at once when it fills on submit)."""
        decision_id = self._roll_decision_id(pos, now)
        if self.ledger.decision(decision_id) is not None:
            return
        self.ledger.record_decision(
            decision_id=decision_id, account=self.name, symbol=pos["symbol"],
            position_id=pos["position_id"], kind="roll", reason=_why(action),
            detail=self._decision_detail(action, **plan.detail), now=now, status="open")
        self.log.info("roll", position_id=pos["position_id"], why=action.detail.get("why"),
                      **plan.detail)
        cid = self._close(pos, legs, quotes, action, now, submitted, rejected, purpose="roll")
        if cid is None:
            return
        self.ledger.update_decision(decision_id, now=now, close_order_id=cid)
        self._advance_roll(self.ledger.decision(decision_id), now, submitted, rejected)

    def _advance_rolls(self, now: datetime, submitted: list[str], rejected: list[str]) -> None:
        for decision in self.ledger.decisions(self.name, status="open", kind="roll"):
            self._advance_roll(decision, now, submitted, rejected)

    def _advance_roll(self, decision: dict, now: datetime, submitted: list[str],
                      rejected: list[str]) -> None:
        did = decision["decision_id"]
        close = self.ledger.order(decision["close_order_id"] or "")
        if close is None:
            self.ledger.update_decision(did, now=now, status="abandoned",
                                        note="its closing order was never written")
            return
        if decision["open_order_id"] is None:
            if (close["filled_quantity"] or 0) >= close["quantity"]:
                self._open_roll(decision, close, now, submitted, rejected)
            elif close["status"] in _DONE:
                self.ledger.update_decision(did, now=now, status="abandoned", note=(
                    f"the closing order ended {close['status']} with "
                    f"{close['filled_quantity'] or 0} of {close['quantity']} filled"))
                self.log.warning("roll_abandoned", decision_id=did, close=close["status"])
            return
        opened = self.ledger.order(decision["open_order_id"])
        if opened is None:
            return
        if (opened["filled_quantity"] or 0) >= opened["quantity"]:
            self.ledger.update_decision(did, now=now, status="done",
                                        new_position_id=opened["position_id"])
            self.log.info("roll_done", decision_id=did, new_position_id=opened["position_id"])
        elif opened["status"] in _DONE:
            filled = opened["filled_quantity"] or 0
            self.ledger.update_decision(
                did, now=now, status="done" if filled else "abandoned",
                new_position_id=opened["position_id"] if filled else None,
                note=f"the opening order ended {opened['status']} with {filled} of "
                     f"{opened['quantity']} filled")
            self._alert(Severity.WARNING, "roll_incomplete", did,
                        f"{self.name}: the roll of {decision['position_id']} closed it, but the "
                        f"new spread's order ended {opened['status']} ({filled} of "
                        f"{opened['quantity']} filled)", now)

    def _open_roll(self, decision: dict, close: dict, now: datetime, submitted: list[str],
                   rejected: list[str]) -> None:
        """The roll's second half: open the new spread (a new risk: the gate may refuse it,
        and then the roll ends as a close)."""
        did = decision["decision_id"]
        detail = json.loads(decision["detail"])
        old = self.ledger.position(decision["position_id"]) or {}
        legs = tuple(Leg(Contract.from_occ(text.split()[1]), int(text.split()[0]))
                     for text in detail["new_legs"])
        try:
            quotes = {leg.contract: self.market.quote(leg.contract, now) for leg in legs}
        except DataError as exc:
            self.log.warning("roll_open_waiting", decision_id=did, reason=str(exc))
            return
        spread = Spread(SpreadKind(old.get("strategy", close["symbol"])), legs)
        natural = spread.net_premium(quotes, at="natural")
        limit = math.floor(natural * 100 + 1e-9) / 100
        quantity = close["filled_quantity"]
        cid = client_order_id(self.name, did, "open", now.isoformat())
        refusal = None
        if limit <= 0:
            refusal = f"the new spread bids no credit now ({natural:.2f} at natural)"
        else:
            acct = self.broker.account()
            verdict = self._check(RiskRequest(
                account=self.name, client_order_id=cid, intent_id=f"roll:{did}",
                symbol=close["symbol"], opening=True, quantity=quantity,
                max_loss=quantity * spread.max_loss(limit),
                buying_power_needed=quantity * (spread.margin() - limit * spread.multiplier),
                buying_power=acct.buying_power, open_positions=self._open_count(), now=now,
                legs=legs, **self._marks(legs, now,
                                         {c.occ: q.mid for c, q in quotes.items()}),
            ))
            if not verdict.approved:
                refusal = f"the risk gate refused the new spread: {verdict.reason}"
                rejected.append(cid)
        if refusal is not None:
            self.ledger.update_decision(did, now=now, status="abandoned", note=refusal)
            self._alert(Severity.WARNING, "roll_refused", did,
                        f"{self.name}: {decision['position_id']} was closed to roll it, but "
                        f"{refusal}; the roll ends as a close", now)
            return
        context = {"quantity": quantity, "max_loss_per_spread": spread.max_loss(limit),
                   "max_profit_per_spread": spread.max_profit(limit), "decision_id": did,
                   "rolled_from": decision["position_id"], "rolls": (old.get("rolls") or 0) + 1,
                   "leg_mids": {c.occ: q.mid for c, q in quotes.items()}}
        if old.get("exit_rules"):  # the rolled spread keeps the position's own exit levels
            context["exits"] = json.loads(old["exit_rules"])
        with self.ledger.transaction():
            self.ledger.record_intent_and_order(
                intent_id=f"roll:{did}", account=self.name, symbol=close["symbol"],
                strategy=spread.kind.value, decided_at=now, context=context,
                client_order_id=cid, position_id=cid, opening=True, purpose="roll_open",
                legs=legs, quantity=quantity, limit_price=limit, now=now, decision_id=did)
            self.ledger.update_decision(did, now=now, open_order_id=cid)
        self._submit(OrderRequest(cid, self.name, legs, quantity, limit, opening=True), now,
                     submitted, rejected)
        self._advance_roll(self.ledger.decision(did), now, submitted, rejected)

    def _add(self, pos: dict, legs: tuple[Leg, ...], quotes: dict, action: Action,
             now: datetime, submitted: list[str], rejected: list[str]) -> None:
        """Repair: add ``action.quantity`` spreads to a winner, a new risk through the gate."""
        spread = Spread(SpreadKind(pos["strategy"]), legs)
        natural = spread.net_premium(quotes, at="natural")
        limit = math.floor(natural * 100 + 1e-9) / 100
        cid = client_order_id(self.name, pos["position_id"], "add", now.isoformat())
        if self.ledger.order(cid) is not None or self.fail_closed is not None:
            return
        if limit <= 0:
            self.log.info("repair_add_skipped", position_id=pos["position_id"],
                          reason=f"no credit at natural ({natural:.2f})")
            return
        acct = self.broker.account()
        verdict = self._check(RiskRequest(
            account=self.name, client_order_id=cid, intent_id=f"add:{cid}",
            symbol=pos["symbol"], opening=True, quantity=action.quantity,
            max_loss=action.quantity * spread.max_loss(limit),
            buying_power_needed=action.quantity * (spread.margin() - limit * spread.multiplier),
            buying_power=acct.buying_power, open_positions=self._open_count() - 1, now=now,
            legs=legs, adds_to=pos["position_id"],
            **self._marks(legs, now, {c.occ: q.mid for c, q in quotes.items()}),
        ))
        decision_id = f"dec-{cid[3:]}"
        detail = self._decision_detail(action, limit=limit, approved=verdict.approved,
                                       refused=verdict.reason)
        if not verdict.approved:
            rejected.append(cid)
            self.ledger.record_decision(
                decision_id=decision_id, account=self.name, symbol=pos["symbol"],
                position_id=pos["position_id"], kind="repair_add", reason=_why(action),
                detail=detail, now=now, status="abandoned")
            self.ledger.update_position_state(pos["position_id"], added=1)
            self.log.info("repair_add_refused", position_id=pos["position_id"],
                          check=verdict.check, reason=verdict.reason)
            return
        context = {"quantity": action.quantity, "max_loss_per_spread": spread.max_loss(limit),
                   "max_profit_per_spread": spread.max_profit(limit),
                   "decision_id": decision_id}
        with self.ledger.transaction():
            self.ledger.record_decision(
                decision_id=decision_id, account=self.name, symbol=pos["symbol"],
                position_id=pos["position_id"], kind="repair_add", reason=_why(action),
                detail=detail, now=now, open_order_id=cid)
            self.ledger.update_position_state(pos["position_id"], added=1)
            self.ledger.record_intent_and_order(
                intent_id=f"add:{cid}", account=self.name, symbol=pos["symbol"],
                strategy=pos["strategy"], decided_at=now, context=context,
                client_order_id=cid, position_id=pos["position_id"], opening=True,
                purpose="repair_add", legs=legs, quantity=action.quantity, limit_price=limit,
                now=now, decision_id=decision_id)
        self.log.info("repair_add", position_id=pos["position_id"], quantity=action.quantity,
                      limit=limit, why=action.detail.get("why"))
        self._submit(OrderRequest(cid, self.name, legs, action.quantity, limit, opening=True),
                     now, submitted, rejected)

    def _open_count(self) -> int:
        """Strategy positions and working orders (what max_open_positions counts; the hedge
        book is not counted)."""
        positions = sum(1 for p in self._open_positions() if not is_hedge(p))
        orders = sum(1 for o in self.ledger.orders(self.name, OPEN_STATUSES)
                     if not o["purpose"].startswith(HEDGE_PREFIX))
        return positions + orders

    # -- expiry and shares ------------------------------------------------------------------------

    def _settle_expired(self, now: datetime) -> None:
        """Close positions whose legs have expired from the broker's settlements, and book the
        shares that exercise and assignment delivered."""
        expired = []
        for pos in self._open_positions():
            legs = legs_from_json(pos["legs"])
            closes = [expiry_instant(leg.contract.expiry, leg.contract.underlying)
                      for leg in legs]
            if min(closes) <= now:
                expired.append((pos, legs, min(closes)))
        if not expired:
            return
        try:
            booked = self.broker.settlements(since=min(close for _, _, close in expired))
        except TemporaryError as exc:
            self.log.warning("settlements_unavailable", reason=str(exc))
            return
        by_occ: dict[str, Settlement] = {}
        for settlement in booked:
            by_occ.setdefault(settlement.contract.occ, settlement)
        for pos, legs, _ in expired:
            found = [by_occ.get(leg.contract.occ) for leg in legs]
            if any(s is not None and s.kind == "early_assignment" for s in found) and any(
                    s is None for s in found):
                self.fail_closed = (f"position {pos['position_id']} had a leg assigned early; "
                                    "it needs a decision this engine does not make")
                self._alert(Severity.CRITICAL, "early_assignment", pos["position_id"],
                            f"{self.name}: {self.fail_closed}; new entries halted", now)
                continue
            if any(s is None for s in found):
                self.log.info("settlement_pending", position_id=pos["position_id"])
                continue  # the broker has not booked the expiry yet
            self._book_settlement(pos, legs, found, now)

    def _book_settlement(self, pos: dict, legs: tuple[Leg, ...], found: list, now: datetime,
                         ) -> None:
        """One transaction: the settlements, the position closed at the legs' intrinsic value
        (net per share, > 0 received, like a closing fill), the shares it leaves."""
        quantity = pos["quantity"]
        exit_price = sum(leg.ratio * s.intrinsic for leg, s in zip(legs, found, strict=True))
        shares = sum(
            leg.ratio * quantity * leg.contract.multiplier * (1 if leg.contract.is_call else -1)
            for leg, s in zip(legs, found, strict=True)
            if s.kind in ("exercised", "assigned", "early_assignment")
        )
        kinds = sorted({s.kind for s in found})
        reason = "expired" if kinds == ["expired"] else "/".join(
            k for k in kinds if k != "expired")
        settled_at = max(s.time for s in found)
        with self.ledger.transaction():
            for settlement in found:
                self.ledger.record_settlement(account=self.name, settlement=settlement,
                                              position_id=pos["position_id"])
            self.ledger.close_position(
                pos["position_id"], quantity=quantity, exit_price=exit_price, commission=0.0,
                reason=reason, multiplier=legs[0].contract.multiplier, now=settled_at,
            )
            if shares:
                self.ledger.apply_shares(account=self.name, symbol=pos["symbol"],
                                         change=shares, price=found[0].underlying_price,
                                         commission=0.0, now=settled_at)
        self._closed += 1
        self.log.info("position_settled", position_id=pos["position_id"], reason=reason,
                      exit_price=round(exit_price, 4), shares=shares,
                      underlying_price=found[0].underlying_price)
        if shares:
            self._alert(Severity.WARNING, "assignment", pos["position_id"],
                        f"{self.name}: {pos['symbol']} position {pos['position_id']} "
                        f"{reason} at expiry: {shares:+d} shares at "
                        f"{found[0].underlying_price:.2f}, closing them", now)

    def _close_shares(self, now: datetime, submitted: list[str], rejected: list[str]) -> None:
        """Send a market order closing each share holding that has no closing order open: the
        shares assignment left, and under close-all the hedge book's too."""
        holdings = [(h, False) for h in self.ledger.share_positions(self.name)]
        if self._close_all is not None:
            holdings += [(h, True) for h in self.ledger.hedge_shares(self.name)]
        if not holdings:
            return
        working = {(o["symbol"], o["purpose"].startswith(HEDGE_PREFIX))
                   for o in self.ledger.orders(self.name, OPEN_STATUSES)
                   if o["instrument"] == "shares"}
        for held, hedge in holdings:
            symbol, quantity = held["symbol"], held["quantity"]
            if (symbol, hedge) in working:
                continue
            cid = client_order_id(self.name, "shares", symbol, quantity, now.isoformat(),
                                  *(("hedge",) if hedge else ()))
            if self.ledger.order(cid) is not None:
                continue
            order = ShareOrder(cid, self.name, symbol, -quantity)
            self._check(RiskRequest(
                account=self.name, client_order_id=cid, intent_id=None, symbol=symbol,
                opening=False, quantity=abs(quantity), max_loss=0.0, buying_power_needed=0.0,
                buying_power=self.broker.account().buying_power, open_positions=0, now=now,
                shares=-quantity,
            ))  # closing orders reduce risk: recorded, never refused
            self.ledger.record_intent_and_order(
                intent_id=None, account=self.name, symbol=symbol, strategy="shares",
                decided_at=now, context={}, client_order_id=cid,
                position_id=f"hedge-shares-{symbol}" if hedge else f"shares-{symbol}",
                opening=False, purpose="hedge_close_all" if hedge else "close_shares",
                legs=(), quantity=abs(quantity), limit_price=0.0, now=now,
                instrument="shares", side=order.side,
            )
            self.log.info("close_shares", symbol=symbol, quantity=-quantity,
                          client_order_id=cid)
            self._submit(order, now, submitted, rejected)

    # -- broker interaction ---------------------------------------------------------------------

    def _submit(self, order: OrderRequest | ShareOrder, now: datetime, submitted: list[str],
                rejected: list[str], intent: TradeIntent | None = None) -> None:
        cid = order.client_order_id
        try:
            result = self.broker.submit(order, now)
        except OrderRejected as exc:
            self.ledger.update_order(cid, status=OrderStatus.REJECTED.value, now=now,
                                     reason=str(exc), submitted=True)
            rejected.append(cid)
            self._alert(Severity.WARNING, "order_rejected", cid,
                        f"{self.name}: broker rejected {cid}: {exc}", now)
            return
        except (TemporaryError, AmbiguousOrderState, OSError) as exc:
            self.log.warning("submit_outcome_unknown", client_order_id=cid, reason=str(exc))
            if self.resolve(cid, now) is not None:
                submitted.append(cid)
            return
        self._submit_wall = self._wall()
        failpoints.hit("account.after_submit")
        submitted.append(cid)
        self._record_outcome(result, self.broker.fills(cid), now)
        self.log.info("submitted", client_order_id=cid, purpose="entry" if order.opening
                      else "exit", quantity=order.quantity, limit=order.limit_price,
                      status=result.status.value,
                      intent_id=None if intent is None else intent.intent_id)

    def _record_outcome(self, found: BrokerOrder, fills: Sequence[Fill], now: datetime) -> None:
        """The broker's state of an order and its fills, asked for first and then recorded in
        one transaction: one commit (not one per row) and the ledger's write lock never held
        across a broker call."""
        with self.ledger.transaction():
            self._sync(found, now)
            for fill in fills:
                self._apply_fill(fill, now)

    def _sync(self, found: BrokerOrder, now: datetime) -> None:
        self.ledger.update_order(
            found.client_order_id, status=found.status.value, now=now,
            broker_order_id=found.broker_order_id, reason=found.reason, submitted=True,
        )

    def _upkeep(self, order: dict, now: datetime) -> None:
        cid = order["client_order_id"]
        if order["status"] == "pending_submit":
            self.resolve(cid, now)
            return
        found = self.broker.get_order_by_client_id(cid)
        if found is None:
            return
        if found.status.is_open and order["opening"] and self._close_all is not None:
            found = self.broker.cancel(cid, now)
            self.log.info("entry_cancelled", client_order_id=cid, reason="close-all requested")
        elif found.status.is_open and order["opening"] and order.get("decision_id") and (
                self.ledger.decision(order["decision_id"]) or {}).get("kind") == LADDER:
            pass  # a working entry: its steps and its end are the ladder's (_advance_ladders)
        elif found.status.is_open and order["opening"]:
            self._order_age[cid] += 1
            if self._order_age[cid] >= ENTRY_TIMEOUT_TICKS:
                found = self.broker.cancel(cid, now)
                self.log.info("entry_cancelled", client_order_id=cid,
                              reason=f"unfilled after {ENTRY_TIMEOUT_TICKS} ticks")
        self._sync(found, now)

    def _apply_fill(self, fill: Fill, now: datetime) -> None:
        order = self.ledger.order(fill.client_order_id)
        if order is None:
            self._alert(Severity.WARNING, "unknown_fill", fill.exec_id,
                        f"{self.name}: fill {fill.exec_id} for an order the ledger does not "
                        f"know ({fill.client_order_id})", now)
            return
        if order["instrument"] == "shares":
            self._apply_share_fill(order, fill, now)
            return
        legs = legs_from_json(order["legs"])
        multiplier = legs[0].contract.multiplier
        with self.ledger.transaction():
            if not self._record_order_fill(order, fill, now):
                return
            if order["opening"]:
                intent = (self.ledger.intent_for_order(fill.client_order_id)
                          or self.ledger.intent_for_order(order["position_id"]) or {})
                context = json.loads(intent.get("context", "{}"))
                max_loss = context.get("max_loss_per_spread", math.nan)
                max_profit = context.get("max_profit_per_spread", math.nan)
                if context.get("ladder") and intent.get("strategy") in _KINDS:
                    # A working entry fills at whichever step it reached: its own price.
                    spread = Spread(SpreadKind(intent["strategy"]), legs)
                    max_loss, max_profit = (spread.max_loss(fill.price),
                                            spread.max_profit(fill.price))
                self.ledger.open_position(
                    position_id=order["position_id"], account=self.name, symbol=order["symbol"],
                    strategy=intent.get("strategy", "unknown"), legs=legs, quantity=fill.quantity,
                    entry_price=fill.price, max_loss_per_spread=max_loss,
                    max_profit_per_spread=max_profit, commission=fill.commission, now=fill.time,
                    exit_rules=context.get("exits") or None,
                )
                if context.get("rolled_from"):
                    self.ledger.update_position_state(
                        order["position_id"], rolled_from=context["rolled_from"],
                        rolls=int(context.get("rolls", 1)))
                self._opened += 1
            else:
                self.ledger.close_position(
                    order["position_id"], quantity=fill.quantity, exit_price=fill.price,
                    commission=fill.commission, reason=order["purpose"], multiplier=multiplier,
                    now=fill.time,
                )
                if self.ledger.position(order["position_id"])["status"] == "closed":
                    self._closed += 1
        self.log.info("fill", exec_id=fill.exec_id, client_order_id=fill.client_order_id,
                      quantity=fill.quantity, price=fill.price, commission=fill.commission)

    def _record_order_fill(self, order: dict, fill: Fill, now: datetime) -> bool:
        """Inside a ledger transaction: the execution (False if its exec id is already
        recorded) and the order's filled quantity and status."""
        if not self.ledger.record_fill(fill, self.name):
            return False
        filled = sum(f["quantity"] for f in self.ledger.fills(
            client_order_id=fill.client_order_id))
        status = (OrderStatus.FILLED if filled >= order["quantity"]
                  else OrderStatus.PARTIALLY_FILLED)
        self.ledger.update_order(fill.client_order_id, status=status.value, now=now,
                                 filled_quantity=filled, avg_fill_price=fill.price)
        return True

    def _apply_share_fill(self, order: dict, fill: Fill, now: datetime) -> None:
        sign = 1 if order["side"] == "buy" else -1
        with self.ledger.transaction():
            if not self._record_order_fill(order, fill, now):
                return
            pnl = self.ledger.apply_shares(account=self.name, symbol=order["symbol"],
                                           change=sign * fill.quantity, price=fill.price,
                                           commission=fill.commission, now=fill.time,
                                           hedge=order["purpose"].startswith(HEDGE_PREFIX))
        self.log.info("share_fill", exec_id=fill.exec_id, client_order_id=fill.client_order_id,
                      symbol=order["symbol"], quantity=sign * fill.quantity, price=fill.price,
                      commission=fill.commission, realized_pnl=round(pnl, 2))

    def _alert(self, severity: Severity, kind: str, key: str, message: str,
               now: datetime) -> None:
        self.log.warning(kind, message=message)
        self._alerts.append(Alert(severity, kind, key, message, now))

