"""Rolling a tested credit spread: the same structure further out in time and away in strike.

``choose_roll`` picks the new spread from a chain (pure): the expiry nearest ``target_dte``
strictly after the old one; on each side (puts, calls) the short strike nearest
``short_delta``, never closer to the money than the old short strike and strictly further
away on a tested side; the long strike at the old width. The roll is worth doing only for a
net credit or a debit of at most ``max_debit`` per share, at natural prices on both halves
(what crossing the spreads would give: closing at the old legs' natural, opening at the new
ones').
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from thetadesk.chain import OptionChain, OptionQuote
from thetadesk.errors import DataError
from thetadesk.models import Leg, Right
from thetadesk.positions.rules import RollRules
from thetadesk.strategies.spreads import (
    Spread,
    SpreadKind,
    bear_call_credit,
    bull_put_credit,
    iron_condor,
)

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class RollPlan:
    """The spread to open, its prices per share (> 0 credit) and the roll's net."""

    spread: Spread
    open_natural: float
    open_mid: float
    close_natural: float  # what closing the old legs gives (< 0: a debit)
    detail: dict[str, Any]

    @property
    def net(self) -> float:
        return self.open_natural + self.close_natural


def choose_roll(chain: OptionChain, legs: tuple[Leg, ...], strategy: str,
                close_natural: float, rules: RollRules, tested: frozenset[Right],
                ) -> RollPlan | str:
    """The roll of the spread ``legs`` (a ``strategy`` credit structure) or, if there is none
    worth doing, a sentence saying why. ``tested``: the sides whose short leg is tested."""
    try:
        kind = SpreadKind(strategy)
    except ValueError:
        return f"a {strategy} position is not rolled"
    if not kind.is_credit:
        return f"a {strategy} position is not rolled (rolls are for credit spreads)"
    old_expiry = legs[0].contract.expiry
    try:
        expiry = chain.nearest_expiry(rules.target_dte, min_dte=chain.dte(old_expiry) + 1)
    except DataError:
        return f"no expiry listed after {old_expiry}"
    new: dict[Right, tuple[OptionQuote, OptionQuote]] = {}
    for right in (Right.PUT, Right.CALL):
        shorts = [leg for leg in legs if leg.ratio < 0 and leg.contract.right is right]
        longs = [leg for leg in legs if leg.ratio > 0 and leg.contract.right is right]
        if not shorts:
            continue
        if len(shorts) != 1 or len(longs) != 1:
            return f"{strategy}: expected one short and one long {right.name.lower()}"
        old_short, width = shorts[0].contract.strike, abs(
            shorts[0].contract.strike - longs[0].contract.strike)
        picked = _short(chain, expiry, right, rules.short_delta, old_short, right in tested)
        if isinstance(picked, str):
            return picked
        target = picked.contract.strike - width if right is Right.PUT else (
            picked.contract.strike + width)
        wing = [r for r in chain.rows(expiry, right) if abs(r.contract.strike - target) < 1e-6]
        if not wing:
            return f"no {target:g} {right.name.lower()} listed at {expiry} for the long leg"
        new[right] = (picked, wing[0])
    try:
        if kind is SpreadKind.BULL_PUT_CREDIT:
            spread = bull_put_credit(new[Right.PUT][0].contract, new[Right.PUT][1].contract)
        elif kind is SpreadKind.BEAR_CALL_CREDIT:
            spread = bear_call_credit(new[Right.CALL][0].contract, new[Right.CALL][1].contract)
        else:
            spread = iron_condor(new[Right.PUT][1].contract, new[Right.PUT][0].contract,
                                 new[Right.CALL][0].contract, new[Right.CALL][1].contract)
    except (DataError, KeyError) as exc:
        return f"the rolled {strategy} cannot be built: {exc}"
    quotes = {row.contract: row.quote for pair in new.values() for row in pair}
    open_natural = spread.net_premium(quotes, at="natural")
    open_mid = spread.net_premium(quotes, at="mid")
    net = open_natural + close_natural
    detail = {
        "new_expiry": expiry.isoformat(), "new_dte": chain.dte(expiry),
        "new_legs": [f"{leg.ratio:+d} {leg.contract.occ}" for leg in spread.legs],
        "open_natural": round(open_natural, 4), "open_mid": round(open_mid, 4),
        "close_natural": round(close_natural, 4), "net": round(net, 4),
        "max_debit": rules.max_debit,
    }
    if not math.isfinite(open_natural) or open_natural <= 0:
        return f"the rolled spread bids no credit ({open_natural:.2f} at natural)"
    if net < -rules.max_debit - _EPS:
        return (f"the roll would cost {-net:.2f}/share net (close {close_natural:+.2f}, open "
                f"{open_natural:+.2f}), more than the {rules.max_debit:.2f} allowed")
    return RollPlan(spread, open_natural, open_mid, close_natural, detail)


def _short(chain: OptionChain, expiry, right: Right, delta: float, old: float,
           tested: bool) -> OptionQuote | str:
    """The new short strike: nearest ``delta``, not closer to the money than ``old``
    (strictly further on a tested side); if the delta pick is closer, the nearest strike that
    is far enough."""
    try:
        pick = chain.strike_by_delta(expiry, delta, right)
    except DataError as exc:
        return str(exc)

    def far_enough(strike: float) -> bool:
        if right is Right.PUT:
            return strike < old - _EPS if tested else strike <= old + _EPS
        return strike > old + _EPS if tested else strike >= old - _EPS

    if far_enough(pick.contract.strike):
        return pick
    rows = [r for r in chain.rows(expiry, right) if far_enough(r.contract.strike)
            and r.quote.bid > 0]
    if not rows:
        return f"no {right.name.lower()} at {expiry} further out than the {old:g} strike"
    return max(rows, key=lambda r: r.contract.strike) if right is Right.PUT else min(
        rows, key=lambda r: r.contract.strike)
