"""The risk gate every order passes, and the breakers it enforces.

State lives in the ledger (verdicts, breaker trips), so a restarted risk actor is the same gate.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime

import numpy as np

from thetadesk.config import ALL_ACCOUNTS
from thetadesk.errors import DataError
from thetadesk.logging import get_logger
from thetadesk.messages import AccountTick, Alert, RiskRequest, RiskVerdict
from thetadesk.models import Contract
from thetadesk.risk.breakers import (
    BreakerBoard,
    BreakerLimits,
    BreakerReading,
    aggregate_tick,
    session_of,
)
from thetadesk.risk.gate import (
    Exposure,
    PortfolioLimits,
    SnapshotBuilder,
    add_legs,
    check_portfolio,
    exposure,
)
from thetadesk.risk.greeks import estimate_beta
from thetadesk.risk.limits import Rejection, RiskLimits, pre_trade
from thetadesk.risk.portfolio import Portfolio
from thetadesk.risk.scenarios import DEFAULT_SCENARIOS, StressScenario, stress_table
from thetadesk.store import HEDGE_PREFIX, Ledger, legs_from_json, verdict_request

_OPEN = ("pending_submit", "new", "partially_filled")
RISK_FIGURES = "risk_figures:"  # + account: the run-state key of its latest measured figures


def _reduces(figures: dict) -> bool:
    """Whether the order lowers the book's 1-day 99% VaR and does not raise its 99% ES."""
    before, after = figures["before"], figures["after"]
    if None in (before.get("var99"), after.get("var99"), before.get("es99"), after.get("es99")):
        return False
    return after["var99"] < before["var99"] - 1e-6 and after["es99"] <= before["es99"] + 1e-6


def limits_from_config(config) -> dict[str, RiskLimits]:
    """Each configured account's limits."""
    return {
        a.name: RiskLimits(a.risk.max_loss_per_trade, a.risk.max_open_positions,
                           a.risk.min_buying_power, a.risk.daily_loss_limit)
        for a in config.accounts
    }


class RiskEngine:
    """The gate. ``portfolio_limits`` (per account) add the Greeks, VaR/ES, total-loss and
    per-symbol limits of ``thetadesk.risk.gate``; those that need prices use ``snapshots`` to
    build the account's portfolio from the ledger and the market."""

    def __init__(self, ledger: Ledger, limits: Mapping[str, RiskLimits],
                 portfolio_limits: Mapping[str, PortfolioLimits] | None = None,
                 snapshots: SnapshotBuilder | None = None,
                 beta_window: int = 60,
                 stress: Sequence[StressScenario] = DEFAULT_SCENARIOS, *,
                 breakers: Mapping[str, BreakerLimits] | None = None,
                 global_limits: PortfolioLimits | None = None) -> None:
        self.ledger = ledger
        self.limits = dict(limits)
        # Limits over every account's book together (config global_risk), on top of each
        # account's own; the global breaker is the board's ALL_ACCOUNTS entry.
        self.global_limits = global_limits
        self._ticks: dict[str, AccountTick] = {}  # each account's latest tick (global breaker)
        # Circuit breakers (thetadesk.risk.breakers); without config, the daily loss breaker.
        self.breakers = BreakerBoard(ledger, breakers if breakers is not None else {
            name: BreakerLimits(daily_loss_limit=lim.daily_loss_limit)
            for name, lim in self.limits.items()})
        self.portfolio_limits = dict(portfolio_limits or {})
        self.snapshots = snapshots
        self.latest: dict[str, tuple[datetime, Exposure]] = {}  # the last measured book
        self.log = get_logger("risk")
        self.beta_window = beta_window
        self.stress = tuple(stress)
        self._betas: tuple[date, dict[str, float]] | None = None

    def check(self, req: RiskRequest, record: bool = True) -> RiskVerdict:
        """Apply the breakers and the pre-trade checks; record the verdict (or, with
        ``record=False``, hand it back with its request for the caller to record, as
        ``check_many``); return it."""
        return self.check_many((req,), record)[0]

    def check_many(self, requests: Sequence[RiskRequest],
                   record: bool = True) -> list[RiskVerdict]:
        """``check`` for each request in order, as if each approved one before it had been
        placed: a request sees the books with those orders added (contracts, max loss, one
        more position per new one) and, for its own account, their buying power used and
        their positions counted. Its ``buying_power`` and ``open_positions`` are the
        account's before the whole batch. The verdicts are recorded in one transaction (the
        request as checked, with the batch's adjustments). For a tick's strategy entries:
        hedges and exits are checked one at a time.

        ``record=False``: nothing is written; each verdict carries its request as checked
        (``RiskVerdict.request``) for the caller to record with the order it approves, in the
        transaction that writes the order ahead. The account actors do so: the gate, which
        every account waits for in turn, then never waits for the ledger's write lock."""
        batch = _Batch()
        rows = []
        verdicts = []
        for req in requests:
            req = batch.adjust(req)
            verdict, figures = self._decide(req, batch)
            request = req.as_dict()
            if figures is not None:
                request["figures"] = figures
            rows.append(dict(
                account=req.account, client_order_id=req.client_order_id,
                intent_id=req.intent_id, approved=verdict.approved, check_name=verdict.check,
                reason=verdict.reason, request=request, now=req.now))
            if verdict.approved:
                batch.add(req)
            verdicts.append(verdict)
        if not record:
            return [replace(v, request=verdict_request(row["request"]))
                    for v, row in zip(verdicts, rows, strict=True)]
        if rows:
            with self.ledger.transaction():
                for row in rows:
                    self.ledger.record_verdict(**row)
        return verdicts

    def _decide(self, req: RiskRequest, batch: _Batch) -> tuple[RiskVerdict, dict | None]:
        limits = self.limits.get(req.account)
        figures = None
        if limits is None:
            return RiskVerdict(False, "unknown_account",
                               f"{req.account}: no risk limits configured for this account"), None
        plimits = self.portfolio_limits.get(req.account)
        rejection = self.breakers.blocking(req)
        if rejection is None and ALL_ACCOUNTS in self.breakers.limits:
            rejection = self.breakers.blocking(replace(req, account=ALL_ACCOUNTS))
        if (rejection is not None and plimits is not None
                and self.breakers.blocking(req, measured_reduction=True) is None):
            # A REDUCING breaker (or, for a hedge, a HALTED one) stands in the way: an
            # order the measures show to reduce the book's risk (99% VaR lower, ES no
            # higher) may still go through.
            shown, figures = self._portfolio_check(req, plimits, measure=True, batch=batch)
            if figures is not None and _reduces(figures):
                rejection = shown
        if rejection is None:
            rejection = pre_trade(req, limits)
        if rejection is None and req.opening and plimits is not None and figures is None:
            rejection, figures = self._portfolio_check(req, plimits, batch=batch)
        if rejection is None and req.opening and self.global_limits is not None:
            rejection, whole = self._portfolio_check(req, self.global_limits,
                                                     every_account=True, batch=batch)
            figures = {**(figures or {}), "global": whole}
        verdict = (RiskVerdict(True) if rejection is None
                   else RiskVerdict(False, rejection.check, rejection.reason))
        return verdict, figures

    # -- portfolio limits -----------------------------------------------------------------------

    def _book(self, account: str) -> tuple[dict[Contract, int], dict[str, int], float,
                                           dict[str, int]]:
        """The account's book from the ledger: option contracts held or being bought by open
        opening orders, shares, the max loss of both, and positions plus opening orders per
        underlying."""
        options: dict[Contract, int] = defaultdict(int)
        counts: dict[str, int] = defaultdict(int)
        total = 0.0
        held: dict[str, bool] = {}
        # The hedge book (strategies and purposes "hedge..."): its contracts and shares are in
        # the measured book; its premiums are not "max loss" and it is not a position count.
        for pos in self.ledger.positions(account):
            held[pos["position_id"]] = True
            for leg in legs_from_json(pos["legs"]):
                options[leg.contract] += leg.ratio * pos["quantity"]
            if pos["strategy"].startswith(HEDGE_PREFIX):
                continue
            if math.isfinite(pos["max_loss_per_spread"]):
                total += pos["max_loss_per_spread"] * pos["quantity"]
            counts[pos["symbol"]] += 1
        for order in self.ledger.orders(account, _OPEN):
            if not order["opening"] or order["instrument"] != "options":
                continue
            remaining = order["quantity"] - order["filled_quantity"]
            for leg in legs_from_json(order["legs"]):
                options[leg.contract] += leg.ratio * remaining
            if order["purpose"].startswith(HEDGE_PREFIX):
                continue
            # A working entry's later steps share the first order's intent (its position id).
            intent = (self.ledger.intent_for_order(order["client_order_id"])
                      or self.ledger.intent_for_order(order["position_id"]) or {})
            loss = json.loads(intent.get("context", "{}")).get("max_loss_per_spread")
            if isinstance(loss, int | float) and math.isfinite(loss):
                total += loss * remaining
            if order["position_id"] == order["client_order_id"] or (
                    order["position_id"] == order["decision_id"] and not held.get(
                        order["position_id"])):
                # a new position (a working entry's later step too, until a part has filled)
                counts[order["symbol"]] += 1
        return dict(options), self.ledger.all_shares(account), total, dict(counts)

    def betas(self, now: datetime) -> dict[str, float]:
        """Each underlying's beta against SPY by OLS over the last ``beta_window`` daily log
        returns of the closes the risk actor recorded (sessions both have); underlyings with
        fewer returns are left out (the gate then uses the model-implied beta). Cached per
        session."""
        session = session_of(now)
        if self._betas is not None and self._betas[0] == session:
            return self._betas[1]
        found: dict[str, float] = {}
        if self.snapshots is not None and "SPY" in self.snapshots.symbols:
            spy = dict(self.ledger.closes("SPY", self.beta_window + 1))
            for symbol in self.snapshots.symbols:
                if symbol == "SPY":
                    continue
                own = dict(self.ledger.closes(symbol, self.beta_window + 1))
                days = sorted(set(own) & set(spy))
                if len(days) < self.beta_window + 1:
                    continue
                a = np.diff(np.log([own[d] for d in days]))
                b = np.diff(np.log([spy[d] for d in days]))
                try:
                    found[symbol] = estimate_beta(a, b, self.beta_window)
                except DataError:
                    continue
        self._betas = (session, found)
        return found

    def refresh(self, now: datetime, monte_carlo: Callable[[Portfolio], dict] | None = None,
                at_close: bool = False) -> dict[str, dict]:
        """Measure every account's current book and keep the figures in the ledger (run state
        ``risk_figures:<account>``, JSON) for the supervisor's summary and, later, the
        dashboard. ``monte_carlo``, if given, adds its figures for a non-empty book;
        ``at_close`` records the underlyings' closes (for betas) and adds the stress table."""
        if at_close and self.snapshots is not None:
            for symbol in sorted(self.snapshots.symbols):
                try:
                    price = float(self.snapshots.market.spot(symbol, now))
                except DataError as exc:
                    self.log.warning("close_unavailable", symbol=symbol, reason=str(exc))
                    continue
                self.ledger.record_close(symbol, session_of(now), price)
            self._betas = None
        betas = self.betas(now)
        out = {}
        for account in sorted(self.limits):
            figures = self._figures(self._book(account), now, at_close, monte_carlo)
            figures["betas"] = {k: round(v, 4) for k, v in betas.items()}
            self.ledger.set_state(RISK_FIGURES + account, json.dumps(figures, sort_keys=True))
            out[account] = figures
        if len(self.limits) > 1:  # the accounts together (the global limits' measures)
            out[ALL_ACCOUNTS] = self._figures(self._book_of_all(), now, at_close)
            self.ledger.set_state(RISK_FIGURES + ALL_ACCOUNTS,
                                  json.dumps(out[ALL_ACCOUNTS], sort_keys=True))
        return out

    def _figures(self, book: tuple[dict[Contract, int], dict[str, int], float, dict[str, int]],
                 now: datetime, at_close: bool,
                 monte_carlo: Callable[[Portfolio], dict] | None = None) -> dict:
        """The measured figures of one book (``_book``'s four parts) for ``refresh``."""
        options, shares, total, counts = book
        figures: dict = {"at": now.isoformat()}
        portfolio = None
        if self.snapshots is not None:
            try:
                portfolio = self.snapshots.build(options, shares, now)
            except DataError as exc:
                figures["error"] = f"cannot price the book: {exc}"
        figures.update(exposure(portfolio, total, counts, self.betas(now)).as_dict())
        if portfolio is not None and portfolio.holdings:
            if monte_carlo is not None:
                figures["monte_carlo"] = monte_carlo(portfolio)
            if at_close:
                figures["stress"] = [[name, round(pnl, 2)]
                                     for name, pnl in stress_table(portfolio, self.stress)]
        return figures

    def figures(self, account: str) -> dict | None:
        """The latest figures ``refresh`` kept for ``account``."""
        text = self.ledger.get_state(RISK_FIGURES + account)
        return None if text is None else json.loads(text)

    def exposure(self, account: str, now: datetime) -> Exposure:
        """The account's current exposure (measured if a market is at hand)."""
        options, shares, total, counts = self._book(account)
        portfolio = None if self.snapshots is None else self.snapshots.build(options, shares, now)
        return exposure(portfolio, total, counts, self.betas(now))

    def _book_of_all(self) -> tuple[dict[Contract, int], dict[str, int], float, dict[str, int]]:
        """Every configured account's book added together (``_book``'s four parts)."""
        options: dict[Contract, int] = defaultdict(int)
        shares: dict[str, int] = defaultdict(int)
        counts: dict[str, int] = defaultdict(int)
        total = 0.0
        for account in sorted(self.limits):
            o, sh, t, c = self._book(account)
            for contract, q in o.items():
                options[contract] += q
            for symbol, q in sh.items():
                shares[symbol] += q
            for symbol, q in c.items():
                counts[symbol] += q
            total += t
        return dict(options), dict(shares), total, dict(counts)

    def _portfolio_check(self, req: RiskRequest, limits: PortfolioLimits,
                         measure: bool = False, every_account: bool = False,
                         batch: _Batch | None = None,
                         ) -> tuple[Rejection | None, dict | None]:
        """The first portfolio limit the order breaks (or None) and the figures before and
        after it; ``measure`` prices the book even if no limit needs it. ``every_account``:
        the book is every account's together (the global limits, check names ``global_...``).
        ``batch``: the orders approved before this one in a ``check_many`` (in the book)."""
        batch = batch if batch is not None else _Batch()
        if every_account:
            book = batch.book(None, self._book_of_all)
            rejection, figures = self._measured_check(req, limits, measure, book,
                                                      "all accounts")
            if rejection is not None:
                rejection = Rejection(f"global_{rejection.check}", rejection.reason)
            return rejection, figures
        book = batch.book(req.account, lambda: self._book(req.account))
        return self._measured_check(req, limits, measure, book, req.account)

    def _measured_check(self, req: RiskRequest, limits: PortfolioLimits, measure: bool,
                        book: tuple[dict[Contract, int], dict[str, int], float, dict[str, int]],
                        who: str) -> tuple[Rejection | None, dict | None]:
        options, shares, total, counts = book
        after_counts = dict(counts)
        if req.legs and req.adds_to is None and not req.reduces_risk:
            after_counts[req.symbol] = after_counts.get(req.symbol, 0) + 1
        before_p = after_p = None
        if limits.needs_measures or measure:
            if self.snapshots is None:
                return Rejection("risk_data", f"{who}: no market data to measure the "
                                 "portfolio against its limits"), None
            after_shares = dict(shares)
            if req.shares:
                after_shares[req.symbol] = after_shares.get(req.symbol, 0) + req.shares
            try:
                before_p, after_p = self.snapshots.build_many(
                    [(options, shares),
                     (add_legs(options, req.legs, req.quantity), after_shares)], req.now,
                    dict(req.marks), dict(req.spots))
            except DataError as exc:
                return Rejection("risk_data", f"{who}: cannot measure the portfolio "
                                 f"with this order: {exc}"), None
        betas = self.betas(req.now)
        after = exposure(after_p, total + req.max_loss, after_counts, betas)
        figures = {"after": after.as_dict()}
        # Within every limit, the book before the order does not matter (a limit refuses only
        # what ends beyond it), so it is measured only when needed: beyond a limit, or asked.
        if not measure and check_portfolio(who, req.symbol, limits,
                                           Exposure(0.0, {}), after) is None:
            return None, figures
        before = exposure(before_p, total, counts, betas)
        if who == req.account:
            self.latest[req.account] = (req.now, before)
        figures["before"] = before.as_dict()
        return check_portfolio(who, req.symbol, limits, before, after), figures

    def update(self, now: datetime, ticks: Iterable[AccountTick]) -> list[Alert]:
        """Evaluate the breakers on the accounts' latest state: a critical alert per new trip, a
        warning per breaker newly REDUCING (recorded, so a restarted engine does not repeat)."""
        ticks = list(ticks)
        if ALL_ACCOUNTS in self.breakers.limits:
            session = session_of(now)
            for tick in ticks:
                self._ticks[tick.account] = tick
            # The global breaker reads the accounts' day together: the latest tick this
            # session of each account that reported one (an isolated account's last; after a
            # restart of the risk actor, those of the round at hand).
            latest = [t for a in self.limits if (t := self._ticks.get(a)) is not None
                      and session_of(t.now) == session]
            if latest:
                ticks.append(aggregate_tick(latest, now))
        return self.breakers.evaluate(now, ticks)

    def halt(self, account: str, by: str, now: datetime,
             reason: str = "entries halted by hand") -> bool:
        """A person halts the account's new entries (the ``manual_halt`` breaker); False if it
        was halted by hand already."""
        return self.breakers.halt(account, by=by, now=now, reason=reason)

    def reset_breaker(self, account: str, name: str, by: str, now: datetime,
                      reason: str = "reset by hand", restart_counts: bool = False) -> bool:
        """A person clears a tripped (or reducing) breaker; False if it was not set (unless
        ``restart_counts``: ``BreakerBoard.reset``)."""
        return self.breakers.reset(account, name, by=by, now=now, reason=reason,
                                   restart_counts=restart_counts)

    def breaker_states(self, account: str, now: datetime) -> dict[str, BreakerReading]:
        """Each breaker's state (active, reducing, halted) for the account at ``now``."""
        return self.breakers.states(account, now)


Book = tuple[dict[Contract, int], dict[str, int], float, dict[str, int]]


class _Batch:
    """The orders ``check_many`` approved so far, and the books they change: each book read
    from the ledger once per batch (per account, and every account's together), with the
    approved orders added on top."""

    def __init__(self) -> None:
        self.approved: list[RiskRequest] = []
        self._books: dict[str | None, Book] = {}
        self._added: dict[str | None, int] = {}  # approved orders already in each cached book

    def adjust(self, req: RiskRequest) -> RiskRequest:
        """``req`` with its account's approved orders' buying power and positions counted, and
        their marks known (the book it is measured against holds their contracts)."""
        mine = [r for r in self.approved if r.account == req.account]
        if not mine:
            return req
        marks = dict(m for r in mine for m in r.marks)
        marks.update(req.marks)
        spots = dict(s for r in mine for s in r.spots)
        spots.update(req.spots)
        return replace(
            req, buying_power=req.buying_power - sum(r.buying_power_needed for r in mine),
            open_positions=req.open_positions + sum(1 for r in mine if _new_position(r)),
            marks=tuple(sorted(marks.items())), spots=tuple(sorted(spots.items())))

    def add(self, req: RiskRequest) -> None:
        self.approved.append(req)

    def book(self, account: str | None, read: Callable[[], Book]) -> Book:
        """The book of ``account`` (None: every account's) with the approved orders in it."""
        if account not in self._books:
            self._books[account] = read()
            self._added[account] = 0
        options, shares, total, counts = self._books[account]
        fresh = [r for r in self.approved[self._added[account]:]
                 if account is None or r.account == account]
        if fresh:
            options, shares, counts = dict(options), dict(shares), dict(counts)
            for r in fresh:
                options = add_legs(options, r.legs, r.quantity)
                if r.shares:
                    shares[r.symbol] = shares.get(r.symbol, 0) + r.shares
                if r.opening and not r.reduces_risk:
                    total += r.max_loss
                if _new_position(r):
                    counts[r.symbol] = counts.get(r.symbol, 0) + 1
            self._books[account] = (options, shares, total, counts)
        self._added[account] = len(self.approved)
        return self._books[account]


def _new_position(req: RiskRequest) -> bool:
    """Whether an approved order opens a position that counts (what ``_book`` counts for an
    open opening order: a strategy's new position, not a hedge, not an addition)."""
    return bool(req.opening and req.legs and req.adds_to is None and not req.reduces_risk)
