"""Circuit breakers: pure decisions over an account's state, and the board that persists them.

Six breakers, each a pure function of its inputs that returns a reason with the numbers in it
(or None), evaluated at two levels: the full limit (HALTED) and ``reducing_at`` times the limit
(REDUCING; rounded down, at least 1, for counts):

- ``daily_loss``: the tick's day P&L against ``risk.daily_loss_limit``, dollars. Default reset:
  next session.
- ``drawdown``: peak equity minus the tick's equity against ``drawdown.limit``, dollars.
  Default reset: manual.
- ``consecutive_losses``: closed positions' realized P&L, most recent first, closed after the
  last reset: losses in a row against ``consecutive_losses.limit``. Default reset: manual.
- ``rejection_rate``: orders the broker rejected among the last ``window`` orders sent to it
  (since the last reset), once at least ``min_orders`` were sent, against ``limit`` (a
  fraction). Risk-gate refusals do not count (a halt would feed itself). Default: manual.
- ``stale_data``: the tick's ``data_age_s``, seconds the account has gone without usable quotes
  for a position it holds (counted within the session), against ``limit_s``. Default reset:
  next session.
- ``restart_storm``: actor restarts (``actor_events`` of kind restarted or recreated, any actor,
  since the last reset) within ``window_minutes`` of simulated/clock time, against ``limit``;
  it applies to every configured account. Default reset: manual.
- ``manual_halt``: a person halted new entries (Telegram ``/stop`` or ``/closeall``;
  ``BreakerBoard.halt``). Nothing evaluates it and it has no limit; it holds until a person
  resets it (``/start``), across restarts like every trip.

Peak equity (drawdown) is the highest of the ``daily`` table's opening and closing equities of
past sessions, today's opening equity and the tick's equity; after a manual reset only sessions
after the reset's session count (the peak restarts from the equity of the moment). A reset
breaker whose input is still beyond its limit (a daily loss, stale data) trips again at the next
update: raise the limit in the config instead.

States, per account and breaker, derived from the ``breaker_events`` ledger table:

- ACTIVE: no trip, no warning. Every order the other checks allow passes.
- REDUCING: the warning level was reached this session. The account may not add risk: opening
  orders are refused (check name: the breaker's) unless the request says it reduces risk
  (``RiskRequest.reduces_risk``, a hedge); closing orders pass. It lasts until the end of the
  session (it is not re-checked downwards), a reset by a person, or a trip. One warning alert.
- HALTED: the limit was reached. Every opening order is refused, hedges included; closing
  orders (and cancels, which never reach the gate) pass. It lasts until a person resets it
  (``BreakerBoard.reset``), or, when the breaker's ``auto_reset`` is ``next_session``, until the
  next trading day. One critical alert per trip; persisted, so a restart neither clears it nor
  alerts again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from thetadesk.chain import NEW_YORK
from thetadesk.config import ALL_ACCOUNTS
from thetadesk.messages import AccountTick, Alert, RiskRequest, Severity
from thetadesk.risk.limits import Rejection, RiskLimits

DAILY_LOSS = "daily_loss"
DRAWDOWN = "drawdown"
CONSECUTIVE_LOSSES = "consecutive_losses"
REJECTION_RATE = "rejection_rate"
STALE_DATA = "stale_data"
RESTART_STORM = "restart_storm"
MANUAL_HALT = "manual_halt"
NAMES = (DAILY_LOSS, DRAWDOWN, CONSECUTIVE_LOSSES, REJECTION_RATE, STALE_DATA, RESTART_STORM,
         MANUAL_HALT)
LABELS = {name: name.replace("_", " ") for name in NAMES}
NEXT_SESSION = "next_session"
MANUAL = "manual"
RESTART_KINDS = ("restarted", "recreated")  # what the supervisor records in actor_events


class State(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


# -- the decisions --------------------------------------------------------------------------------


def daily_loss_tripped(day_pnl: float, limit: float) -> str | None:
    """A reason if the day's P&L (dollars) has reached the loss limit, else None."""
    if day_pnl <= -limit:
        return f"day P&L ${day_pnl:,.2f} reached the ${limit:,.2f} daily loss limit"
    return None


def drawdown_tripped(equity: float, peak: float, limit: float) -> str | None:
    """A reason if equity is ``limit`` dollars or more below the peak equity, else None."""
    drawdown = peak - equity
    if drawdown >= limit:
        return (f"equity ${equity:,.2f} is ${drawdown:,.2f} below the ${peak:,.2f} peak, "
                f"at or beyond the ${limit:,.2f} drawdown limit")
    return None


def consecutive_losses_tripped(pnls: Sequence[float], limit: int) -> str | None:
    """A reason if the first ``limit`` realized P&Ls (dollars, most recent first) are all
    losses, else None."""
    streak = 0
    for pnl in pnls:
        if pnl >= 0:
            break
        streak += 1
    if streak >= limit:
        lost = sum(pnls[:streak])
        return (f"{streak} losing trades in a row (${lost:,.2f} in all), the limit is {limit}")
    return None


def rejection_rate_tripped(rejected: int, sent: int, limit: float, min_orders: int,
                           ) -> str | None:
    """A reason if ``rejected`` of the ``sent`` orders is a share of at least ``limit`` (a
    fraction) and at least ``min_orders`` were sent, else None."""
    if sent < min_orders or sent == 0:
        return None
    rate = rejected / sent
    if rate >= limit:
        return (f"the broker rejected {rejected} of the last {sent} orders ({rate:.0%}), "
                f"at or above the {limit:.0%} limit")
    return None


def stale_data_tripped(age_s: float | None, limit_s: float) -> str | None:
    """A reason if the account has gone ``limit_s`` seconds or more without usable quotes for
    the positions it holds, else None (also when the age is unknown)."""
    if age_s is not None and age_s >= limit_s:
        return (f"no usable quotes for {age_s / 60:,.1f} minutes, the limit is "
                f"{limit_s / 60:,.1f} minutes")
    return None


def restart_storm_tripped(restarts: Sequence[str], window_s: float, limit: int) -> str | None:
    """A reason if ``restarts`` (the actors restarted within the window) number ``limit`` or
    more, else None."""
    if len(restarts) >= limit:
        actors = ", ".join(sorted(set(restarts)))
        return (f"{len(restarts)} actor restarts in {window_s / 60:,.0f} minutes ({actors}), "
                f"the limit is {limit}")
    return None


def _who(account: str) -> str:
    return "all accounts" if account == ALL_ACCOUNTS else account


def halted(account: str, reason: str, name: str = DAILY_LOSS) -> Rejection:
    """``account`` ALL_ACCOUNTS: the global breaker (check name ``global_<name>``)."""
    check = f"global_{name}" if account == ALL_ACCOUNTS else name
    return Rejection(
        check, f"{_who(account)}: new entries halted by the {LABELS[name]} breaker ({reason})"
    )


def reducing(account: str, reason: str, name: str) -> Rejection:
    check = f"global_{name}" if account == ALL_ACCOUNTS else name
    return Rejection(
        check, f"{_who(account)}: the {LABELS[name]} breaker is reducing ({reason}); only "
        "orders that reduce risk pass"
    )


def aggregate_tick(ticks: Iterable[AccountTick], now: datetime) -> AccountTick:
    """The accounts' ticks added together, as the ALL_ACCOUNTS tick the global breaker reads
    (money summed; no data age: the stale-data breaker is per account)."""
    ticks = list(ticks)
    return AccountTick(
        ALL_ACCOUNTS, now, equity=sum(t.equity for t in ticks), cash=sum(t.cash for t in ticks),
        buying_power=sum(t.buying_power for t in ticks),
        day_pnl=sum(t.day_pnl for t in ticks),
        open_positions=sum(t.open_positions for t in ticks),
        opened=sum(t.opened for t in ticks), closed=sum(t.closed for t in ticks))


# -- limits ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerLimits:
    """One account's breakers. A limit of None turns that breaker off; ``reducing_at`` None
    turns the REDUCING level off. Money in dollars, rates as fractions."""

    daily_loss_limit: float | None = None
    drawdown_limit: float | None = None
    consecutive_losses: int | None = None
    rejection_rate: float | None = None
    rejection_window: int = 20
    rejection_min_orders: int = 5
    stale_data_s: float | None = None
    restart_storm: int | None = None
    restart_window_s: float = 1800.0
    reducing_at: float | None = None
    next_session: frozenset[str] = field(default_factory=lambda: frozenset({DAILY_LOSS}))

    def limit(self, name: str) -> float | None:
        return {DAILY_LOSS: self.daily_loss_limit, DRAWDOWN: self.drawdown_limit,
                CONSECUTIVE_LOSSES: self.consecutive_losses, REJECTION_RATE: self.rejection_rate,
                STALE_DATA: self.stale_data_s, RESTART_STORM: self.restart_storm,
                MANUAL_HALT: None}[name]

    def levels(self, name: str) -> tuple[float, float | None] | None:
        """(trip level, reducing level or None) of a breaker; None if it is off."""
        limit = self.limit(name)
        if limit is None:
            return None
        if self.reducing_at is None:
            return limit, None
        level = limit * self.reducing_at
        if name in (CONSECUTIVE_LOSSES, RESTART_STORM):
            level = max(1, math.floor(level))
        return limit, (level if level < limit else None)


def breaker_limits_from_config(config) -> dict[str, BreakerLimits]:
    """Each configured account's breakers (``accounts[].breakers``; the daily loss limit is
    ``accounts[].risk.daily_loss_limit``), and under ALL_ACCOUNTS the global breaker
    (``global_risk.daily_loss_limit``) when one is set."""
    out = {}
    g = config.global_risk
    if g.daily_loss_limit is not None:
        out[ALL_ACCOUNTS] = BreakerLimits(daily_loss_limit=g.daily_loss_limit,
                                          reducing_at=g.reducing_at)
    for a in config.accounts:
        b = a.breakers
        sections = {DAILY_LOSS: b.daily_loss, DRAWDOWN: b.drawdown,
                    CONSECUTIVE_LOSSES: b.consecutive_losses, REJECTION_RATE: b.rejection_rate,
                    STALE_DATA: b.stale_data, RESTART_STORM: b.restart_storm}
        out[a.name] = BreakerLimits(
            daily_loss_limit=a.risk.daily_loss_limit,
            drawdown_limit=b.drawdown.limit,
            consecutive_losses=b.consecutive_losses.limit,
            rejection_rate=b.rejection_rate.limit,
            rejection_window=b.rejection_rate.window,
            rejection_min_orders=b.rejection_rate.min_orders,
            stale_data_s=b.stale_data.limit_s,
            restart_storm=b.restart_storm.limit,
            restart_window_s=b.restart_storm.window_minutes * 60.0,
            reducing_at=b.reducing_at,
            next_session=frozenset(n for n, s in sections.items()
                                   if s.auto_reset == NEXT_SESSION),
        )
    return out


def _session(now: datetime) -> date:
    return now.astimezone(NEW_YORK).date()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- what can change: a pure pre-check for callers that want to skip the risk actor ---------------


class BreakerWatch:
    """Whether ``BreakerBoard.evaluate`` over some ticks could change a breaker's state, from the
    ticks alone (and the peak equity of past sessions, read once a session): a superset of the
    conditions ``evaluate`` acts on, so a caller may skip the update when this says no.

    The restart storm is not in the ticks: the supervisor asks for an update after a restart.
    """

    def __init__(self, ledger, limits: Mapping[str, BreakerLimits]) -> None:
        self.ledger = ledger
        self.limits = dict(limits)
        self._peaks: dict[str, tuple[date, float | None]] = {}

    def _past_peak(self, account: str, session: date) -> float | None:
        cached = self._peaks.get(account)
        if cached is None or cached[0] != session:
            cached = (session, self.ledger.peak_equity(account, before=session))
            self._peaks[account] = cached
        return cached[1]

    def needed(self, ticks: Iterable[AccountTick]) -> bool:
        ticks = [t for t in ticks if t.account != ALL_ACCOUNTS]
        if ALL_ACCOUNTS in self.limits and ticks and self._needed(
                aggregate_tick(ticks, max(t.now for t in ticks))):
            return True
        return any(self._needed(tick) for tick in ticks)

    def _needed(self, tick: AccountTick) -> bool:
        limits = self.limits.get(tick.account)
        if limits is None:
            return False
        if tick.closed and limits.consecutive_losses is not None:
            return True
        if tick.rejected and limits.rejection_rate is not None:
            return True
        for name in (DAILY_LOSS, DRAWDOWN, STALE_DATA):
            levels = limits.levels(name)
            if levels is None:
                continue
            level = levels[1] if levels[1] is not None else levels[0]
            if name == DAILY_LOSS and tick.day_pnl <= -level:
                return True
            if name == STALE_DATA and tick.data_age_s is not None and tick.data_age_s >= level:
                return True
            if name == DRAWDOWN:
                past = self._past_peak(tick.account, _session(tick.now))
                peak = max(p for p in (past, tick.equity - tick.day_pnl, tick.equity)
                           if p is not None)
                if peak - tick.equity >= level:
                    return True
        return False


# -- the board: states in the ledger --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerReading:
    """One breaker's state for an account: since when, why, and the event behind it."""

    name: str
    state: State
    reason: str | None = None
    since: str | None = None  # ISO time of the trip or warning
    session: str | None = None  # the session it tripped or warned in


class BreakerBoard:
    """The breakers of every configured account over one ledger: the gate asks ``blocking``,
    the risk actor's update calls ``evaluate``, a person (the Telegram ``/reset`` command)
    calls ``reset``. Nothing is held in memory: a restarted board is the same board."""

    def __init__(self, ledger, limits: Mapping[str, BreakerLimits]) -> None:
        self.ledger = ledger
        self.limits = dict(limits)

    # -- state ---------------------------------------------------------------------------------

    def states(self, account: str, now: datetime) -> dict[str, BreakerReading]:
        """Every configured breaker's reading for the account at ``now``. A trip whose breaker
        resets at the next session is recorded as reset (by ``auto``) on the first look after
        its session ended."""
        return self._states(account, now)[0]

    def _states(self, account: str, now: datetime,
                ) -> tuple[dict[str, BreakerReading], dict[str, dict[str, Any]]]:
        """``states`` and each breaker's last reset event, from one read of the events."""
        limits = self.limits.get(account, BreakerLimits())
        session = _session(now).isoformat()
        latest: dict[str, dict[str, Any]] = {}
        warned: dict[str, dict[str, Any]] = {}
        resets: dict[str, dict[str, Any]] = {}
        for event in self.ledger.breaker_events(account):
            name, kind = event["name"], event["kind"]
            if kind == "reset":
                latest.pop(name, None)
                warned.pop(name, None)
                resets[name] = event
            elif kind == "tripped":
                latest[name] = event
            elif kind == "reducing":
                warned[name] = event
        out = {}
        for name in NAMES:
            trip = latest.get(name)
            if trip is not None and name in limits.next_session and trip["session"] < session:
                self.ledger.record_breaker_event(
                    account=account, name=name, kind="reset", session=_session(now), now=now,
                    reason=f"a new session ({session}) after the trip of {trip['session']}",
                    by="auto")
                resets[name] = self.ledger.last_breaker_event(account, name, "reset")
                trip = None
                warned.pop(name, None)
            warn = warned.get(name)
            if trip is not None:
                out[name] = BreakerReading(name, State.HALTED, trip["reason"], trip["at"],
                                           trip["session"])
            elif warn is not None and warn["session"] == session:
                out[name] = BreakerReading(name, State.REDUCING, warn["reason"], warn["at"],
                                           warn["session"])
            else:
                out[name] = BreakerReading(name, State.ACTIVE)
        return out, resets

    def state(self, account: str, now: datetime) -> State:
        """The account's overall state: the worst of its breakers."""
        states = {r.state for r in self.states(account, now).values()}
        for state in (State.HALTED, State.REDUCING):
            if state in states:
                return state
        return State.ACTIVE

    def blocking(self, req: RiskRequest, measured_reduction: bool = False) -> Rejection | None:
        """The breaker that refuses this order, or None. Closing orders always pass; an order
        flagged ``reduces_risk`` (a hedge) passes REDUCING; HALTED passes only a hedge whose
        reduction the gate has measured (``measured_reduction``), and REDUCING any such order.
        """
        if not req.opening:
            return None
        readings = self.states(req.account, req.now).values()
        for r in readings:
            if r.state is State.HALTED and not (measured_reduction and req.reduces_risk):
                return halted(req.account, r.reason or "", r.name)
        if not (req.reduces_risk or measured_reduction):
            for r in readings:
                if r.state is State.REDUCING:
                    return reducing(req.account, r.reason or "", r.name)
        return None

    # -- evaluation ------------------------------------------------------------------------------

    def evaluate(self, now: datetime, ticks: Iterable[AccountTick]) -> list[Alert]:
        """Evaluate every breaker on the accounts' latest ticks (the restart storm for every
        configured account, ticks or not); record new trips and warnings; a critical alert per
        new trip, a warning per new REDUCING state."""
        by_account = {tick.account: tick for tick in ticks}
        alerts = []
        for account, limits in self.limits.items():
            tick = by_account.get(account)
            readings = resets = None
            for name in NAMES:
                levels = limits.levels(name)
                if levels is None or (tick is None and name != RESTART_STORM):
                    continue
                if readings is None:
                    readings, resets = self._states(account, now)
                current = readings[name].state
                if current is State.HALTED:
                    continue
                reset = resets.get(name)
                reads: dict[str, Any] = {}  # the ledger reads, shared by the two levels
                reason = self._decide(account, name, limits, levels[0], tick, now, reset, reads)
                if reason is not None:
                    alerts.append(self._record(account, name, "tripped", reason, limits, now))
                    continue
                if levels[1] is None or current is State.REDUCING:
                    continue
                reason = self._decide(account, name, limits, levels[1], tick, now, reset, reads)
                if reason is not None:
                    alerts.append(self._record(account, name, "reducing", reason, limits, now))
        return alerts

    def _record(self, account: str, name: str, kind: str, reason: str, limits: BreakerLimits,
                now: datetime) -> Alert:
        session = _session(now)
        label = LABELS[name]
        with self.ledger.transaction():
            self.ledger.record_breaker_event(account=account, name=name, kind=kind,
                                             session=session, now=now, reason=reason)
            if kind == "tripped":  # the per-session trip record the summaries read
                self.ledger.trip_breaker(account=account, name=name, session=session,
                                         reason=reason, now=now)
        if kind == "tripped":
            until = (f"for {session}" if name in limits.next_session
                     else "until a person resets it")
            where = " in every account" if account == ALL_ACCOUNTS else ""
            return Alert(Severity.CRITICAL, "breaker_tripped", f"{account}:{name}:{session}",
                         f"{_who(account)}: {label} breaker tripped, {reason}; new entries "
                         f"halted{where} {until}, exits continue", now)
        return Alert(Severity.WARNING, "breaker_reducing", f"{account}:{name}:{session}:reducing",
                     f"{_who(account)}: {label} breaker reducing, {reason} (the warning level); "
                     f"no new risk for {session}, exits and hedges continue", now)

    def _decide(self, account: str, name: str, limits: BreakerLimits, level: float,
                tick: AccountTick | None, now: datetime,
                reset: Mapping[str, Any] | None, reads: dict[str, Any] | None = None,
                ) -> str | None:
        """Why breaker ``name`` trips at ``level`` now, or None; ``reset`` is its last reset
        event (what it counts from). ``reads`` keeps the ledger reads of an earlier level of the
        same breaker in the same evaluation (the trip level first, then the warning level)."""
        reads = {} if reads is None else reads
        if name == DAILY_LOSS:
            return daily_loss_tripped(tick.day_pnl, level)
        if name == STALE_DATA:
            return stale_data_tripped(tick.data_age_s, level)
        since = None if reset is None else _at(reset["at"])
        if name == DRAWDOWN:
            today = _session(now)
            after = None if reset is None else date.fromisoformat(reset["session"])
            candidates = [tick.equity]
            if "peak" not in reads:
                reads["peak"] = self.ledger.peak_equity(account, before=today, after=after)
            past = reads["peak"]
            if past is not None:
                candidates.append(past)
            if after is None or after < today:  # today's opening equity, unless reset today
                candidates.append(tick.equity - tick.day_pnl)
            return drawdown_tripped(tick.equity, max(candidates), level)
        if name == CONSECUTIVE_LOSSES:
            need = int(level) + 1
            got = reads.get("pnls")
            if got is None or (got[0] < need and len(got[1]) == got[0]):
                got = reads["pnls"] = (need, self.ledger.latest_closed_pnls(
                    account, after=since, limit=need))
            return consecutive_losses_tripped(got[1][:need], int(level))
        if name == REJECTION_RATE:
            if "window" not in reads:
                reads["window"] = self.ledger.latest_submitted_statuses(
                    account, after=since, limit=limits.rejection_window)
            window = reads["window"]
            rejected = sum(1 for status in window if status == "rejected")
            return rejection_rate_tripped(rejected, len(window), level,
                                          limits.rejection_min_orders)
        if name == RESTART_STORM:
            start = now - timedelta(seconds=limits.restart_window_s)
            if since is not None and since > start:
                start = since
            if "restarts" not in reads:
                reads["restarts"] = self.ledger.actors_with_events(
                    tuple(RESTART_KINDS), after=start, until=now)
            restarts = reads["restarts"]
            return restart_storm_tripped(restarts, limits.restart_window_s, int(level))
        raise ValueError(f"unknown breaker {name!r}")

    # -- a person's decisions ----------------------------------------------------------------------

    def halt(self, account: str, *, by: str, now: datetime,
             reason: str = "entries halted by hand") -> bool:
        """Halt the account's new entries now (the ``manual_halt`` breaker), recorded with who,
        when and why; exits continue. False if it was already halted by hand."""
        if account not in self.limits:
            raise ValueError(f"unknown account {account!r}; the accounts are "
                             f"{', '.join(sorted(self.limits))}")
        if self.states(account, now)[MANUAL_HALT].state is State.HALTED:
            return False
        self.ledger.record_breaker_event(account=account, name=MANUAL_HALT, kind="tripped",
                                         session=_session(now), now=now, reason=reason, by=by)
        return True

    def reset(self, account: str, name: str, *, by: str, now: datetime,
              reason: str = "reset by hand", restart_counts: bool = False) -> bool:
        """Clear a breaker (HALTED or REDUCING) by a person's decision; recorded with who, when
        and why. False if it was ACTIVE (nothing recorded), unless ``restart_counts``: then
        the reset is recorded anyway, for a warning that would come back at once because
        nothing can change what it counts (a losing streak with no new trade). Counts restart
        from the reset: losses in a row, the rejection window and restarts count only later
        events; the drawdown peak restarts from the equity after it."""
        if name not in NAMES:
            raise ValueError(f"unknown breaker {name!r}; the breakers are {', '.join(NAMES)}")
        if not restart_counts and self.states(account, now)[name].state is State.ACTIVE:
            return False
        self.ledger.record_breaker_event(account=account, name=name, kind="reset",
                                         session=_session(now), now=now, reason=reason, by=by)
        return True


def session_of(now: datetime) -> date:
    """The New York trading date an instant belongs to."""
    return now.astimezone(NEW_YORK).date()


def update_needed(ticks: Iterable[AccountTick],
                  limits: Mapping[str, RiskLimits] | BreakerWatch) -> bool:
    """Whether ``RiskEngine.update`` over these ticks could do anything (so a caller may skip
    the update, and a round trip to the risk actor, on every other tick). With a
    ``BreakerWatch``: whenever any breaker could change state (see ``BreakerWatch``; a restart
    storm is the caller's to notice). With plain limits (an engine built without breaker
    config, which has the daily loss breaker alone): when a day P&L reached its limit."""
    if isinstance(limits, BreakerWatch):
        return limits.needed(ticks)
    return any(
        tick.account in limits
        and daily_loss_tripped(tick.day_pnl, limits[tick.account].daily_loss_limit) is not None
        for tick in ticks
    )
