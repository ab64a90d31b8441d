"""Short-term interest rates by year: what idle cash earns and the risk-free rate of a report.

``TBILL_3M`` holds the yearly average of the 3-month Treasury bill secondary-market rate
(Board of Governors of the Federal Reserve System, release H.15, series TB3MS: monthly averages
of business days, discount basis; here the mean of each year's twelve months, in percent,
rounded to 0.01). The Cboe PUT index earns the same kind of rate on its collateral (it invests
in 1- and 3-month T-bills), so a desk whose idle cash earns it is compared like with like.

A year after the table's last one carries the last value forward (a run in the future has no
published rate yet); a year before its first one raises ``ValueError``. Rates are annual
decimals (0.0193 = 1.93%).
"""

from __future__ import annotations

from datetime import date

__all__ = ["TBILL_3M", "TBILL_3M_FIRST", "TBILL_3M_LAST", "tbill_3m"]

# Percent, annual means of H.15 TB3MS.
_TBILL_3M_PERCENT: dict[int, float] = {
    1999: 4.64, 2000: 5.82, 2001: 3.40, 2002: 1.61, 2003: 1.01, 2004: 1.37, 2005: 3.15,
    2006: 4.73, 2007: 4.36, 2008: 1.37, 2009: 0.15, 2010: 0.14, 2011: 0.05, 2012: 0.09,
    2013: 0.06, 2014: 0.03, 2015: 0.05, 2016: 0.32, 2017: 0.93, 2018: 1.94, 2019: 2.06,
    2020: 0.37, 2021: 0.05, 2022: 2.02, 2023: 5.07, 2024: 4.97, 2025: 4.07,
}
TBILL_3M: dict[int, float] = {y: p / 100.0 for y, p in _TBILL_3M_PERCENT.items()}
TBILL_3M_FIRST, TBILL_3M_LAST = min(TBILL_3M), max(TBILL_3M)


def tbill_3m(day: date) -> float:
    """The annual 3-month T-bill rate for ``day``'s year (the last year's after the table)."""
    year = day.year
    if year < TBILL_3M_FIRST:
        raise ValueError(f"no 3-month T-bill rate before {TBILL_3M_FIRST} (asked for {day})")
    return TBILL_3M[min(year, TBILL_3M_LAST)]
