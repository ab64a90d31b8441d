"""One underlying's decisions: market snapshot -> signals -> trade intents.

The first strategy sells a bull put credit spread: short put near a target delta at the expiry
nearest a target DTE, long put ``width`` dollars lower, when at-the-money implied volatility is
rich enough and the credit is a large enough fraction of the width. Accounts decide whether to
take an intent (they skip symbols where they already hold a position) and how many to trade.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time

import numpy as np

from thetadesk.chain import NEW_YORK, OptionChain
from thetadesk.errors import DataError
from thetadesk.logging import get_logger
from thetadesk.messages import SymbolTick, TradeIntent
from thetadesk.models import Right
from thetadesk.ports import MarketData
from thetadesk.pricing import implied_vol
from thetadesk.strategies.spreads import bull_put_credit


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
    def __init__(self, symbol: str, rules: BullPutRules, market: MarketData) -> None:
        self.symbol = symbol
        self.rules = rules
        self.market = market
        self.log = get_logger("symbol").bind(symbol=symbol)

    def _chain(self, now: datetime) -> OptionChain:
        """A chain holding the expiry nearest the target DTE (at least ``min_dte`` out), read as
        narrowly as possible. If any expiry lies within ``NEAR_DAYS`` of the target, the nearest
        one (and any tie) does too, so the narrow read chooses what the whole chain would;
        otherwise the expiries that can be nearest (up to twice the target), then the whole
        chain."""
        r = self.rules
        low = max(r.min_dte, r.target_dte - NEAR_DAYS)
        for window in ((low, r.target_dte + NEAR_DAYS), (r.min_dte, 2 * r.target_dte)):
            chain = self.market.chain(self.symbol, now, min_dte=window[0], max_dte=window[1])
            if chain.expiries():
                return chain
        return self.market.chain(self.symbol, now)

    def tick(self, now: datetime) -> SymbolTick:
        r = self.rules
        if not r.in_entry_window(now):
            return SymbolTick(self.symbol, now, None, None, note="outside the entry window")
        try:
            chain = self._chain(now)
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
        intent = TradeIntent(
            intent_id=f"{self.symbol}:{spread.kind.value}:{now.astimezone(NEW_YORK):%Y%m%dT%H%M}",
            symbol=self.symbol,
            spread=spread,
            limit_price=limit,
            natural_price=natural,
            max_loss_per_spread=spread.max_loss(limit),
            max_profit_per_spread=spread.max_profit(limit),
            margin_per_spread=spread.margin(),
            decided_at=now,
            context=context,
        )
        self.log.debug("intent", intent_id=intent.intent_id, **{k: v for k, v in context.items()})
        return SymbolTick(**base, intents=(intent,))
