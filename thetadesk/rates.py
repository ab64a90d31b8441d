"""Short-term interest rates by year: what idle cash earns and the risk-free rate of a report.

``TBILL_3M`` holds the yearly average of the 3-month Treasury bill secondary-market rate
(Board of Governors of the Federal Reserve System, release H.15, series TB3MS: monthly averages
of business days, discount basis; here the mean of each year's twelve months, in percent,
rounded half up to 0.01). The Cboe PUT index earns the same kind of rate on its collateral (it
invests in 1- and 3-month T-bills), so a desk whose idle cash earns it is compared like with like.

How the table was checked: every year was recomputed from the monthly TB3MS observations of
two independent copies of FRED's download (the ``TB3MS.csv`` files of the public GitHub
repositories sheep-farm/assets-data and Shubyduby/thesis, identical where both have a month;
FRED's own pages agree on the months they show: Nov 2017-Mar 2018 and Oct 2024-Feb 2025). Four
values written earlier from memory were off by 0.01 and are corrected here: 2001 (3.39, not
3.40), 2002 (1.60, not 1.61), 2007 (4.35, not 4.36) and 2021 (0.04, not 0.05). 2025 is an
ESTIMATE: January to September are published (mean 4.18); October to December were not found,
so they are taken as the 6-month bill's published monthly averages (TB6MS 3.68, 3.69, 3.53)
plus the August-September gap between the two series (+0.17), giving 4.09 for the year.
Replace it with the published mean of TB3MS when it is at hand.

A year after the table's last one carries the last value forward (a run in the future has no
published rate yet); a year before its first one raises ``ValueError``. Rates are annual
decimals (0.0193 = 1.93%).

``CashInterest`` turns a rate (a number, or the table) into what a cash balance earns per
calendar day; the paper broker and the baselines of a backtest use the same one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

from thetadesk.errors import DataError

__all__ = ["DAY_COUNTS", "TBILL_3M", "TBILL_3M_FIRST", "TBILL_3M_LAST", "TBILL_RATE",
           "CashInterest", "tbill_3m"]

# Percent, annual means of H.15 TB3MS (2025: an estimate, see the module docstring).
_TBILL_3M_PERCENT: dict[int, float] = {
    1999: 4.64, 2000: 5.82, 2001: 3.39, 2002: 1.60, 2003: 1.01, 2004: 1.37, 2005: 3.15,
    2006: 4.73, 2007: 4.35, 2008: 1.37, 2009: 0.15, 2010: 0.14, 2011: 0.05, 2012: 0.09,
    2013: 0.06, 2014: 0.03, 2015: 0.05, 2016: 0.32, 2017: 0.93, 2018: 1.94, 2019: 2.06,
    2020: 0.37, 2021: 0.04, 2022: 2.02, 2023: 5.07, 2024: 4.97, 2025: 4.09,
}
TBILL_3M: dict[int, float] = {y: p / 100.0 for y, p in _TBILL_3M_PERCENT.items()}
TBILL_3M_FIRST, TBILL_3M_LAST = min(TBILL_3M), max(TBILL_3M)
TBILL_RATE = "tbill_3m"  # CashInterest.rate naming the table above
DAY_COUNTS = (360, 365)
MAX_RATE = 0.25  # annual: a bound against typing 4 for 4%
MAX_SPREAD = 0.05


def tbill_3m(day: date) -> float:
    """The annual 3-month T-bill rate for ``day``'s year (the last year's after the table)."""
    year = day.year
    if year < TBILL_3M_FIRST:
        raise ValueError(f"no 3-month T-bill rate before {TBILL_3M_FIRST} (asked for {day})")
    return TBILL_3M[min(year, TBILL_3M_LAST)]


@dataclass(frozen=True, slots=True)
class CashInterest:
    """Interest on a positive cash balance, accrued per calendar day (weekends and holidays
    included, as brokers and T-bills accrue).

    - ``rate``: the annual rate, a decimal in [0, 0.25] (0.04 = 4%), or ``"tbill_3m"`` for
      the 3-month T-bill rate of each day's year (``tbill_3m``).
    - ``spread``: subtracted from the rate (brokers pay less than T-bills), in [0, 0.05]; the
      result is floored at 0.
    - ``day_count``: 360 (actual/360, the US money-market convention: T-bill discount rates
      and brokers' credit interest are quoted on it) or 365.

    A day's interest is ``max(balance, 0) x (rate - spread) / day_count``; ``accrue`` credits
    each day onto the balance before the next (daily compounding). A negative balance earns
    nothing and is charged nothing here.
    """

    rate: float | str = 0.0
    spread: float = 0.0
    day_count: int = 360

    def __post_init__(self) -> None:
        rate = self.rate
        if rate != TBILL_RATE:
            if (isinstance(rate, bool) or not isinstance(rate, int | float)
                    or not math.isfinite(rate) or not 0 <= rate <= MAX_RATE):
                raise DataError(f"CashInterest rate must be {TBILL_RATE!r} or an annual "
                                f"decimal in [0, {MAX_RATE}], got {rate!r}")
        spread = self.spread
        if (isinstance(spread, bool) or not isinstance(spread, int | float)
                or not math.isfinite(spread) or not 0 <= spread <= MAX_SPREAD):
            raise DataError(f"CashInterest spread must be in [0, {MAX_SPREAD}], got {spread!r}")
        if isinstance(self.day_count, bool) or self.day_count not in DAY_COUNTS:
            raise DataError(f"CashInterest day_count must be 360 or 365, got {self.day_count!r}")

    @property
    def pays(self) -> bool:
        """Whether any day can earn interest (False for a fixed rate at or below the spread)."""
        return self.rate == TBILL_RATE or float(self.rate) > self.spread

    def annual(self, day: date) -> float:
        """The annual rate paid on ``day``, spread deducted, as a decimal."""
        if self.rate == TBILL_RATE:
            try:
                base = tbill_3m(day)
            except ValueError as exc:
                raise DataError(f"cash interest at the 3-month T-bill rate: {exc}") from None
        else:
            base = float(self.rate)
        return max(0.0, base - self.spread)

    def daily(self, day: date) -> float:
        """What one dollar earns on calendar day ``day`` (a decimal, e.g. 0.000111)."""
        return self.annual(day) / self.day_count

    def grow(self, balance: float, first: date, last: date) -> float:
        """``balance`` in dollars after the interest of the calendar days ``first`` to ``last``
        inclusive, credited day by day (unchanged if ``last < first``). Crediting days one at a
        time or several at once gives the same number to the last bit."""
        day = first
        while day <= last:
            balance += max(0.0, balance) * self.daily(day)
            day += timedelta(days=1)
        return balance

    def accrue(self, balance: float, first: date, last: date) -> float:
        """Interest in dollars on ``balance`` over the calendar days ``first`` to ``last``
        inclusive, each day's credited before the next's (0 if ``last < first`` or the balance
        is not positive)."""
        return self.grow(balance, first, last) - balance
