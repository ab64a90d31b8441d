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
from thetadesk.strategies.spreads import bull_put_credit

if TYPE_CHECKING:
    from thetadesk.strategies.adaptive import AdaptiveRules


@dataclass(frozen=True, slots=True)
class BullPutRules:
    target_dte: int
    min_dte: int
    short_delta: float
    width: float
    min_iv: float
    min_credit_fraction: float
    entry_start: time
    entry_end: time

    @classmethod
    def from_config(cls, strategy) -> BullPutRules:
        return cls(strategy.target_dte, strategy.min_dte, strategy.short_delta, strategy.width,
                   strategy.min_iv, strategy.min_credit_fraction, strategy.entry_start,
                   strategy.entry_end)

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
        self._adaptive = None
        if any(not isinstance(r, BullPutRules) for r in self.profiles.values()):
            from thetadesk.strategies.adaptive import AdaptiveEngine

            self._adaptive = AdaptiveEngine(symbol, market, ledger)

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
        try:
            short = chain.strike_by_delta(expiry, -r.short_delta, Right.PUT)
        except DataError as exc:
            return SymbolTick(**base, note=str(exc))
        wanted = round(short.contract.strike - r.width, 3)
        long = chain.find(expiry, Right.PUT, wanted)
        if long is None:
            return SymbolTick(**base, note=f"no {wanted:g} put listed for the long leg")
        spread = bull_put_credit(short.contract, long.contract)
        quotes = {short.contract: short.quote, long.contract: long.quote}
        mid = spread.net_premium(quotes, at="mid")
        natural = spread.net_premium(quotes, at="natural")
        # A marketable limit: the natural credit, floored to the cent. (Working orders between
        # natural and mid arrive with the fill models of the simulator issue.)
        limit = math.floor(natural * 100 + 1e-9) / 100
        if limit <= 0 or limit / r.width < r.min_credit_fraction:
            return SymbolTick(**base, note=(
                f"credit {limit:.2f} is {limit / r.width:.1%} of the {r.width:g} width, below "
                f"{r.min_credit_fraction:.0%}"))
        T = chain.years_to_expiry(expiry)
        pop = spread.probability_of_profit(chain.spot, T, chain.rate, iv, limit,
                                           chain.dividend_yield)
        context = {
            "spot": chain.spot, "atm_iv": iv, "expiry": expiry.isoformat(),
            "dte": chain.dte(expiry), "short_strike": short.contract.strike,
            "long_strike": wanted, "short_delta": short.delta if short.delta is not None
            else float(np.nan), "mid_credit": round(mid, 4), "natural_credit": round(natural, 4),
            "probability_of_profit": round(pop, 4),
            # The legs' mids as this chain quoted them: the risk gate prices the trade with them.
            "leg_mids": {c.occ: q.mid for c, q in quotes.items()},
        }
        tag = "" if profile == DEFAULT_PROFILE else f"{profile}:"
        intent = TradeIntent(
            intent_id=(f"{self.symbol}:{spread.kind.value}:{tag}"
                       f"{now.astimezone(NEW_YORK):%Y%m%dT%H%M}"),
            symbol=self.symbol,
            spread=spread,
            limit_price=limit,
            natural_price=natural,
            max_loss_per_spread=spread.max_loss(limit),
            max_profit_per_spread=spread.max_profit(limit),
            margin_per_spread=spread.margin(),
            decided_at=now,
            context={**context, "profile": profile},
            profile=profile,
        )
        self.log.debug("intent", intent_id=intent.intent_id, **{k: v for k, v in context.items()})
        return SymbolTick(**base, intents=(intent,))
