"""The adaptive strategy: one underlying's decision from its regime, the price of volatility,
the time of day and the event calendar (``strategy.kind: adaptive``; the plain strategy is
``bull_put_credit`` in ``thetadesk/symbol.py``).

Each proposal, in order (the first that fails is the note of a tick without an intent):

1. timing: inside an entry window (New York time, cut by an early close) and no event blackout;
2. history: the completed sessions before today (``signals.history``), enough for the regime;
3. regime (``signals.regime``, replayed over the history, so a restarted actor finds the same
   one) and IV rank (30-day ATM IV at each close against today's); a change of regime is
   recorded in the ledger's ``regimes`` table;
4. parameters: the base profile overridden by the regime's (``decision.regimes``: by trend, by
   volatility, by both; sizes multiply); its exit levels (``take_profit``, ``stop_multiple``)
   go with the intent and stay with the position (the ledger's ``positions.exit_rules``);
5. structure (``selector.structure_for``) and candidates by target delta and DTE, ranked by
   expected value per unit of risk at the realised volatility, then probability of profit;
6. the chosen one's quote: bid/ask width within ``max_width_fraction`` of its mid, a credit of
   at least ``min_credit_fraction`` of the width (a debit of at most ``max_debit_fraction``).

With ``ladder`` (``decision.timing.ladder``, off by default) the intent is a working order: its
limit starts at the mid and the account steps it a tick toward natural every ``step_minutes``,
cancelling after ``max_steps`` (``thetadesk/account.py``, one ``ladder`` decision in the
ledger); without it, the natural price floored to the cent, marketable like the plain
strategy's. Its context records the inputs, the regime, the surface at the chosen expiry (ATM IV,
term slope, 25-delta skew, implied minus realised), the chosen candidate and every rejected one
with why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time

import numpy as np

from thetadesk.chain import NEW_YORK
from thetadesk.clock import MarketCalendar
from thetadesk.errors import DataError
from thetadesk.logging import get_logger
from thetadesk.messages import SymbolTick, TradeIntent
from thetadesk.signals.events import EventCalendar
from thetadesk.signals.history import DailyHistory, minute_bars
from thetadesk.signals.indicators import close_to_close_vol, volume_ratio
from thetadesk.signals.regime import (
    Regime,
    RegimeRules,
    RegimeTracker,
    daily_inputs,
    realised_vol_percentile,
)
from thetadesk.signals.timeframes import alignment, direction, resample
from thetadesk.signals.timing import EntryTiming, LimitLadder
from thetadesk.signals.volatility import (
    atm_implied_vol,
    iv_rank,
    rolling_iv_rank,
    surface_context,
)
from thetadesk.strategies.selector import SelectorRules, candidates, rank, structure_for
from thetadesk.strategies.spreads import SpreadKind

__all__ = ["AdaptiveEngine", "AdaptiveRules", "RegimeParams"]

REALISED_WINDOW = 20  # sessions of the realised volatility the expected value is taken at
TREND_BARS = 21  # bars a timeframe needs for its direction (the slow EMA's period)
TREND_WINDOW = 10 * TREND_BARS  # the latest bars an intraday direction is read from
_DIRECTION = {SpreadKind.BULL_PUT_CREDIT: 1.0, SpreadKind.BULL_CALL_DEBIT: 1.0,
              SpreadKind.BEAR_CALL_CREDIT: -1.0, SpreadKind.BEAR_PUT_DEBIT: -1.0}
MAX_SIZE = 2.0  # the largest size multiplier an account accepts (TradeIntent.size_multiplier)


@dataclass(frozen=True, slots=True)
class RegimeParams:
    """One regime key's overrides (None: keep the base); ``size`` multiplies the account's
    budget per trade."""

    size: float | None = None
    short_delta: float | None = None
    target_dte: int | None = None
    width: float | None = None
    strategies: frozenset[SpreadKind] | None = None
    take_profit: float | None = None  # the position's exits: a fraction of max profit ...
    stop_multiple: float | None = None  # ... and a multiple of the premium


@dataclass(frozen=True, slots=True)
class _Effective:
    size: float
    short_delta: float
    target_dte: int
    width: float
    strategies: frozenset[SpreadKind] | None
    exits: tuple[tuple[str, float], ...] = ()  # the position's own exit levels, if any


@dataclass(frozen=True, slots=True)
class AdaptiveRules:
    target_dte: int
    min_dte: int
    short_delta: float  # the short leg of a credit structure
    width: float
    min_iv: float  # least ATM IV to sell premium
    min_credit_fraction: float
    entry_start: time
    entry_end: time
    debit_delta: float = 0.45  # the long leg of a debit spread
    max_debit_fraction: float = 0.6
    min_pop: float = 0.0
    history_sessions: int = 300
    regime: RegimeRules = field(default_factory=RegimeRules)
    selector: SelectorRules = field(default_factory=SelectorRules)
    timing: EntryTiming = field(default_factory=EntryTiming)
    events: EventCalendar | None = None
    regimes: Mapping[str, RegimeParams] = field(default_factory=dict)
    ladder: LimitLadder | None = None  # None: a marketable limit at natural
    # A directional structure needs the timeframes' alignment score (-1..1) at least this far
    # in its direction (None: the score is recorded, not required).
    min_alignment: float | None = None

    def in_entry_window(self, now: datetime) -> bool:
        """The supervisor's pre-check: inside ``entry_start``..``entry_end`` and one of the
        timing windows (early closes are the engine's to apply)."""
        t = now.astimezone(NEW_YORK).time()
        return self.entry_start <= t <= self.entry_end and self.timing.allows_time(now)

    def warm_up(self) -> int:
        """Sessions of history a regime needs: the slow average, or ADX's two periods."""
        return max(self.regime.slow, 2 * self.regime.adx_period + 1)

    def effective(self, regime: Regime) -> _Effective:
        out = _Effective(1.0, self.short_delta, self.target_dte, self.width, None)
        for key in (regime.trend.value, regime.volatility.value, regime.name):
            p = self.regimes.get(key)
            if p is None:
                continue
            out = replace(
                out,
                size=out.size * (1.0 if p.size is None else p.size),
                short_delta=out.short_delta if p.short_delta is None else p.short_delta,
                target_dte=out.target_dte if p.target_dte is None else p.target_dte,
                width=out.width if p.width is None else p.width,
                strategies=out.strategies if p.strategies is None else p.strategies,
                exits=tuple(sorted({**dict(out.exits), **{
                    k: v for k, v in (("take_profit", p.take_profit),
                                      ("stop_multiple", p.stop_multiple)) if v is not None}
                }.items())))
        # Sizes multiply across the keys; the account takes at most twice its budget.
        return replace(out, size=min(out.size, MAX_SIZE))


@dataclass(frozen=True, slots=True)
class _Day:
    """What the history says before a session: its regime (None while warming up) and why."""

    regime: Regime | None
    since: str | None  # the session whose close confirmed it
    inputs: dict
    iv_history: np.ndarray
    realised: float
    note: str | None
    closes: np.ndarray  # the sessions' closes, oldest first (the daily timeframe's bars)


class AdaptiveEngine:
    """Proposals of the adaptive strategy for one symbol (``propose``), one profile's rules."""

    def __init__(self, symbol: str, market, ledger=None,
                 calendar: MarketCalendar | None = None) -> None:
        self.symbol = symbol
        self.market = market
        self.ledger = ledger
        self.calendar = calendar or MarketCalendar()
        self.history = DailyHistory(market, symbol, self.calendar)
        self._days: dict[tuple, _Day] = {}
        self._years: dict[tuple, tuple[str, ...]] = {}
        self.log = get_logger("symbol").bind(symbol=symbol)

    def _day(self, today, r: AdaptiveRules) -> _Day:
        key = (today, r.regime, r.history_sessions)
        if key in self._days:
            return self._days[key]
        bars = self.history.before(today, r.history_sessions)
        need = r.warm_up()
        if len(bars) < need:
            day = _Day(None, None, {}, bars.atm_iv, math.nan,
                       f"regime warming up: {len(bars)} of {need} sessions of history",
                       bars.close)
        else:
            iv = bars.atm_iv
            if np.count_nonzero(np.isfinite(iv)) >= need:
                pct = rolling_iv_rank(iv)[1]
                source = "iv_percentile"
            else:
                pct = realised_vol_percentile(bars.close)
                source = "realised_vol_percentile"
            inputs = daily_inputs(bars.high, bars.low, bars.close, pct, r.regime)
            tracker = RegimeTracker(r.regime)
            since = None
            for session, x in zip(bars.sessions, inputs, strict=True):
                if tracker.update(x)[1]:
                    since = session
            last = inputs[-1]
            realised = float(close_to_close_vol(bars.close, REALISED_WINDOW)[-1])
            note = None if tracker.regime is not None else "regime: inputs not yet known"
            day = _Day(tracker.regime, since.isoformat() if since else None,
                       {**last.as_dict(), "vol_source": source}, iv, realised, note, bars.close)
            if tracker.regime is not None and since is not None:
                self._record(tracker.regime, since, day.inputs)
        if len(self._days) > 8:
            self._days.clear()
        self._days[key] = day
        return day

    def _timeframes(self, now: datetime, today, r: AdaptiveRules) -> dict:
        """Each timeframe's trend direction (daily from the history; hourly, 5-minute and
        1-minute from the last sessions' minutes up to ``now``) and their alignment score; a
        timeframe with too few bars is left out."""
        directions: dict[str, float] = {}
        ratio = math.nan  # the latest 5-minute bar's volume over its 20 bars' average
        closes = self._day(today, r).closes  # the session's history, read once
        if len(closes) >= TREND_BARS:
            directions["1d"] = direction(closes)
        minutes = minute_bars(self.market, self.symbol, now, self.calendar)
        if minutes is not None and len(minutes.end):
            t = np.datetime64(now.astimezone(UTC).replace(tzinfo=None), "s")
            for label, span in (("1h", 60), ("5m", 5), ("1m", 1)):
                bars = minutes if span == 1 else resample(minutes, span, now=t)
                if len(bars.close) >= TREND_BARS:
                    directions[label] = direction(bars.close[-TREND_WINDOW:])
                if span == 5 and len(bars.volume):
                    ratio = float(volume_ratio(bars.volume, 20)[-1])
        score = alignment(directions) if directions else math.nan
        return {"score": _num(score), "directions": directions, "volume_ratio": _num(ratio)}

    def _unknown_events(self, events: EventCalendar, today) -> tuple[str, ...]:
        """The event kinds the calendar has no dates for in ``today``'s year, said once a
        year in the log (a backtest before 2024 runs without blackouts, and says so)."""
        key = (id(events), today.year)
        if key not in self._years:
            self._years[key] = events.missing(today)
            if self._years[key]:
                self.log.warning("events_unknown", year=today.year,
                                 kinds=list(self._years[key]),
                                 consequence="no blackout for these releases this year")
        return self._years[key]

    def _record(self, regime: Regime, since, inputs: dict) -> None:
        if self.ledger is None:
            return
        latest = self.ledger.latest_regime(self.symbol)
        if latest is not None and (latest["trend"], latest["volatility"]) == (
                regime.trend.value, regime.volatility.value):
            return
        previous = None if latest is None else f"{latest['trend']}/{latest['volatility']}"
        at = self.calendar.session_close(since)
        if self.ledger.record_regime(symbol=self.symbol, at=at, trend=regime.trend.value,
                                     volatility=regime.volatility.value, inputs=inputs,
                                     previous=previous):
            self.log.info("regime_changed", regime=regime.name, previous=previous,
                          since=since.isoformat())

    def propose(self, now: datetime, profile: str, r: AdaptiveRules) -> SymbolTick:
        base = {"symbol": self.symbol, "now": now, "spot": None, "atm_iv": None}
        today = now.astimezone(NEW_YORK).date()
        try:
            close = self.calendar.session_close(today)
        except (ValueError, DataError):
            return SymbolTick(**base, note="not a session")
        t = now.astimezone(NEW_YORK).time()
        if not (r.entry_start <= t <= r.entry_end) or r.timing.window_at(now, close) is None:
            return SymbolTick(**base, note="outside the entry windows")
        unknown: tuple[str, ...] = ()
        if r.events is not None:
            event = r.events.blocking(now, self.symbol)
            if event is not None:
                return SymbolTick(**base, note=f"event blackout: {event.label}")
            unknown = self._unknown_events(r.events, today)
        try:
            day = self._day(today, r)
        except DataError as exc:
            return SymbolTick(**base, note=f"no daily history: {exc}")
        if day.regime is None:
            return SymbolTick(**base, note=day.note)
        params = r.effective(day.regime)
        try:
            chain = self.market.chain(self.symbol, now, min_dte=r.min_dte,
                                      max_dte=2 * params.target_dte)
            spot = chain.spot
            atm = getattr(self.market, "atm_iv", None)
            if callable(atm):  # the source's 30-day ATM level, the history's own measure
                current_iv = float(atm(self.symbol, now))
            else:  # a vendor chain: ATM at the target expiry (no IV history to rank it)
                current_iv = atm_implied_vol(chain, chain.nearest_expiry(
                    params.target_dte, min_dte=r.min_dte))
        except DataError as exc:
            self.log.warning("no_chain", reason=str(exc), at=now.isoformat())
            return SymbolTick(**base, note=f"no usable chain: {exc}")
        base.update(spot=spot, atm_iv=current_iv if math.isfinite(current_iv) else None)
        rank_ = iv_rank(day.iv_history, current_iv) if math.isfinite(current_iv) else math.nan
        kind, why = structure_for(day.regime, rank_, r.selector, params.strategies)
        context = {"regime": day.regime.name, "regime_since": day.since,
                   "regime_inputs": day.inputs, "iv_rank": _num(rank_),
                   "atm_iv": _num(current_iv), "realised_vol": _num(day.realised),
                   "structure": why, "size_multiplier": params.size,
                   "exits": dict(params.exits),
                   "events_unknown": list(unknown),
                   "params": {"short_delta": params.short_delta,
                              "target_dte": params.target_dte, "width": params.width}}
        if kind is None:
            return SymbolTick(**base, note=why)
        views = self._timeframes(now, today, r)
        context["alignment"] = views
        want = _DIRECTION.get(kind)
        if r.min_alignment is not None and want is not None:
            score = views["score"]
            if score is None or want * score < r.min_alignment:
                shown = "unknown" if score is None else f"{score:+.2f}"
                return SymbolTick(**base, note=(
                    f"{kind.value}: the timeframes do not confirm it (alignment {shown}, "
                    f"needs {want * r.min_alignment:+.2f} or beyond)"))
        volume = r.timing.volume_problem(views["volume_ratio"])
        if volume is not None:
            return SymbolTick(**base, note=f"{kind.value}: {volume}")
        if kind.is_credit and not (current_iv >= r.min_iv):
            return SymbolTick(**base, note=f"ATM IV {current_iv:.3f} below the {r.min_iv:.3f} "
                                           "minimum to sell premium")
        if not (day.realised > 0):
            return SymbolTick(**base, note="no realised volatility to value the trade with")
        delta = params.short_delta if kind.is_credit else r.debit_delta
        try:
            found, failed = candidates(
                chain, kind, target_dte=params.target_dte, min_dte=r.min_dte, delta=delta,
                width=params.width, atm_iv=current_iv if math.isfinite(current_iv) else
                day.realised, real_vol=day.realised,
                price_at="natural" if r.ladder is None else "mid",
                tick=0.01 if r.ladder is None else r.ladder.tick)
        except DataError as exc:
            return SymbolTick(**base, note=str(exc))
        best, rejected = rank(found, r.min_pop)
        context["rejected"] = ([{**c.describe(), "why": w} for c, w in rejected]
                               + [{**where, "why": w} for where, w in failed])
        if best is None:
            return SymbolTick(**base, note=f"{kind.value}: no candidate ("
                                           f"{len(found)} priced, {len(failed)} unbuildable)")
        max_loss, max_profit = best.max_loss, best.max_profit
        worst = best.limit  # the least favourable price the order may fill at
        if r.ladder is not None:
            # A working order: it starts at mid and may fill as far as its last step, so the
            # account sizes it by the loss at that price, and the floors hold there too.
            context["ladder"] = {"mid": best.mid, "natural": best.natural,
                                 "credit": kind.is_credit, "step_minutes": r.ladder.step_minutes,
                                 "tick": r.ladder.tick, "max_steps": r.ladder.max_steps}
            worst = r.ladder.net(best.mid, best.natural, r.ladder.max_steps)
            max_loss = max(max_loss, best.spread.max_loss(worst))
        problem = r.timing.quote_problem(best.mid, best.natural)
        if problem is None and kind.is_credit and worst / params.width < \
                r.min_credit_fraction:
            problem = (f"credit {worst:.2f} is {worst / params.width:.1%} of the "
                       f"{params.width:g} width, below {r.min_credit_fraction:.0%}")
        if problem is None and not kind.is_credit and -worst / params.width > \
                r.max_debit_fraction:
            problem = (f"debit {-worst:.2f} is {-worst / params.width:.1%} of the "
                       f"{params.width:g} width, above {r.max_debit_fraction:.0%}")
        if problem is not None:
            return SymbolTick(**base, note=f"{kind.value}: {problem}")
        context["chosen"] = best.describe()
        surface = surface_context(chain, best.expiry)
        context["surface"] = {**surface.as_dict(),
                              "iv_minus_realised": _num(surface.iv_minus_realised(day.realised))}
        context["leg_mids"] = {leg.contract.occ: chain.find(
            best.expiry, leg.contract.right, leg.contract.strike).quote.mid
            for leg in best.spread.legs}
        tag = "" if profile == "default" else f"{profile}:"
        intent = TradeIntent(
            intent_id=f"{self.symbol}:{kind.value}:{tag}{now.astimezone(NEW_YORK):%Y%m%dT%H%M}",
            symbol=self.symbol, spread=best.spread, limit_price=best.limit,
            natural_price=best.natural, max_loss_per_spread=max_loss,
            max_profit_per_spread=max_profit, margin_per_spread=best.spread.margin(),
            decided_at=now, context={**context, "profile": profile}, profile=profile,
            size_multiplier=params.size)
        self.log.debug("intent", intent_id=intent.intent_id, regime=day.regime.name,
                       structure=kind.value)
        return SymbolTick(**base, intents=(intent,))


def _num(x: float) -> float | None:
    return round(float(x), 6) if math.isfinite(x) else None
