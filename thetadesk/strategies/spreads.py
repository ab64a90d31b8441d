"""Defined-risk spread structures: their legs, prices, payoff, risk and probability of profit.

Units, fixed for every structure:

- ``premium`` is per share, signed from the trader's side: > 0 a net credit received, < 0 a net
  debit paid (a bull call debit bought for 1.20 has premium -1.20). ``net_premium`` returns it.
- Money amounts (``payoff_at_expiry``, ``max_profit``, ``max_loss``, ``margin``,
  ``buying_power_reduction``) are in dollars for ONE spread: each leg's ``ratio`` contracts times
  the contract multiplier. Multiply by the number of spreads for a position.
- Underlying prices (``breakevens``, the argument of ``payoff_at_expiry``) are per share.

Everything is computed from the legs, not from a per-structure formula: the payoff at expiry is
piecewise linear with kinks at the strikes, so its extremes and zeros are found exactly at those
kinks. The builders check that legs form the structure they name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from typing import Literal

import numpy as np

from thetadesk.errors import DataError
from thetadesk.models import Contract, Leg, Quote, Right

__all__ = [
    "Spread",
    "SpreadKind",
    "bear_call_credit",
    "bear_put_debit",
    "bull_call_debit",
    "bull_put_credit",
    "iron_condor",
]


class SpreadKind(StrEnum):
    BULL_PUT_CREDIT = "bull_put_credit"
    BEAR_CALL_CREDIT = "bear_call_credit"
    IRON_CONDOR = "iron_condor"
    BULL_CALL_DEBIT = "bull_call_debit"
    BEAR_PUT_DEBIT = "bear_put_debit"

    @property
    def is_credit(self) -> bool:
        return self in {
            SpreadKind.BULL_PUT_CREDIT,
            SpreadKind.BEAR_CALL_CREDIT,
            SpreadKind.IRON_CONDOR,
        }


@dataclass(frozen=True, slots=True)
class Spread:
    """A multi-leg option position on one underlying and one expiry, per unit (one spread)."""

    kind: SpreadKind
    legs: tuple[Leg, ...]

    def __post_init__(self) -> None:
        if not self.legs:
            raise DataError("a spread needs at least one leg")
        first = self.legs[0].contract
        for leg in self.legs[1:]:
            c = leg.contract
            if (c.underlying, c.expiry, c.multiplier) != (
                first.underlying,
                first.expiry,
                first.multiplier,
            ):
                raise DataError(
                    f"{self.kind}: every leg must share underlying, expiry and multiplier; "
                    f"{c} differs from {first}"
                )
        if len({leg.contract for leg in self.legs}) != len(self.legs):
            raise DataError(f"{self.kind}: the same contract appears in two legs")

    @property
    def underlying(self) -> str:
        return self.legs[0].contract.underlying

    @property
    def expiry(self):
        return self.legs[0].contract.expiry

    @property
    def multiplier(self) -> int:
        return self.legs[0].contract.multiplier

    @property
    def strikes(self) -> tuple[float, ...]:
        return tuple(sorted({leg.contract.strike for leg in self.legs}))

    # -- prices ---------------------------------------------------------------------------

    def net_premium(
        self, quotes: Mapping[Contract, Quote], at: Literal["mid", "natural"] = "mid"
    ) -> float:
        """Net premium per share for opening one spread: > 0 credit, < 0 debit.

        ``at="mid"`` prices every leg at its mid; ``at="natural"`` buys at the ask and sells at
        the bid (what crossing the spread on every leg would cost).
        """
        if at not in ("mid", "natural"):
            raise ValueError(f"at must be 'mid' or 'natural', got {at!r}")
        total = 0.0
        for leg in self.legs:
            quote = quotes.get(leg.contract)
            if quote is None:
                raise DataError(f"{self.kind}: no quote for leg {leg.contract}")
            if at == "mid":
                price = quote.mid
            else:
                price = quote.ask if leg.is_long else quote.bid
            total -= leg.ratio * price
        return total

    # -- payoff at expiry -----------------------------------------------------------------

    def legs_value_at_expiry(self, underlying_price) -> np.ndarray:
        """Value per share of the legs alone at expiry (no premium), vectorised over prices."""
        s = np.asarray(underlying_price, dtype=np.float64)
        value = np.zeros_like(s)
        for leg in self.legs:
            c = leg.contract
            intrinsic = s - c.strike if c.right is Right.CALL else c.strike - s
            value = value + leg.ratio * np.maximum(intrinsic, 0.0)
        return value

    def payoff_at_expiry(self, underlying_price, premium: float) -> np.ndarray:
        """Profit or loss in dollars per spread at expiry, vectorised over underlying prices."""
        return self.multiplier * (self.legs_value_at_expiry(underlying_price) + premium)

    def _call_slope(self) -> int:
        # d(value)/dS above the highest strike: the net number of calls.
        return sum(leg.ratio for leg in self.legs if leg.contract.is_call)

    def _extremes(self, premium: float) -> tuple[float, float]:
        # The payoff is linear between kinks, so its extremes on [0, inf) sit at 0, a strike, or
        # at infinity when the net call position is not flat.
        nodes = np.array([0.0, *self.strikes])
        values = self.payoff_at_expiry(nodes, premium)
        hi, lo = float(values.max()), float(values.min())
        slope = self._call_slope()
        if slope > 0:
            hi = math.inf
        elif slope < 0:
            lo = -math.inf
        return hi, lo

    def max_profit(self, premium: float) -> float:
        """Largest profit at expiry in dollars per spread (inf if unbounded)."""
        return self._extremes(premium)[0]

    def max_loss(self, premium: float) -> float:
        """Largest loss at expiry in dollars per spread, as a positive number (0 if none)."""
        return max(0.0, -self._extremes(premium)[1])

    def breakevens(self, premium: float) -> tuple[float, ...]:
        """Underlying prices at expiry where the spread neither makes nor loses money."""
        nodes = [0.0, *self.strikes]
        values = [float(v) for v in self.legs_value_at_expiry(np.array(nodes)) + premium]
        roots: list[float] = []
        for (x0, y0), (x1, y1) in pairwise(zip(nodes, values, strict=True)):
            if y0 == 0.0 and x0 > 0.0:
                roots.append(x0)
            elif y0 * y1 < 0.0:
                roots.append(x0 + (x1 - x0) * y0 / (y0 - y1))
        last_x, last_y = nodes[-1], values[-1]
        slope = self._call_slope()
        if last_y == 0.0 and slope != 0:
            roots.append(last_x)
        elif slope != 0 and last_y * slope < 0.0:
            roots.append(last_x - last_y / slope)
        return tuple(sorted(set(roots)))

    # -- capital --------------------------------------------------------------------------

    def margin(self) -> float:
        """Maintenance margin a broker holds for the spread, dollars per spread.

        For defined-risk spreads this is the worst value of the legs at expiry, before the
        premium: the strike width times the multiplier for a credit vertical, the wider side of
        an iron condor (only one side can finish in the money), nothing for a debit spread,
        which is paid in full. (Alpaca holds width x 100 per credit spread and credits the
        premium to cash.)
        """
        nodes = np.array([0.0, *self.strikes])
        worst = float(self.legs_value_at_expiry(nodes).min())
        if self._call_slope() < 0:
            return math.inf
        return self.multiplier * max(0.0, -worst)

    def buying_power_reduction(self, premium: float) -> float:
        """Buying power the spread takes on opening, dollars per spread: margin plus any debit,
        less any credit. For a defined-risk spread this equals ``max_loss(premium)``."""
        return self.margin() - self.multiplier * premium

    # -- probability ------------------------------------------------------------------------

    def probability_of_profit(
        self, spot: float, T: float, r: float, sigma: float, premium: float, q: float = 0.0
    ) -> float:
        """Risk-neutral probability that the payoff at expiry is > 0.

        The underlying at expiry is lognormal with forward ``spot * exp((r - q) T)`` and
        volatility ``sigma`` (annualised, T in years), so P(S_T > a) = N(d2(a)) with
        d2(a) = (ln(spot / a) + (r - q - sigma^2 / 2) T) / (sigma sqrt(T)).
        """
        values = (spot, T, r, sigma, premium, q)
        if not all(math.isfinite(v) for v in values) or spot <= 0 or T <= 0 or sigma <= 0:
            raise DataError(
                f"probability_of_profit needs finite spot > 0, T > 0, sigma > 0; got "
                f"spot={spot}, T={T}, sigma={sigma}, r={r}, q={q}, premium={premium}"
            )
        edges = [0.0, *self.breakevens(premium), math.inf]
        vol = sigma * math.sqrt(T)

        def prob_above(a: float) -> float:
            if a <= 0.0:
                return 1.0
            if math.isinf(a):
                return 0.0
            d2 = (math.log(spot / a) + (r - q - 0.5 * sigma * sigma) * T) / vol
            return 0.5 * math.erfc(-d2 / math.sqrt(2.0))  # N(d2), as scipy's ndtr

        total = 0.0
        for lo, hi in pairwise(edges):
            probe = lo + 1.0 if math.isinf(hi) else 0.5 * (lo + hi)
            if self.payoff_at_expiry(probe, premium) > 0.0:
                total += prob_above(lo) - prob_above(hi)
        return min(1.0, max(0.0, total))


# -- builders -------------------------------------------------------------------------------


def _check(kind: SpreadKind, contracts: dict[str, Contract], rights: dict[str, Right]) -> None:
    for name, contract in contracts.items():
        if contract.right is not rights[name]:
            raise DataError(f"{kind}: {name} must be a {rights[name].name.lower()}, got {contract}")


def _ordered(kind: SpreadKind, description: str, *strikes: float, strict: tuple[bool, ...]) -> None:
    for (a, b), is_strict in zip(pairwise(strikes), strict, strict=True):
        if (a >= b) if is_strict else (a > b):
            raise DataError(f"{kind}: strikes must satisfy {description}, got {strikes}")


def bull_put_credit(short_put: Contract, long_put: Contract) -> Spread:
    """Sell a put, buy a lower-strike put: a credit, profits if the underlying stays above."""
    kind = SpreadKind.BULL_PUT_CREDIT
    _check(kind, {"short_put": short_put, "long_put": long_put}, {"short_put": Right.PUT,
                                                                 "long_put": Right.PUT})
    _ordered(kind, "long put < short put", long_put.strike, short_put.strike, strict=(True,))
    return Spread(kind, (Leg(short_put, -1), Leg(long_put, 1)))


def bear_call_credit(short_call: Contract, long_call: Contract) -> Spread:
    """Sell a call, buy a higher-strike call: a credit, profits if the underlying stays below."""
    kind = SpreadKind.BEAR_CALL_CREDIT
    _check(kind, {"short_call": short_call, "long_call": long_call},
           {"short_call": Right.CALL, "long_call": Right.CALL})
    _ordered(kind, "short call < long call", short_call.strike, long_call.strike, strict=(True,))
    return Spread(kind, (Leg(short_call, -1), Leg(long_call, 1)))


def iron_condor(
    long_put: Contract, short_put: Contract, short_call: Contract, long_call: Contract
) -> Spread:
    """A bull put credit spread and a bear call credit spread on the same expiry."""
    kind = SpreadKind.IRON_CONDOR
    _check(
        kind,
        {"long_put": long_put, "short_put": short_put, "short_call": short_call,
         "long_call": long_call},
        {"long_put": Right.PUT, "short_put": Right.PUT, "short_call": Right.CALL,
         "long_call": Right.CALL},
    )
    _ordered(
        kind,
        "long put < short put <= short call < long call",
        long_put.strike, short_put.strike, short_call.strike, long_call.strike,
        strict=(True, False, True),
    )
    return Spread(
        kind, (Leg(long_put, 1), Leg(short_put, -1), Leg(short_call, -1), Leg(long_call, 1))
    )


def bull_call_debit(long_call: Contract, short_call: Contract) -> Spread:
    """Buy a call, sell a higher-strike call: a debit, profits if the underlying rises."""
    kind = SpreadKind.BULL_CALL_DEBIT
    _check(kind, {"long_call": long_call, "short_call": short_call},
           {"long_call": Right.CALL, "short_call": Right.CALL})
    _ordered(kind, "long call < short call", long_call.strike, short_call.strike, strict=(True,))
    return Spread(kind, (Leg(long_call, 1), Leg(short_call, -1)))


def bear_put_debit(long_put: Contract, short_put: Contract) -> Spread:
    """Buy a put, sell a lower-strike put: a debit, profits if the underlying falls."""
    kind = SpreadKind.BEAR_PUT_DEBIT
    _check(kind, {"long_put": long_put, "short_put": short_put},
           {"long_put": Right.PUT, "short_put": Right.PUT})
    _ordered(kind, "short put < long put", short_put.strike, long_put.strike, strict=(True,))
    return Spread(kind, (Leg(long_put, 1), Leg(short_put, -1)))
