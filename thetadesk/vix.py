"""VIX options: the Cboe contract rules ThetaDesk follows, the forward model the simulator prices
them on, and how the risk gate measures them (pure functions: no clock, no market).

The contract (Cboe VIX options, sources at the end):

- European, cash-settled, multiplier 100: an in-the-money option pays (settlement value -
  strike) x 100 for a call in cash (``CASH_SETTLED``: the paper broker cash-settles them
  whatever an account's ``settlement`` says).
- AM-settled (``AM_SETTLED``): the exercise-settlement value is the Special Opening Quotation
  (SOQ, ticker VRO), a VIX computed from the opening prices of the SPX options on the expiry
  date, and the last trading day is the business day before. ``thetadesk.chain.expiry_instant``
  puts a VIX option's expiry at 09:30 New York on its expiry date (``AM_EXPIRY``): quoted up to
  the close of the session before, settled against the VIX of the expiry date's opening minute.
- Expiry (``vix_expiry``): the Wednesday 30 days before the third Friday of the following month
  (the S&P 500 standard expiry: on a VIX expiry date the SOQ reads SPX options with exactly 30
  days left). If that Friday is not a session, 30 days before the session before it (Good
  Friday 2025-04-18: the March 2025 VIX options expired Tuesday 2025-03-18); if the day found
  is not a session, the session before it (Juneteenth 2024-06-19: Tuesday 2024-06-18).
  ``LISTED_MONTHS`` (6) consecutive monthly expiries are listed; weeklies are not modelled.
- Strikes (``strike_grid``): $0.50 apart from 9 to 15, $1 to 30, $2.50 to 50, $5 above.
  Premiums trade in $0.05 below $3.00 and $0.10 from $3.00 (``tick``).
- Priced off VIX futures, not spot VIX: an option expiring at T is an option on the VIX future
  expiring then, whose price is not the index.

The simulator's forward model (``forward``, ``atm_vol``, ``smile``): VIX futures mean-revert,
``F(T) = L + (V - L) exp(-KAPPA T)`` with V the VIX now, L its long-run level (the simulator's
VIX at its base variance in the normal regime: 17.6 for SPY at the configured 16%; the VIX
averaged 24 over 2007-2012, a crisis-heavy period) and ``KAPPA`` = 6.0 a year, a half-life of
ln 2 / 6 = 42 calendar days (a VIX shock has lost half its size after about 20 trading days,
28 calendar days, over the last decade; futures, priced risk-neutrally, revert more slowly
than the index: an assumption between the two). The curve is in contango when the VIX is
below L (calm), in backwardation above it (stress). Volatility of volatility: ``VVIX_30`` =
0.90 at 30 days and V = L (VVIX ranged 60-146 around an average of 86 in 2007-2012 and
averaged 94 over 2007-2022), times ``(V / L) ** 0.35`` clipped to [0.8, 1.6] (VVIX rises with
the VIX mainly when the VIX is high: 0.72-1.44 at 30 days) and ``(30 days / T) ** 0.4`` (the
VVIX term structure usually slopes down: in 2011 the VIX moved 139.9% a year and its
near-term future 97%); above the money it rises (the VIX smile slopes up: calls are dearer
than puts away from the money). Options are Black-76 on F, which is Black-Scholes with spot F
and dividend yield equal to the rate (``thetadesk.pricing``).

The risk gate (``thetadesk.risk.gate``) measures a VIX option on its expiry's future, a risk
underlying named ``forward_symbol(contract)`` ("VIX.250319"), whose price it reads from the
quotes by put-call parity (``parity_forward``: the VIX white paper finds its forward index
level the same way) and whose return volatility is the option's own implied volatility.
Those futures move with the S&P 500 at ``SPY_CORRELATION`` = -0.70 (daily VIX and S&P 500
returns, 1990-2024) and with each other at ``FORWARD_CORRELATION`` = 0.90 (an assumption:
futures of neighbouring expiries move nearly together), so their beta against SPY, ``rho
sigma_F / sigma_SPY``, is negative and shrinks with maturity: a VIX call's beta-weighted delta
is negative. In stress scenarios a future moves by the scenario's VIX change times
``exp(-KAPPA T)`` (``forward_shock``), as the forward model has it.

Sources: macroption.com/vix-options-settlement (European, cash, SOQ, expiry 30 days before
the third Friday of the following month, usually a Wednesday, the business day before on a
holiday; last trading day the business day before); cboe.com/Strategies/VIX/OptionsIntro/Part2
(multiplier $100, $0.05 / $0.10 ticks, European); the VIX option chain pages of macroption /
sesyixo.ru ($1 strikes 15-30, $2.50 to 50, $5 above, up to 6 months listed) and
cboeoptionshub.com 2014-05-28 (half-point strikes from 10 to 15); cboeoptionshub.com
2012-03-14 (the VVIX white paper's figures, the 2011 historic volatilities); vixfaq.com (VVIX
mean 94, 2007-2022); Cboe's VVIX FAQ (term structure usually downward sloping);
derivatives.garven.com (correlation -0.70 of daily S&P 500 and VIX returns, 1990-2024);
entreprenerdly.com "Measuring Volatility Mean-Reversion" (2025: half-life about 20 trading
days).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime, time, timedelta

import numpy as np

__all__ = [
    "AM_EXPIRY", "AM_SETTLED", "CASH_SETTLED", "FORWARD_CORRELATION", "FORWARD_PRICED",
    "KAPPA", "LISTED_MONTHS", "SPY_CORRELATION", "VIX_ROOT", "VVIX_30", "atm_vol", "forward",
    "forward_shock", "forward_symbol", "forward_symbol_expiry", "is_forward_symbol",
    "parity_forward", "smile", "strike_grid", "third_friday", "tick", "vix_expiries",
    "vix_expiry",
]

VIX_ROOT = "VIX"
AM_SETTLED = frozenset({VIX_ROOT})  # expire at the opening of the expiry date (the SOQ)
CASH_SETTLED = frozenset({VIX_ROOT})  # always cash-settled
FORWARD_PRICED = frozenset({VIX_ROOT})  # options on the expiry's future, not on the index
AM_EXPIRY = time(9, 30)  # New York: the opening the settlement value is computed at
LISTED_MONTHS = 6

KAPPA = 6.0  # per year: VIX futures' mean reversion towards the long-run level
VVIX_30 = 0.90  # annualised volatility of a 30-day VIX future when the VIX is at its long run
_VVIX_TERM = 0.4  # vol of vol x (30 days / T) ** 0.4
_VVIX_LEVEL = 0.35  # ... x (V / L) ** 0.35, clipped to the bounds below
_VVIX_LEVEL_BOUNDS = (0.8, 1.6)
_T30 = 30.0 / 365.0
_T_FLOOR = 7.0 / 365.0  # the vol of vol stops rising below a week to expiry
_SMILE_SLOPE, _SMILE_CURVATURE = 0.5, 0.2  # iv = atm * (1 + a x + b x^2), x = ln(K / F)
_SMILE_BOUNDS = (0.5, 3.0)

SPY_CORRELATION = -0.70
FORWARD_CORRELATION = 0.90


def third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def vix_expiry(year: int, month: int, is_session: Callable[[date], bool]) -> date:
    """The expiry date of the ``month`` VIX options of ``year``: 30 days before the third Friday
    of the following month, or before the session before that Friday when it is a holiday;
    the session before the day found when it is one (see the module doc)."""
    nxt_year, nxt_month = (year + 1, 1) if month == 12 else (year, month + 1)
    friday = third_friday(nxt_year, nxt_month)
    for _ in range(10):
        if is_session(friday):
            break
        friday -= timedelta(days=1)
    day = friday - timedelta(days=30)
    for _ in range(10):
        if is_session(day):
            return day
        day -= timedelta(days=1)
    raise ValueError(f"no session within 10 days before {day} (the {year}-{month:02d} VIX expiry)")


def vix_expiries(today: date, is_session: Callable[[date], bool],
                 count: int = LISTED_MONTHS) -> tuple[date, ...]:
    """The next ``count`` monthly VIX expiries on or after ``today``, ascending."""
    out: list[date] = []
    year, month = today.year, today.month - 1
    if month == 0:
        year, month = year - 1, 12
    while len(out) < count:
        expiry = vix_expiry(year, month, is_session)
        if expiry >= today:
            out.append(expiry)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return tuple(out)


def strike_grid(low: float, high: float) -> list[float]:
    """The listed VIX strikes in [low, high]: $0.50 apart from 9 to 15, $1 to 30, $2.50 to 50,
    $5 above (to 200)."""
    grid = [9.0 + 0.5 * i for i in range(12)]  # 9 .. 14.5
    grid += [15.0 + i for i in range(15)]  # 15 .. 29
    grid += [30.0 + 2.5 * i for i in range(8)]  # 30 .. 47.5
    grid += [50.0 + 5.0 * i for i in range(31)]  # 50 .. 200
    return [k for k in grid if low - 1e-9 <= k <= high + 1e-9]


def tick(price: np.ndarray | float) -> np.ndarray:
    """The premium tick: $0.05 below $3.00, $0.10 from $3.00."""
    return np.where(np.asarray(price) < 3.0, 0.05, 0.10)


def forward(vix: float, long_run: float, years: np.ndarray | float) -> np.ndarray:
    """The VIX future (forward) expiring in ``years``: ``L + (V - L) exp(-KAPPA T)``."""
    t = np.maximum(np.asarray(years, dtype=np.float64), 0.0)
    return long_run + (vix - long_run) * np.exp(-KAPPA * t)


def atm_vol(vix: float, long_run: float, years: np.ndarray | float) -> np.ndarray:
    """The at-the-money implied volatility (annualised) of VIX options expiring in ``years``."""
    t = np.maximum(np.asarray(years, dtype=np.float64), _T_FLOOR)
    level = min(max((vix / long_run) ** _VVIX_LEVEL, _VVIX_LEVEL_BOUNDS[0]),
                _VVIX_LEVEL_BOUNDS[1])
    return VVIX_30 * level * (_T30 / t) ** _VVIX_TERM


def smile(x: np.ndarray) -> np.ndarray:
    """The implied volatility at log-moneyness ``x = ln(K / F)`` over the ATM level."""
    return np.clip(1.0 + _SMILE_SLOPE * x + _SMILE_CURVATURE * x * x, *_SMILE_BOUNDS)


def parity_forward(call_mid: float, put_mid: float, strike: float, rate: float,
                   years: float) -> float:
    """The forward implied by a call and a put at the same strike and expiry:
    ``K + exp(rT) (C - P)``."""
    return strike + math.exp(rate * max(years, 0.0)) * (call_mid - put_mid)


def forward_symbol(root: str, expiry: date) -> str:
    """The risk underlying a ``FORWARD_PRICED`` option is measured on: "VIX.250319"."""
    return f"{root}.{expiry:%y%m%d}"


def is_forward_symbol(name: str) -> bool:
    root, dot, tail = name.partition(".")
    return bool(dot) and root in FORWARD_PRICED and len(tail) == 6 and tail.isdigit()


def forward_symbol_expiry(name: str) -> date:
    tail = name.partition(".")[2]
    return date(2000 + int(tail[:2]), int(tail[2:4]), int(tail[4:]))


def forward_shock(vix_shock: float, name: str, as_of: datetime) -> float:
    """A relative VIX move ``vix_shock`` as the relative move of the future ``name`` (a
    ``forward_symbol``) at ``as_of``: damped by ``exp(-KAPPA T)`` as the forward model has it
    (the forward taken near the index)."""
    from thetadesk.chain import expiry_instant

    years = max((expiry_instant(forward_symbol_expiry(name), VIX_ROOT) - as_of)
                / timedelta(days=365), 0.0)
    return vix_shock * math.exp(-KAPPA * years)
