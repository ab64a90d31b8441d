"""A VIX-style 30-day volatility index computed from an option chain, by the Cboe VIX method.

Source: Cboe, "Cboe Volatility Index (VIX) White Paper" (the 2003 methodology, with weekly
expiries since 2014). For each of the two expiries bracketing the target horizon:

1. the forward ``F = K* + e^{RT} (C - P)`` at the strike ``K*`` whose call and put mids are
   closest;
2. ``K0``, the listed strike at or immediately below ``F``;
3. the out-of-the-money options: puts below ``K0`` walking down and calls above ``K0`` walking
   up, each with a bid above zero, stopping after two consecutive zero bids (zero bids are left
   out); at ``K0`` the average of the put and call mids;
4. ``sigma^2 = (2 / T) sum(dK_i / K_i^2 e^{RT} Q(K_i)) - (1 / T) (F / K0 - 1)^2``, ``Q`` the
   mid, ``dK_i`` half the distance between the strikes either side (at the ends the distance
   to the one neighbour);

then the two variances are interpolated in total variance to the horizon (the white paper
does it in minutes; years of 365 days here, the same weights) and the index is
``100 sqrt(sigma^2_30)``: volatility points, 18.0 is 18%.

``T`` is the chain's ``years_to_expiry`` (to the 16:00 New York close; the white paper uses
the AM settlement for standard SPX expiries: a few hours, which this leaves out), ``R`` the
chain's continuously compounded ``rate``.
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np

from thetadesk.chain import OptionChain
from thetadesk.errors import DataError
from thetadesk.models import Right

__all__ = ["term_variance", "volatility_index"]


def term_variance(
    strikes: np.ndarray,
    put_bid: np.ndarray,
    put_ask: np.ndarray,
    call_bid: np.ndarray,
    call_ask: np.ndarray,
    T: float,
    rate: float,
) -> float:
    """One expiry's annualised variance by the Cboe method (steps 1-4 of the module docs).

    ``strikes`` ascending; the four quote arrays per share, one element per strike (the put
    and the call at each strike). DataError when the expiry has no usable strikes."""
    K = np.asarray(strikes, dtype=np.float64)
    pb, pa = np.asarray(put_bid, np.float64), np.asarray(put_ask, np.float64)
    cb, ca = np.asarray(call_bid, np.float64), np.asarray(call_ask, np.float64)
    if not (K.size >= 3 and K.shape == pb.shape == pa.shape == cb.shape == ca.shape):
        raise DataError(f"term_variance needs at least 3 strikes with a put and a call at "
                        f"each, got {K.size}")
    if not (math.isfinite(T) and T > 0):
        raise DataError(f"term_variance needs a time to expiry > 0, got {T!r}")
    put, call = 0.5 * (pb + pa), 0.5 * (cb + ca)
    growth = math.exp(rate * T)
    k_star = int(np.argmin(np.abs(call - put)))
    forward = float(K[k_star] + growth * (call[k_star] - put[k_star]))
    below = np.flatnonzero(forward >= K)
    if not len(below):
        raise DataError(f"term_variance: no strike at or below the forward {forward:.4f}")
    k0 = int(below[-1])
    chosen = [k0]
    price = {k0: 0.5 * (put[k0] + call[k0])}
    for side, bids, mids in ((range(k0 - 1, -1, -1), pb, put), (range(k0 + 1, K.size), cb, call)):
        zeros = 0
        for i in side:
            if bids[i] <= 0.0:
                zeros += 1
                if zeros == 2:
                    break
                continue
            zeros = 0
            chosen.append(i)
            price[i] = mids[i]
    idx = np.array(sorted(chosen))
    k = K[idx]
    if k.size < 2:
        raise DataError("term_variance: fewer than 2 out-of-the-money strikes with bids")
    dk = np.empty_like(k)
    dk[1:-1] = 0.5 * (k[2:] - k[:-2])
    dk[0], dk[-1] = k[1] - k[0], k[-1] - k[-2]
    q = np.array([price[int(i)] for i in idx])
    total = float(np.sum(dk / (k * k) * q))
    return 2.0 / T * growth * total - (forward / float(K[k0]) - 1.0) ** 2 / T


def _sides(chain: OptionChain, expiry: date) -> tuple[np.ndarray, ...]:
    puts = {r.contract.strike: r.quote for r in chain.rows(expiry, Right.PUT)}
    calls = {r.contract.strike: r.quote for r in chain.rows(expiry, Right.CALL)}
    strikes = sorted(set(puts) & set(calls))
    return (np.array(strikes, dtype=np.float64),
            np.array([puts[k].bid for k in strikes]), np.array([puts[k].ask for k in strikes]),
            np.array([calls[k].bid for k in strikes]), np.array([calls[k].ask for k in strikes]))


def volatility_index(chain: OptionChain, days: int = 30) -> float:
    """The chain's ``days``-day volatility index in volatility points (module docs), from the
    two expiries bracketing ``days`` (the last at or before, the first after). DataError when
    the chain has no expiry on one side of the horizon."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
        raise DataError(f"volatility_index days must be a whole number in [1, 365], got "
                        f"{days!r}")
    horizon = days / 365.0
    years = [(chain.years_to_expiry(e), e) for e in chain.expiries()]
    near = [(t, e) for t, e in years if 0.0 < t <= horizon]
    far = [(t, e) for t, e in years if t > horizon]
    if not near or not far:
        raise DataError(
            f"{chain.underlying} chain as of {chain.as_of:%Y-%m-%d %H:%M %Z}: no expiries "
            f"either side of {days} days (expiries {[e.isoformat() for _, e in years]})"
        )
    (t1, e1), (t2, e2) = max(near), min(far)
    v1 = term_variance(*_sides(chain, e1), t1, chain.rate)
    v2 = term_variance(*_sides(chain, e2), t2, chain.rate)
    w1 = (t2 - horizon) / (t2 - t1)
    variance = (t1 * v1 * w1 + t2 * v2 * (1.0 - w1)) / horizon
    return 100.0 * math.sqrt(max(variance, 0.0))
