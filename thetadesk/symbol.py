"""One underlying's decisions: market snapshot -> signals -> trade intents.

The first strategy sells a bull put credit spread: short put near a target delta at the expiry
nearest a target DTE, long put ``width`` dollars lower, when at-the-money implied volatility is
rich enough and the credit is a large enough fraction of the width. A profile of ``kind:
adaptive`` is the decision layer's instead (``thetadesk/strategies/adaptive.py``: regime, IV
rank, structure, timing, event calendar). Accounts decide whether to take an intent (they skip
symbols where they already hold a position) and how many to trade.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

import numpy as np

from thetadesk.chain import NEW_YORK, OptionChain
from thetadesk.config import DEFAULT_PROFILE
from thetadesk.errors import DataError
from thetadesk.logging import get_logger
from thetadesk.messages import SymbolTick, TradeIntent
from thetadesk.models import Right
from thetadesk.ports import MarketData
from thetadesk.pricing import implied_vol
from thetadesk.signals.timing import LimitLadder
from thetadesk.strategies.spreads import bull_put_credit

if TYPE_CHECKING:
    from thetadesk.strategies.adaptive import AdaptiveRules


@dataclass(frozen=True, slots=True)
class VrpRule:
    """Enter only while the ATM implied volatility of the expiry sold is at least
    ``min_ratio`` times and/or ``min_difference`` above a point-in-time ``model`` forecast
    (``thetadesk.signals.vrp``: har, garch, realised) of the volatility to that expiry."""

    model: str = "har"
    min_ratio: float | None = None
    min_difference: float | None = None

    def problem(self, implied: float, forecast) -> str | None:
        """Why not to enter (in words, with the numbers), or None."""
        from thetadesk.signals.vrp import vrp

        if not math.isfinite(forecast.vol):
            return f"no {self.model} volatility forecast: {forecast.reason}"
        premium = vrp(implied, forecast)
        if self.min_ratio is not None and not premium.ratio >= self.min_ratio:
            return (f"implied {implied:.3f} is {premium.ratio:.2f}x the {self.model} forecast "
                    f"{forecast.vol:.3f}, below {self.min_ratio:g}x (volatility premium)")
        if self.min_difference is not None and not premium.difference >= self.min_difference:
            return (f"implied {implied:.3f} is {premium.difference * 100:+.1f} points over the "
                    f"{self.model} forecast {forecast.vol:.3f}, below "
                    f"{self.min_difference * 100:+.1f} (volatility premium)")
        return None


@dataclass(frozen=True, slots=True)
class BullPutRules:
    """The plain strategy's rules (``strategy:`` of ``kind: bull_put_credit``). ``width`` in
    dollars unless ``width_pct`` (percent of spot) or ``width_sd`` (a multiple of the expected
    move to expiry, spot x ATM IV x sqrt(years)) is given; ``ladder``: work the entry from mid
    toward natural (None: a marketable limit at natural); ``trend_sma``: enter only while spot
    is at or above the mean of the last N daily closes."""

    target_dte: int
    min_dte: int
    short_delta: float
    width: float
    min_iv: float
    min_credit_fraction: float
    entry_start: time
    entry_end: time
    width_pct: float | None = None
    width_sd: float | None = None
    ladder: LimitLadder | None = None
    trend_sma: int | None = None
    vrp: VrpRule | None = None

    @classmethod
    def from_config(cls, strategy) -> BullPutRules:
        lad, v = strategy.ladder, strategy.vrp
        return cls(strategy.target_dte, strategy.min_dte, strategy.short_delta, strategy.width,
                   strategy.min_iv, strategy.min_credit_fraction, strategy.entry_start,
                   strategy.entry_end, strategy.width_pct, strategy.width_sd,
                   LimitLadder(lad.step_minutes, lad.tick, lad.max_steps) if lad.enabled
                   else None, strategy.trend_sma,
                   VrpRule(v.model, v.min_ratio, v.min_difference) if v.active else None)

    def target_width(self, spot: float, iv: float, years: float) -> float:
        """The wanted strike distance in dollars (before rounding to listed strikes)."""
        if self.width_pct is not None:
            return spot * self.width_pct / 100.0
        if self.width_sd is not None:
            return self.width_sd * spot * iv * math.sqrt(max(years, 0.0))
        return self.width

    def in_entry_window(self, now: datetime) -> bool:
        """Whether ``now`` (New York time) lies in the entry window; outside it the engine
        proposes nothing, so a caller may skip asking."""
        return self.entry_start <= now.astimezone(NEW_YORK).time() <= self.entry_end


def adaptive_rules(strategy, decision) -> AdaptiveRules:
    """An adaptive profile's rules: its strategy section and the config's decision section."""
    from thetadesk.signals.events import Blackout, EventCalendar
    from thetadesk.signals.regime import RegimeRules
    from thetadesk.signals.timing import EntryTiming, LimitLadder
    from thetadesk.strategies.adaptive import AdaptiveRules, RegimeParams
    from thetadesk.strategies.selector import SelectorRules
    from thetadesk.strategies.spreads import SpreadKind

    ev = decision.events
    events = None
    if ev.enabled:
        events = EventCalendar.from_files(ev.files, shipped=ev.shipped, blackouts={
            k: Blackout(timedelta(hours=b.before_hours), timedelta(hours=b.after_hours))
            for k, b in ev.blackout.items()})
    t = decision.timing
    return AdaptiveRules(
        target_dte=strategy.target_dte, min_dte=strategy.min_dte,
        short_delta=strategy.short_delta, width=strategy.width, min_iv=strategy.min_iv,
        min_credit_fraction=strategy.min_credit_fraction, entry_start=strategy.entry_start,
        entry_end=strategy.entry_end, debit_delta=decision.debit_delta,
        max_debit_fraction=decision.max_debit_fraction, min_pop=decision.min_pop,
        history_sessions=decision.history_sessions,
        regime=RegimeRules(**decision.regime.model_dump()),
        selector=SelectorRules(**decision.selector.model_dump()),
        timing=EntryTiming(t.windows, t.close_buffer, t.max_width_fraction, t.volume_spike),
        ladder=(LimitLadder(t.ladder.step_minutes, t.ladder.tick, t.ladder.max_steps)
                if t.ladder.enabled else None),
        min_alignment=t.min_alignment,
        events=events,
        regimes={k: RegimeParams(p.size, p.short_delta, p.target_dte, p.width,
                                 None if p.strategies is None
                                 else frozenset(SpreadKind(s) for s in p.strategies),
                                 p.take_profit, p.stop_multiple)
                 for k, p in decision.regimes.items()})


class Profiles(dict):
    """Strategy profiles by name (``BullPutRules`` or ``AdaptiveRules`` each): the ones a
    symbol engine proposes for, or an account trades. Its entry window is the union of
    theirs."""

    @classmethod
    def from_config(cls, config, names: Iterable[str] | None = None) -> Profiles:
        """``names`` (every profile if None) as rules, in the order given."""
        profiles = config.strategy_profiles()

        def rules(strategy):
            if strategy.kind == "adaptive":
                return adaptive_rules(strategy, config.decision)
            return BullPutRules.from_config(strategy)

        return cls((n, rules(profiles[n])) for n in (profiles if names is None else names))

    def adaptive(self) -> bool:
        """Whether any profile is the adaptive strategy's."""
        return any(not isinstance(r, BullPutRules) for r in self.values())

    @classmethod
    def for_symbol(cls, config, symbol: str) -> Profiles:
        """The profiles of the accounts that trade ``symbol`` (the default one if none do)."""
        names: list[str] = []
        for account in config.accounts:
            if symbol in account.symbols:
                names.extend(n for n in account.strategies if n not in names)
        return cls.from_config(config, names or [DEFAULT_PROFILE])

    def in_entry_window(self, now: datetime) -> bool:
        return any(rules.in_entry_window(now) for rules in self.values())


def atm_iv(chain: OptionChain, expiry) -> float:
    """Implied volatility of the put nearest the money at ``expiry`` (vendor IV if given)."""
    row = chain.nearest(expiry, Right.PUT, chain.spot)
    if row is None:
        return math.nan
    if row.iv is not None and math.isfinite(row.iv):
        return float(row.iv)
    return float(implied_vol(row.quote.mid, chain.spot, row.contract.strike,
                             chain.years_to_expiry(expiry), chain.rate, chain.dividend_yield,
                             False))


NEAR_DAYS = 3  # a weekly listing has an expiry within this many days of most targets
TREND_MIN_SESSIONS = 20  # the trend filter's least history (of a longer average's sessions)
VRP_HISTORY_SESSIONS = 1021  # the forecasters' fit window (1,000) and refit block (21)


class SymbolEngine:
    """``rules``: one profile's rules (the default profile), or several profiles by name; each
    tick proposes at most one intent per profile, tagged with the profile's name."""

    def __init__(self, symbol: str, rules: BullPutRules | Mapping[str, BullPutRules],
                 market: MarketData, ledger=None) -> None:
        self.symbol = symbol
        self.profiles = ({DEFAULT_PROFILE: rules} if isinstance(rules, BullPutRules)
                         else dict(rules))
        if not self.profiles:
            raise ValueError("a symbol engine needs at least one strategy profile")
        self.rules = next(iter(self.profiles.values()))
        self.market = market
        self.log = get_logger("symbol").bind(symbol=symbol)
        self._history = None  # DailyHistory, for the trend filter, made when first needed
        self._bars_day = None  # the day ``_bars`` holds: sessions -> DailyBars before it
        self._bars: dict[int, object] = {}
        self._forecasters: dict[str, object] = {}  # model -> forecaster (thetadesk.signals.vrp)
        self._adaptive = None
        if any(not isinstance(r, BullPutRules) for r in self.profiles.values()):
            from thetadesk.strategies.adaptive import AdaptiveEngine

            self._adaptive = AdaptiveEngine(symbol, market, ledger)

    def _trend(self, now: datetime, sessions: int, spot: float) -> tuple[dict, str | None]:
        """The plain strategy's trend filter at ``now``: (its figures, for the intent's
        context; why not to enter, or None). The average is of the last ``sessions`` completed
        sessions' closes (point in time); with fewer at the start of the source's history, of
        those there are, from ``TREND_MIN_SESSIONS`` on (none before: no entry)."""
        bars = self._daily(now.astimezone(NEW_YORK).date(), sessions)
        if bars is None:
            return {}, "no daily history for the trend filter"
        closes = bars.close
        n = len(closes)
        average = float(np.mean(closes)) if n else math.nan
        if n < min(sessions, TREND_MIN_SESSIONS):
            return {}, (f"{n} sessions of history, too few for the {sessions}-session trend "
                        "filter")
        figures = {"trend_sma": round(average, 4), "trend_sessions": n}
        if not spot >= average:
            return figures, (f"spot {spot:.2f} below its {n}-session average {average:.2f} "
                             "(trend filter)")
        return figures, None

    def _daily(self, day, sessions: int):
        """Up to ``sessions`` daily bars before ``day`` (``DailyHistory``, point in time),
        remembered for the day; None where the market gives no history."""
        if self._bars_day != day:
            self._bars_day, self._bars = day, {}
        if sessions in self._bars:
            return self._bars[sessions]
        if self._history is None:
            from thetadesk.signals.history import DailyHistory

            try:
                self._history = DailyHistory(self.market, self.symbol)
            except DataError as exc:
                self.log.warning("no_daily_history", reason=str(exc))
                return None
        bars = self._bars[sessions] = self._history.before(day, sessions)
        return bars

    def _forecast(self, now: datetime, model: str, dte: int):
        """The ``model`` forecast of the volatility over the ``dte`` calendar days to the
        expiry sold (in sessions: ceil(dte x 252 / 365)), from the bars before today."""
        from thetadesk.signals.vrp import GarchForecaster, HarForecaster, RealisedForecaster

        forecaster = self._forecasters.get(model)
        if forecaster is None:
            forecaster = {"har": HarForecaster, "garch": GarchForecaster,
                          "realised": RealisedForecaster}[model]()
            self._forecasters[model] = forecaster
        bars = self._daily(now.astimezone(NEW_YORK).date(), VRP_HISTORY_SESSIONS)
        if bars is None:
            return None
        horizon = min(max(math.ceil(dte * 252 / 365), 1), 252)
        return forecaster.forecast(bars, horizon)

    def _chain(self, now: datetime, rules: BullPutRules | None = None) -> OptionChain:
        """A chain holding the expiry nearest the target DTE (at least ``min_dte`` out), read as
        narrowly as possible. If any expiry lies within ``NEAR_DAYS`` of the target, the nearest
        one (and any tie) does too, so the narrow read chooses what the whole chain would;
        otherwise the expiries that can be nearest (up to twice the target), then the whole
        chain."""
        r = self.rules if rules is None else rules
        low = max(r.min_dte, r.target_dte - NEAR_DAYS)
        for window in ((low, r.target_dte + NEAR_DAYS), (r.min_dte, 2 * r.target_dte)):
            chain = self.market.chain(self.symbol, now, min_dte=window[0], max_dte=window[1])
            if chain.expiries():
                return chain
        return self.market.chain(self.symbol, now)

    def tick(self, now: datetime) -> SymbolTick:
        """Every profile's proposal at ``now``: their intents, or (none) why not."""
        if len(self.profiles) == 1:
            name, rules = next(iter(self.profiles.items()))
            return self._propose(now, name, rules)
        ticks = [self._propose(now, n, r) for n, r in self.profiles.items()]
        seen = next((t for t in ticks if t.spot is not None), ticks[0])
        intents = tuple(i for t in ticks for i in t.intents)
        # Why each profile that proposed nothing did not (None when every one proposed).
        note = "; ".join(f"{n}: {t.note}" for n, t in zip(self.profiles, ticks, strict=True)
                         if not t.intents) or None
        return SymbolTick(self.symbol, now, seen.spot, seen.atm_iv, intents, note)

    def _propose(self, now: datetime, profile: str, r: BullPutRules) -> SymbolTick:
        if self._adaptive is not None and not isinstance(r, BullPutRules):
            return self._adaptive.propose(now, profile, r)
        if not r.in_entry_window(now):
            return SymbolTick(self.symbol, now, None, None, note="outside the entry window")
        try:
            chain = self._chain(now, r)
            expiry = chain.nearest_expiry(r.target_dte, min_dte=r.min_dte)
        except DataError as exc:
            self.log.warning("no_chain", reason=str(exc), at=now.isoformat())
            return SymbolTick(self.symbol, now, None, None, note=f"no usable chain: {exc}")
        iv = atm_iv(chain, expiry)
        base = {"symbol": self.symbol, "now": now, "spot": chain.spot, "atm_iv": iv}
        if not (iv >= r.min_iv):
            return SymbolTick(**base, note=f"ATM IV {iv:.3f} below the {r.min_iv:.3f} minimum")
        trend: dict = {}
        if r.trend_sma is not None:
            trend, why_not = self._trend(now, r.trend_sma, chain.spot)
            if why_not is not None:
                return SymbolTick(**base, note=why_not)
        if r.vrp is not None:
            forecast = self._forecast(now, r.vrp.model, chain.dte(expiry))
            if forecast is None:
                return SymbolTick(**base, note="no daily history for the volatility forecast")
            trend["vrp"] = {"model": r.vrp.model, "forecast": forecast.as_dict()["vol"],
                            "horizon_sessions": forecast.horizon}
            why_not = r.vrp.problem(iv, forecast)
            if why_not is not None:
                return SymbolTick(**base, note=why_not)
        try:
            short = chain.strike_by_delta(expiry, -r.short_delta, Right.PUT)
        except DataError as exc:
            return SymbolTick(**base, note=str(exc))
        T = chain.years_to_expiry(expiry)
        target = r.target_width(chain.spot, iv, T)
        wanted = round(short.contract.strike - target, 3)
        if r.width_pct is None and r.width_sd is None:
            long = chain.find(expiry, Right.PUT, wanted)  # a fixed width: that strike exactly
        else:
            long = chain.nearest(expiry, Right.PUT, wanted)  # the listed strike nearest it
            if long is not None and long.contract.strike >= short.contract.strike:
                below = [row for row in chain.rows(expiry, Right.PUT)
                         if row.contract.strike < short.contract.strike]
                long = max(below, key=lambda row: row.contract.strike) if below else None
        if long is None:
            return SymbolTick(**base, note=f"no {wanted:g} put listed for the long leg")
        width = round(short.contract.strike - long.contract.strike, 3)
        spread = bull_put_credit(short.contract, long.contract)
        quotes = {short.contract: short.quote, long.contract: long.quote}
        mid = spread.net_premium(quotes, at="mid")
        natural = spread.net_premium(quotes, at="natural")
        # A marketable limit: the natural credit, floored to the cent; or, with a ladder, a
        # working order from mid that may end at natural (sized by the loss at its last step).
        limit = math.floor(natural * 100 + 1e-9) / 100
        worst = limit
        ladder = None
        if r.ladder is not None and mid > 0 and natural >= 0:
            limit = r.ladder.start(mid, natural, True)
            worst = r.ladder.net(mid, natural, r.ladder.max_steps)
            ladder = {"mid": mid, "natural": natural, "credit": True,
                      "step_minutes": r.ladder.step_minutes, "tick": r.ladder.tick,
                      "max_steps": r.ladder.max_steps}
        if worst <= 0 or worst / width < r.min_credit_fraction:
            return SymbolTick(**base, note=(
                f"credit {worst:.2f} is {worst / width:.1%} of the {width:g} width, below "
                f"{r.min_credit_fraction:.0%}"))
        pop = spread.probability_of_profit(chain.spot, T, chain.rate, iv, worst,
                                           chain.dividend_yield)
        context = {
            "spot": chain.spot, "atm_iv": iv, "expiry": expiry.isoformat(),
            "dte": chain.dte(expiry), "short_strike": short.contract.strike,
            "long_strike": long.contract.strike, "width": width,
            "short_delta": short.delta if short.delta is not None
            else float(np.nan), "mid_credit": round(mid, 4), "natural_credit": round(natural, 4),
            "probability_of_profit": round(pop, 4),
            # The legs' mids as this chain quoted them: the risk gate prices the trade with them.
            "leg_mids": {c.occ: q.mid for c, q in quotes.items()},
            **trend,
        }
        if ladder is not None:
            context["ladder"] = ladder
        tag = "" if profile == DEFAULT_PROFILE else f"{profile}:"
        intent = TradeIntent(
            intent_id=(f"{self.symbol}:{spread.kind.value}:{tag}"
                       f"{now.astimezone(NEW_YORK):%Y%m%dT%H%M}"),
            symbol=self.symbol,
            spread=spread,
            limit_price=limit,
            natural_price=natural,
            max_loss_per_spread=spread.max_loss(worst),
            max_profit_per_spread=spread.max_profit(worst),
            margin_per_spread=spread.margin(),
            decided_at=now,
            context={**context, "profile": profile},
            profile=profile,
        )
        self.log.debug("intent", intent_id=intent.intent_id, **{k: v for k, v in context.items()})
        return SymbolTick(**base, intents=(intent,))
