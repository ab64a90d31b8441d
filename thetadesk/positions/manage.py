"""One position, one tick: the management decision with its reason and numbers (pure).

Prices are net per share with > 0 a credit (``thetadesk.models``): ``entry_price`` is what the
opening fills received (a credit spread > 0), ``value`` what the legs are worth now at mid from
the holder's side (a short spread < 0), so the profit per share is ``entry_price + value``.
``max_profit`` and ``max_loss`` are dollars per spread, positive. Deltas are absolute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from thetadesk.positions.rules import ManageRules

_EPS = 1e-9  # prices are in cents: a threshold met to the cent is met
CREDIT_STRATEGIES = frozenset({"bull_put_credit", "bear_call_credit", "iron_condor"})


@dataclass(frozen=True, slots=True)
class ShortLeg:
    strike: float
    is_call: bool
    delta: float  # |delta| per share, NaN when it could not be computed


@dataclass(frozen=True, slots=True)
class PositionView:
    """What ``decide`` needs to know about a position at one instant."""

    position_id: str
    strategy: str
    quantity: int  # spreads held now
    initial_quantity: int  # spreads opened (what the ladder splits)
    entry_price: float  # net per share, > 0 credit
    value: float  # net per share at mid, holder's side
    max_profit: float  # dollars per spread
    max_loss: float  # dollars per spread
    multiplier: int
    dte: int  # calendar days to expiry
    spot: float | None
    shorts: tuple[ShortLeg, ...] = ()
    rungs_hit: int = 0
    peak_profit: float | None = None  # the highest profit fraction since the first rung
    reduced: bool = False
    added: bool = False
    rolls: int = 0

    @property
    def profit_per_spread(self) -> float:
        """Dollars per spread if closed at mid now (> 0 a profit)."""
        return (self.entry_price + self.value) * self.multiplier

    @property
    def profit_fraction(self) -> float:
        """Profit as a fraction of max profit (1.0: all of it; < 0 a loss)."""
        return self.profit_per_spread / self.max_profit if self.max_profit > 0 else math.nan

    @property
    def loss_fraction(self) -> float:
        """Loss as a fraction of max loss (> 0 a loss)."""
        return -self.profit_per_spread / self.max_loss if self.max_loss > 0 else math.nan

    def numbers(self) -> dict[str, Any]:
        """The figures every decision is logged and recorded with."""
        return {
            "quantity": self.quantity, "entry_price": round(self.entry_price, 4),
            "value": round(self.value, 4), "profit_per_spread": round(self.profit_per_spread, 2),
            "profit_fraction": _r(self.profit_fraction), "loss_fraction": _r(self.loss_fraction),
            "dte": self.dte, "spot": self.spot,
            "short_deltas": [_r(s.delta) for s in self.shorts],
        }


@dataclass(frozen=True, slots=True)
class Action:
    """Close ``quantity`` spreads (``kind`` "close"), roll them all ("roll"), or add ``quantity``
    more ("add"). ``rung``: the ladder rung reached (1-based) for scale-outs and take-profit."""

    kind: str
    reason: str
    quantity: int
    detail: dict[str, Any] = field(default_factory=dict)
    rung: int | None = None


def ladder_plan(initial: int, rungs: int) -> tuple[int, ...]:
    """The spreads closed at each of ``rungs`` rungs out of ``initial``: an even split, the
    remainder to the latest rungs, summing to ``initial`` (so a single spread is held to the
    last rung, as with one take-profit level, and a larger one leaves something to trail)."""
    if rungs < 1 or initial < 0:
        raise ValueError(f"a ladder needs >= 1 rung and >= 0 spreads, got {rungs}, {initial}")
    base, extra = divmod(initial, rungs)
    return tuple(base + (1 if i >= rungs - extra else 0) for i in range(rungs))


def decide(view: PositionView, rules: ManageRules, *, allow_roll: bool = True,
           ) -> Action | None:
    """The action to take on ``view`` now, or None (see ``thetadesk.positions``)."""
    numbers = view.numbers()
    everything = view.quantity
    # Too cheap to close: a credit spread that costs at most min_close_value to buy back is
    # left to expire (closing it would pay commissions and the spread for almost nothing).
    cheap = (rules.min_close_value is not None and view.entry_price > 0
             and -view.value <= rules.min_close_value + _EPS)
    if not rules.hold_to_expiry and view.dte <= rules.close_dte and not cheap:
        return Action("close", "time", everything, {
            **numbers, "why": f"{view.dte} days to expiry <= {rules.close_dte}"})
    premium = abs(view.entry_price)
    loss = -(view.entry_price + view.value)
    stop = rules.stop_multiple
    if stop is not None and premium > 0 and loss >= stop * premium - _EPS:
        return Action("close", "stop", everything, {**numbers, "why": (
            f"loss {loss:.2f}/share >= {stop:g} x the {premium:.2f} premium")})
    if rules.stop_on_breach and view.spot is not None:
        for leg in view.shorts:
            breached = view.spot > leg.strike if leg.is_call else view.spot < leg.strike
            if breached:
                side = "above" if leg.is_call else "below"
                return Action("close", "breach", everything, {**numbers, "why": (
                    f"underlying {view.spot:.2f} {side} the short {leg.strike:g} "
                    f"{'call' if leg.is_call else 'put'}")})
    tested = max((s.delta for s in view.shorts if math.isfinite(s.delta)), default=math.nan)
    if rules.short_delta_stop is not None and tested >= rules.short_delta_stop - _EPS:
        return Action("close", "short_delta", everything, {**numbers, "why": (
            f"short leg delta {tested:.2f} >= {rules.short_delta_stop:.2f}")})
    roll = rules.roll
    if (allow_roll and roll.enabled and view.rolls < roll.max_rolls
            and view.strategy in CREDIT_STRATEGIES and tested >= roll.when_short_delta - _EPS):
        return Action("roll", "roll", everything, {**numbers, "why": (
            f"tested: short leg delta {tested:.2f} >= {roll.when_short_delta:.2f}")})
    profit = view.profit_fraction
    if math.isfinite(profit) and not cheap:
        rungs = rules.rungs
        reached = max((i for i, level in enumerate(rungs) if profit >= level - _EPS),
                      default=-1)
        if reached + 1 > view.rungs_hit:
            last = reached == len(rungs) - 1
            plan = ladder_plan(view.initial_quantity, len(rungs))
            keep = max(0, view.initial_quantity - sum(plan[:reached + 1]))
            quantity = everything if last else max(0, everything - keep)
            return Action("close", "take_profit" if last else "scale_out", quantity, {
                **numbers, "why": f"profit {profit:.0%} of max >= rung {reached + 1} at "
                                  f"{rungs[reached]:.0%}", "plan": list(plan)},
                rung=reached + 1)
        if (view.rungs_hit > 0 and rules.trail is not None and view.peak_profit is not None
                and profit <= view.peak_profit - rules.trail + _EPS):
            return Action("close", "trail", everything, {**numbers, "why": (
                f"profit {profit:.0%} of max fell {rules.trail:.0%} from its "
                f"{view.peak_profit:.0%} peak"), "peak_profit": _r(view.peak_profit)})
    repair = rules.repair
    lost = view.loss_fraction
    if (repair.reduce_at_loss is not None and not view.reduced and everything >= 2
            and math.isfinite(lost) and lost >= repair.reduce_at_loss - _EPS):
        cut = max(1, min(everything - 1, math.floor(everything * repair.reduce_fraction)))
        return Action("close", "repair_reduce", cut, {**numbers, "why": (
            f"loss {lost:.0%} of max loss >= {repair.reduce_at_loss:.0%}: cut {cut} of "
            f"{everything}")})
    if (repair.add_at_profit is not None and not view.added and view.rungs_hit == 0
            and math.isfinite(profit) and profit >= repair.add_at_profit - _EPS):
        more = max(1, math.floor(view.initial_quantity * repair.add_fraction))
        return Action("add", "repair_add", more, {**numbers, "why": (
            f"profit {profit:.0%} of max >= {repair.add_at_profit:.0%}: add {more}")})
    return None


def _r(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None
