"""Strategy selection: which structure for the regime and the price of volatility, then which
strikes and expiry, ranked by expected value per unit of risk and probability of profit.

The structure table (``structure_for``): credit spreads when IV rank is at least
``credit_min_rank`` (options are rich: sell them), debit spreads when it is at most
``debit_max_rank`` (cheap: buy them); the direction from the trend: a bull put credit or a bull
call debit in an uptrend, a bear call credit or a bear put debit in a downtrend, an iron condor
in a range (a range with cheap options has no structure here: no trade). Between the two
thresholds, and while IV rank is unknown (too little history), credit structures are used, as
the plain first strategy does, and the choice says so.

Candidates (``candidates``) are built from the chain around the target delta and DTE; each is
priced at its limit (mid) and natural, and measured:

- ``pop``: the probability the spread makes money at expiry (lognormal, at-the-money IV);
- ``expected_value``: the mean P&L at expiry per spread in dollars, with the underlying lognormal
  at the risk-neutral drift and the volatility the caller expects to be realised (``real_vol``,
  e.g. the recent realised volatility): with implied above realised a seller's expectation is
  positive, a buyer's negative, and the reverse;
- ``ev_per_risk``: expected value over max loss.

``rank`` orders them by ``ev_per_risk`` then ``pop`` and says why each one not chosen lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np

from thetadesk.chain import OptionChain, OptionQuote
from thetadesk.errors import DataError
from thetadesk.models import Right
from thetadesk.pricing import bsm_price
from thetadesk.signals.regime import Regime, Trend
from thetadesk.strategies.spreads import (
    Spread,
    SpreadKind,
    bear_call_credit,
    bear_put_debit,
    bull_call_debit,
    bull_put_credit,
    iron_condor,
)

__all__ = ["Candidate", "SelectorRules", "candidates", "expected_value", "rank",
           "structure_for"]

_CREDIT = {Trend.UP: SpreadKind.BULL_PUT_CREDIT, Trend.DOWN: SpreadKind.BEAR_CALL_CREDIT,
           Trend.RANGE: SpreadKind.IRON_CONDOR}
_DEBIT = {Trend.UP: SpreadKind.BULL_CALL_DEBIT, Trend.DOWN: SpreadKind.BEAR_PUT_DEBIT}


@dataclass(frozen=True, slots=True)
class SelectorRules:
    credit_min_rank: float = 50.0  # IV rank (0..100) from which options are sold
    debit_max_rank: float = 25.0  # IV rank up to which they are bought

    def __post_init__(self) -> None:
        if not 0 <= self.debit_max_rank < self.credit_min_rank <= 100:
            raise ValueError(f"selector: need 0 <= debit_max_rank ({self.debit_max_rank}) < "
                             f"credit_min_rank ({self.credit_min_rank}) <= 100")


def structure_for(regime: Regime, iv_rank: float, rules: SelectorRules = SelectorRules(),
                  allowed: frozenset[SpreadKind] | None = None
                  ) -> tuple[SpreadKind | None, str]:
    """The structure for ``regime`` at ``iv_rank`` (NaN: unknown), and why; None: no trade.
    ``allowed``: the structures the regime's parameters permit (None: all)."""
    known = math.isfinite(iv_rank)
    if known and iv_rank <= rules.debit_max_rank:
        kind = _DEBIT.get(regime.trend)
        why = f"IV rank {iv_rank:.0f} <= {rules.debit_max_rank:g}: buy premium"
        if kind is None:
            return None, f"{regime.name}: {why}, but a range has no debit structure: no trade"
    else:
        kind = _CREDIT[regime.trend]
        if not known:
            why = "IV rank unknown (too little IV history): sell premium, as the plain strategy"
        elif iv_rank >= rules.credit_min_rank:
            why = f"IV rank {iv_rank:.0f} >= {rules.credit_min_rank:g}: sell premium"
        else:
            why = (f"IV rank {iv_rank:.0f} between {rules.debit_max_rank:g} and "
                   f"{rules.credit_min_rank:g}: sell premium")
    why = f"{regime.name}: {why}: {kind.value}"
    if allowed is not None and kind not in allowed:
        return None, f"{why}, not allowed in this regime: no trade"
    return kind, why


def expected_value(spread: Spread, premium: float, spot: float, T: float, r: float,
                   real_vol: float, q: float = 0.0) -> float:
    """Mean P&L at expiry in dollars per spread opened at ``premium`` (per share, > 0 credit):
    each leg's expected value at expiry under a lognormal underlying with drift ``r - q`` and
    volatility ``real_vol`` (the undiscounted Black-Scholes price at that volatility)."""
    if not all(math.isfinite(v) for v in (premium, spot, T, r, real_vol, q)):
        raise DataError("expected_value needs finite inputs")
    if spot <= 0 or T <= 0 or real_vol <= 0:
        raise DataError(f"expected_value needs spot > 0, T > 0, vol > 0; got {spot}, {T}, "
                        f"{real_vol}")
    strikes = np.array([leg.contract.strike for leg in spread.legs])
    calls = np.array([leg.contract.right is Right.CALL for leg in spread.legs])
    ratios = np.array([leg.ratio for leg in spread.legs], dtype=float)
    values = np.asarray(bsm_price(spot, strikes, T, r, real_vol, q, calls)) * math.exp(r * T)
    return float(spread.multiplier * (premium + float(np.dot(ratios, values))))


@dataclass(frozen=True, slots=True)
class Candidate:
    spread: Spread
    expiry: date
    dte: int
    leg_delta: float  # signed delta of the leg placed at the target delta: the short leg of a
    # credit spread (the short put of an iron condor), the long leg of a debit spread
    mid: float  # net premium at mid, per share (> 0 credit)
    natural: float
    limit: float  # the opening limit, net premium per share signed as ``mid``
    max_loss: float  # dollars per spread
    max_profit: float
    pop: float
    expected_value: float
    ev_per_risk: float

    def describe(self) -> dict:
        return {"kind": self.spread.kind.value, "expiry": self.expiry.isoformat(),
                "dte": self.dte, "strikes": list(self.spread.strikes),
                "leg_delta": round(self.leg_delta, 4), "mid": round(self.mid, 4),
                "natural": round(self.natural, 4), "limit": self.limit,
                "max_loss": round(self.max_loss, 2), "max_profit": round(self.max_profit, 2),
                "pop": round(self.pop, 4), "expected_value": round(self.expected_value, 2),
                "ev_per_risk": round(self.ev_per_risk, 4)}


def _pair(chain: OptionChain, expiry: date, right: Right, delta: float, width: float,
          away: bool) -> tuple[OptionQuote, OptionQuote]:
    """The leg nearest ``delta`` and its partner ``width`` further out of the money (``away``)
    or further in (toward the money)."""
    near = chain.strike_by_delta(expiry, delta if right is Right.CALL else -delta, right)
    outward = 1.0 if right is Right.CALL else -1.0
    step = outward * width * (1.0 if away else -1.0)
    strike = round(near.contract.strike + step, 3)
    other = chain.find(expiry, right, strike)
    if other is None:
        raise DataError(f"no {strike:g} {right.name.lower()} at {expiry} for the {width:g} "
                        "wide leg")
    return near, other


# Each vertical's builder takes the leg nearest the target delta first, then the one ``width``
# further out of the money: (short, long) for a credit spread, (long, short) for a debit.
_VERTICALS = {SpreadKind.BULL_PUT_CREDIT: (Right.PUT, bull_put_credit),
              SpreadKind.BEAR_CALL_CREDIT: (Right.CALL, bear_call_credit),
              SpreadKind.BULL_CALL_DEBIT: (Right.CALL, bull_call_debit),
              SpreadKind.BEAR_PUT_DEBIT: (Right.PUT, bear_put_debit)}


def _build(chain: OptionChain, kind: SpreadKind, expiry: date, delta: float, width: float
           ) -> tuple[Spread, dict, float]:
    """The spread, its legs' quotes, and the delta of the leg at the target (the short put's
    for an iron condor), NaN if the chain gives none."""
    if kind is SpreadKind.IRON_CONDOR:
        sp, lp = _pair(chain, expiry, Right.PUT, delta, width, away=True)
        sc, lc = _pair(chain, expiry, Right.CALL, delta, width, away=True)
        spread, rows = iron_condor(lp.contract, sp.contract, sc.contract, lc.contract), (
            sp, lp, sc, lc)
    else:
        right, build = _VERTICALS[kind]
        near, far = _pair(chain, expiry, right, delta, width, away=True)
        spread, rows = build(near.contract, far.contract), (near, far)
    signed = rows[0].delta
    return (spread, {r.contract: r.quote for r in rows},
            float(signed) if signed is not None else math.nan)


def candidates(chain: OptionChain, kind: SpreadKind, *, target_dte: int, min_dte: int,
               delta: float, width: float, atm_iv: float, real_vol: float,
               deltas: tuple[float, ...] = (-0.05, 0.0, 0.05), expiries: int = 2,
               tick: float = 0.01, price_at: str = "mid"
               ) -> tuple[list[Candidate], list[tuple[dict, str]]]:
    """Candidates of ``kind`` at the ``expiries`` expiries nearest ``target_dte`` (at least
    ``min_dte`` out) and the target ``delta`` shifted by each of ``deltas`` (for a debit
    spread ``delta`` is the long leg's, for the others the short's), ``width`` dollars wide;
    and the combinations that could not be built or priced, with why. ``price_at``: the
    opening limit at the mid (to the tick in the trader's favour) or at the natural price
    (to the tick toward the market: marketable)."""
    if price_at not in ("mid", "natural"):
        raise ValueError(f"price_at must be 'mid' or 'natural', got {price_at!r}")
    listed = sorted((e for e in chain.expiries() if chain.dte(e) >= min_dte),
                    key=lambda e: (abs(chain.dte(e) - target_dte), e))[:expiries]
    if not listed:
        raise DataError(f"{chain.underlying}: no expiry at least {min_dte} days out")
    built: list[Candidate] = []
    failed: list[tuple[dict, str]] = []
    seen: set = set()
    for expiry in sorted(listed):
        T = chain.years_to_expiry(expiry)
        for shift in deltas:
            d = round(delta + shift, 4)
            where = {"kind": kind.value, "expiry": expiry.isoformat(), "delta": d}
            if not 0 < d < 1:
                failed.append((where, f"target delta {d} outside (0, 1)"))
                continue
            try:
                spread, quotes, signed = _build(chain, kind, expiry, d, width)
                if spread.legs in seen:
                    continue  # two target deltas landed on the same strikes
                seen.add(spread.legs)
                mid = spread.net_premium(quotes, at="mid")
                natural = spread.net_premium(quotes, at="natural")
                credit = kind.is_credit
                # The opening limit: the mid to the tick in the trader's favour, which for a
                # net premium signed "> 0 credit, < 0 debit" is always up (more credit, less
                # debit).
                limit = round(math.ceil(mid / tick - 1e-9) * tick if price_at == "mid"
                              else math.floor(natural / tick + 1e-9) * tick, 10)
                premium = limit
                if (credit and premium <= 0) or (not credit and premium >= 0):
                    failed.append((where, f"net premium {mid:.2f} at mid has the wrong sign "
                                          f"for a {kind.value}"))
                    continue
                max_loss = spread.max_loss(premium)
                if not (max_loss > 0 and math.isfinite(max_loss)):
                    failed.append((where, f"max loss {max_loss} is not a defined risk"))
                    continue
                pop = spread.probability_of_profit(chain.spot, T, chain.rate, atm_iv, premium,
                                                   chain.dividend_yield)
                ev = expected_value(spread, premium, chain.spot, T, chain.rate, real_vol,
                                    chain.dividend_yield)
            except DataError as exc:
                failed.append((where, str(exc)))
                continue
            built.append(Candidate(spread, expiry, chain.dte(expiry), signed, mid, natural,
                                   limit, max_loss, spread.max_profit(premium), pop, ev,
                                   ev / max_loss))
    return built, failed


def rank(found: list[Candidate], min_pop: float = 0.0
         ) -> tuple[Candidate | None, list[tuple[Candidate, str]]]:
    """The best candidate by expected value per unit of risk (then probability of profit,
    then the nearer expiry) among those with ``pop >= min_pop``, and every other one with why
    it was not chosen."""
    if not found:
        return None, []
    ok = [c for c in found if c.pop >= min_pop]
    order = sorted(ok, key=lambda c: (-c.ev_per_risk, -c.pop, c.expiry, c.spread.strikes))
    rejected = [(c, f"probability of profit {c.pop:.0%} below the {min_pop:.0%} minimum")
                for c in found if c.pop < min_pop]
    if not order:
        return None, rejected
    best = order[0]
    for c in order[1:]:
        rejected.append((c, f"expected value per unit of risk {c.ev_per_risk:.3f} (pop "
                            f"{c.pop:.0%}) behind the chosen {best.ev_per_risk:.3f} (pop "
                            f"{best.pop:.0%})"))
    return best, rejected
