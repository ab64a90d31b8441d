"""An option chain at one instant, and the selections strategies make from it.

Time to expiry runs from the chain's ``as_of`` instant to the expiry's 16:00 America/New_York
close (index ETF options are PM-settled), in years of 365 days. DTE is the number of calendar
days from ``as_of``'s New York date to the expiry date.

Deltas come from the data source where it supplies them; otherwise they are computed from each
contract's mid through ``implied_vol`` and ``bsm_greeks``. A contract whose delta cannot be
trusted (no bid, mid outside the no-arbitrage bounds) is never selected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from thetadesk.errors import DataError
from thetadesk.models import Contract, Quote, Right
from thetadesk.pricing import bsm_greeks, implied_vol

__all__ = ["NEW_YORK", "OptionChain", "OptionQuote", "contract_arrays", "expiry_instant"]

NEW_YORK = ZoneInfo("America/New_York")
_CLOSE = time(16, 0)
_YEAR = timedelta(days=365)


def expiry_instant(expiry: date) -> datetime:
    """The moment an index ETF option stops trading: 16:00 New York time on its expiry date."""
    return datetime.combine(expiry, _CLOSE, tzinfo=NEW_YORK)


def contract_arrays(contracts, at: datetime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strikes, years to expiry from ``at`` (to the 16:00 New York close, 365-day years) and
    is-call flags of ``contracts``, as arrays ready for the vectorised pricing functions."""
    years: dict[date, float] = {}
    for c in contracts:
        if c.expiry not in years:
            years[c.expiry] = (expiry_instant(c.expiry) - at) / _YEAR
    strikes = np.array([c.strike for c in contracts], dtype=np.float64)
    T = np.array([years[c.expiry] for c in contracts], dtype=np.float64)
    is_call = np.array([c.is_call for c in contracts], dtype=np.bool_)
    return strikes, T, is_call


@dataclass(frozen=True, slots=True)
class OptionQuote:
    """One row of a chain: a contract, its quote, and the vendor's delta/IV when supplied."""

    contract: Contract
    quote: Quote
    delta: float | None = None
    iv: float | None = None
    open_interest: int | None = None
    volume: int | None = None


class OptionChain:
    """The listed options on one underlying at one instant, with the underlying's spot price.

    ``rate`` and ``dividend_yield`` are continuously compounded annual rates used for the
    deltas this chain computes itself.
    """

    def __init__(
        self,
        underlying: str,
        spot: float,
        as_of: datetime,
        rows: Iterable[OptionQuote],
        rate: float = 0.0,
        dividend_yield: float = 0.0,
    ) -> None:
        if as_of.tzinfo is None or as_of.utcoffset() is None:
            raise DataError(f"chain as_of must be timezone-aware, got {as_of!r}")
        if not (math.isfinite(spot) and spot > 0):
            raise DataError(f"{underlying} chain: spot must be finite and > 0, got {spot!r}")
        if not (math.isfinite(rate) and math.isfinite(dividend_yield)):
            raise DataError(f"{underlying} chain: rate and dividend yield must be finite")
        self.underlying = underlying
        self.spot = float(spot)
        self.as_of = as_of
        self.rate = float(rate)
        self.dividend_yield = float(dividend_yield)
        self._rows: dict[date, list[OptionQuote]] = {}
        live: dict[date, bool] = {}
        for row in rows:
            contract = row.contract
            if contract.underlying != underlying:
                raise DataError(
                    f"{underlying} chain: contract {contract} is on another underlying"
                )
            expiry = contract.expiry
            if expiry not in live:
                live[expiry] = expiry_instant(expiry) > as_of
            if live[expiry]:  # an expired contract is not tradable, not selectable
                self._rows.setdefault(expiry, []).append(row)
        self._deltas: dict[tuple[date, Right], tuple[list[OptionQuote], np.ndarray]] = {}

    def expiries(self) -> list[date]:
        return sorted(self._rows)

    def dte(self, expiry: date) -> int:
        """Calendar days from the chain's New York date to ``expiry``."""
        return (expiry - self.as_of.astimezone(NEW_YORK).date()).days

    def years_to_expiry(self, expiry: date) -> float:
        """Time to the expiry's 16:00 New York close in years of 365 days."""
        return (expiry_instant(expiry) - self.as_of) / _YEAR

    def rows(self, expiry: date, right: Right | None = None) -> list[OptionQuote]:
        return [
            row
            for row in self._rows.get(expiry, [])
            if right is None or row.contract.right is right
        ]

    def nearest_expiry(self, target_dte: int, min_dte: int = 0) -> date:
        """The expiry whose DTE is nearest ``target_dte`` (ties go to the earlier expiry),
        among those at least ``min_dte`` days out."""
        candidates = [e for e in self.expiries() if self.dte(e) >= min_dte]
        if not candidates:
            raise DataError(
                f"{self.underlying} chain as of {self.as_of:%Y-%m-%d %H:%M %Z} has no expiry "
                f"at least {min_dte} days out"
            )
        return min(candidates, key=lambda e: (abs(self.dte(e) - target_dte), e))

    def deltas(self, expiry: date, right: Right) -> tuple[list[OptionQuote], np.ndarray]:
        """The rows of one expiry and side with their deltas (NaN where untrustworthy)."""
        key = (expiry, right)
        if key not in self._deltas:
            rows = self.rows(expiry, right)
            vendor = np.array([np.nan if r.delta is None else r.delta for r in rows], dtype=float)
            missing = np.isnan(vendor)
            if missing.any():
                strikes = np.array([r.contract.strike for r in rows])[missing]
                mids = np.array([r.quote.mid for r in rows])[missing]
                bids = np.array([r.quote.bid for r in rows])[missing]
                T = self.years_to_expiry(expiry)
                is_call = right is Right.CALL
                vol = implied_vol(
                    mids, self.spot, strikes, T, self.rate, self.dividend_yield, is_call
                )
                vol = np.where(bids > 0.0, vol, np.nan)  # a one-sided quote has no real mid
                vendor[missing] = bsm_greeks(
                    self.spot, strikes, T, self.rate, vol, self.dividend_yield, is_call
                ).delta
            sign_ok = vendor >= 0.0 if right is Right.CALL else vendor <= 0.0
            vendor = np.where(sign_ok & (np.abs(vendor) <= 1.0), vendor, np.nan)
            self._deltas[key] = (rows, vendor)
        return self._deltas[key]

    def strike_by_delta(self, expiry: date, target_delta: float, right: Right) -> OptionQuote:
        """The contract of ``right`` at ``expiry`` whose delta is nearest ``target_delta``.

        ``target_delta`` may be given signed (-0.30 for a put) or as a magnitude (0.30); ties go
        to the further out-of-the-money strike.
        """
        if not (math.isfinite(target_delta) and 0.0 < abs(target_delta) < 1.0):
            raise DataError(f"target delta must be strictly between 0 and 1 in size, got "
                            f"{target_delta!r}")
        rows, deltas = self.deltas(expiry, right)
        usable = ~np.isnan(deltas)
        if not usable.any():
            raise DataError(
                f"{self.underlying} {expiry} {right.name.lower()}s: no contract with a usable "
                "delta (missing or one-sided quotes)"
            )
        distance = np.where(usable, np.abs(np.abs(deltas) - abs(target_delta)), np.inf)
        best = distance.min()
        ties = [rows[i] for i in np.flatnonzero(distance == best)]
        if right is Right.CALL:
            return max(ties, key=lambda r: r.contract.strike)
        return min(ties, key=lambda r: r.contract.strike)
