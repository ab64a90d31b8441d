"""An option chain at one instant, and the selections strategies make from it.

Time to expiry runs from the chain's ``as_of`` instant to the expiry's 16:00 America/New_York
close (index ETF options are PM-settled; AM-settled roots such as VIX expire at 09:30 on the
expiry date, ``thetadesk.vix``), in years of 365 days. DTE is the number of calendar
days from ``as_of``'s New York date to the expiry date.

Deltas come from the data source where it supplies them; otherwise they are computed from each
contract's mid through ``implied_vol`` and ``bsm_greeks``. A contract whose delta cannot be
trusted (no bid, mid outside the no-arbitrage bounds) is never selected.

A chain is built from rows (``OptionChain(..., rows)``) or from columns
(``OptionChain.from_columns``: one array per field, as a data source that prices a whole
surface at once holds them). Both answer the same questions the same way; a columnar chain
makes an ``OptionQuote`` only for the rows asked for, so a strategy that looks at one expiry of
a chain of a thousand contracts pays for the rows it reads, not for the thousand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from thetadesk.errors import DataError
from thetadesk.models import Contract, Quote, Right
from thetadesk.pricing import bsm_greeks, implied_vol
from thetadesk.vix import AM_EXPIRY, AM_SETTLED

__all__ = ["NEW_YORK", "OptionChain", "OptionQuote", "contract_arrays", "expiry_instant"]

NEW_YORK = ZoneInfo("America/New_York")
_CLOSE = time(16, 0)
_YEAR = timedelta(days=365)


def expiry_instant(expiry: date, root: str | None = None) -> datetime:
    """The moment an option on ``root`` expires: 16:00 New York time on its expiry date for an
    index ETF option (PM-settled, the default); 09:30 for an AM-settled root (VIX: settled
    against the expiry date's opening, after its last trading day, ``thetadesk.vix``)."""
    if root is not None and root in AM_SETTLED:
        return datetime.combine(expiry, AM_EXPIRY, tzinfo=NEW_YORK)
    return datetime.combine(expiry, _CLOSE, tzinfo=NEW_YORK)


def contract_arrays(contracts, at: datetime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strikes, years to expiry from ``at`` (to the expiry instant, 365-day years) and
    is-call flags of ``contracts``, as arrays ready for the vectorised pricing functions."""
    years: dict[tuple[date, bool], float] = {}
    keys = []
    for c in contracts:
        key = (c.expiry, c.underlying in AM_SETTLED)
        if key not in years:
            years[key] = (expiry_instant(c.expiry, c.underlying) - at) / _YEAR
        keys.append(key)
    strikes = np.array([c.strike for c in contracts], dtype=np.float64)
    T = np.array([years[k] for k in keys], dtype=np.float64)
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
                live[expiry] = expiry_instant(expiry, underlying) > as_of
            if live[expiry]:  # an expired contract is not tradable, not selectable
                self._rows.setdefault(expiry, []).append(row)
        self._deltas: dict[tuple[date, Right], np.ndarray] = {}
        self._cols: _Columns | None = None
        self._sides: dict[tuple[date, Right], np.ndarray] = {}
        self._made: dict[tuple[date, Right], list[OptionQuote | None]] = {}
        self._strikes: dict[tuple[date, Right], np.ndarray] = {}

    @classmethod
    def from_columns(
        cls,
        underlying: str,
        spot: float,
        as_of: datetime,
        contracts: Sequence[Contract],
        sides: Mapping[tuple[date, Right], Sequence[int]],
        *,
        bid: np.ndarray,
        ask: np.ndarray,
        bid_size: np.ndarray,
        ask_size: np.ndarray,
        ts: datetime | None,
        delta: np.ndarray | None = None,
        iv: np.ndarray | None = None,
        open_interest: np.ndarray | None = None,
        volume: np.ndarray | None = None,
        rate: float = 0.0,
        dividend_yield: float = 0.0,
    ) -> OptionChain:
        """A chain whose row ``i`` is ``contracts[i]`` with ``bid[i]``, ``ask[i]``, ... (per
        share; sizes in contracts; one quote time ``ts`` for all). ``sides`` maps each
        (expiry, right) to its rows' indices in ascending strike order. The same checks as
        rows get: DataError for another underlying, a NaN, negative or crossed quote, a
        negative or fractional size (when built), a contract on another underlying (when
        its side is first read); expired expiries are left out."""
        chain = cls(underlying, spot, as_of, (), rate=rate, dividend_yield=dividend_yield)
        n = len(contracts)
        arrays = {"bid": bid, "ask": ask, "bid_size": bid_size, "ask_size": ask_size,
                  "delta": delta, "iv": iv, "open_interest": open_interest, "volume": volume}
        for name, values in arrays.items():
            if values is not None and len(values) != n:
                raise DataError(f"{underlying} chain: {name} has {len(values)} values for {n} "
                                "contracts")
        bid = np.asarray(bid, dtype=np.float64)
        ask = np.asarray(ask, dtype=np.float64)
        # Only the rows the sides name are the chain's (a source may hold others unfilled).
        used = (np.concatenate([np.asarray(v) for v in sides.values()]).astype(np.intp)
                if sides else np.empty(0, dtype=np.intp))
        b, a = bid[used], ask[used]
        ok = (b >= 0.0) & (b <= a) & (a < math.inf)
        if not ok.all():
            i = int(used[np.flatnonzero(~ok)[0]])
            Quote(float(bid[i]), float(ask[i]))  # raises the row's own error
            raise DataError(f"{underlying} chain: bad quote for {contracts[i]}")
        sizes = []
        for name, values in (("bid_size", bid_size), ("ask_size", ask_size)):
            v = np.asarray(values)
            u = v[used]
            if v.dtype.kind not in "iu":
                if not (np.isfinite(u).all() and (u == np.round(u)).all()):
                    raise DataError(f"{underlying} chain: {name} must be whole numbers")
                v = np.where(np.isfinite(v), v, 0).astype(np.int64)
                u = v[used]
            if (u < 0).any():
                raise DataError(f"{underlying} chain: {name} must be >= 0")
            sizes.append(v)
        chain._cols = _Columns(
            contracts, bid, ask, sizes[0], sizes[1], ts,
            None if delta is None else np.asarray(delta, dtype=np.float64),
            None if iv is None else np.asarray(iv, dtype=np.float64),
            None if open_interest is None else np.asarray(open_interest),
            None if volume is None else np.asarray(volume),
        )
        live: dict[date, bool] = {}
        for (expiry, right), idx in sides.items():
            if expiry not in live:
                live[expiry] = expiry_instant(expiry, underlying) > as_of
            if live[expiry] and len(idx):
                chain._sides[(expiry, Right(right))] = (
                    idx if isinstance(idx, np.ndarray) and idx.dtype == np.intp
                    else np.asarray(idx, dtype=np.intp))
        return chain

    def __len__(self) -> int:
        """The number of contracts in the chain (no rows are made to count them)."""
        if self._cols is not None:
            return sum(len(idx) for idx in self._sides.values())
        return sum(len(rows) for rows in self._rows.values())

    def expiries(self) -> list[date]:
        if self._cols is not None:
            return sorted({e for e, _ in self._sides})
        return sorted(self._rows)

    def dte(self, expiry: date) -> int:
        """Calendar days from the chain's New York date to ``expiry``."""
        return (expiry - self.as_of.astimezone(NEW_YORK).date()).days

    def years_to_expiry(self, expiry: date) -> float:
        """Time to the expiry instant (``expiry_instant``) in years of 365 days."""
        return (expiry_instant(expiry, self.underlying) - self.as_of) / _YEAR

    def rows(self, expiry: date, right: Right | None = None) -> list[OptionQuote]:
        if self._cols is not None:
            if right is not None:
                return self._side_rows(expiry, right)
            both = [(int(i), row) for r in (Right.PUT, Right.CALL)
                    for i, row in zip(self._sides.get((expiry, r), ()),
                                      self._side_rows(expiry, r), strict=True)]
            return [row for _, row in sorted(both, key=lambda t: t[0])]
        return [
            row
            for row in self._rows.get(expiry, [])
            if right is None or row.contract.right is right
        ]

    def find(self, expiry: date, right: Right, strike: float) -> OptionQuote | None:
        """The row of ``right`` at ``expiry`` struck at ``strike`` (to $0.001), if listed."""
        strikes = self._side_strikes(expiry, right)
        hit = np.flatnonzero(np.abs(strikes - strike) < 5e-4)
        return self._row(expiry, right, int(hit[0])) if len(hit) else None

    def nearest(self, expiry: date, right: Right, price: float) -> OptionQuote | None:
        """The row of ``right`` at ``expiry`` whose strike is nearest ``price`` (ties go to the
        lower strike); None if the side is empty."""
        strikes = self._side_strikes(expiry, right)
        if not len(strikes):
            return None
        distance = np.abs(strikes - price)
        ties = np.flatnonzero(distance == distance.min())
        return self._row(expiry, right, int(ties[np.argmin(strikes[ties])]))

    # -- rows made on demand ---------------------------------------------------------------------

    def _side_strikes(self, expiry: date, right: Right) -> np.ndarray:
        key = (expiry, right)
        strikes = self._strikes.get(key)
        if strikes is None:
            if self._cols is not None:
                side = [self._cols.contracts[i] for i in self._sides.get(key, ())]
                odd = [c for c in side if c.underlying != self.underlying]
                if odd:
                    raise DataError(
                        f"{self.underlying} chain: contract {odd[0]} is on another underlying")
                strikes = np.array([c.strike for c in side], dtype=np.float64)
            else:
                strikes = np.array([r.contract.strike for r in self.rows(expiry, right)],
                                   dtype=np.float64)
            self._strikes[key] = strikes
        return strikes

    def _row(self, expiry: date, right: Right, j: int) -> OptionQuote:
        if self._cols is None:
            return self.rows(expiry, right)[j]
        key = (expiry, right)
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = [None] * len(self._sides.get(key, ()))
        row = made[j]
        if row is None:
            c = self._cols
            i = int(self._sides[key][j])
            row = made[j] = OptionQuote(
                c.contracts[i],
                Quote(float(c.bid[i]), float(c.ask[i]), int(c.bid_size[i]), int(c.ask_size[i]),
                      c.ts),
                delta=None if c.delta is None or math.isnan(c.delta[i]) else float(c.delta[i]),
                iv=None if c.iv is None or math.isnan(c.iv[i]) else float(c.iv[i]),
                open_interest=None if c.open_interest is None else int(c.open_interest[i]),
                volume=None if c.volume is None else int(c.volume[i]),
            )
        return row

    def _side_rows(self, expiry: date, right: Right) -> list[OptionQuote]:
        self._side_strikes(expiry, right)  # checks the side's contracts
        return [self._row(expiry, right, j) for j in range(len(self._sides.get((expiry, right),
                                                                                ())))]

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
        return self.rows(expiry, right), self._delta_array(expiry, right)

    def _delta_array(self, expiry: date, right: Right) -> np.ndarray:
        key = (expiry, right)
        if key not in self._deltas:
            if self._cols is not None:
                c, idx = self._cols, self._sides.get(key, np.empty(0, dtype=np.intp))
                vendor = (np.full(len(idx), np.nan) if c.delta is None else c.delta[idx].copy())
                all_strikes = self._side_strikes(expiry, right)
                all_mids = 0.5 * (c.bid[idx] + c.ask[idx])
                all_bids = c.bid[idx]
            else:
                rows = self.rows(expiry, right)
                vendor = np.array([np.nan if r.delta is None else r.delta for r in rows],
                                  dtype=float)
                all_strikes = np.array([r.contract.strike for r in rows], dtype=float)
                all_mids = np.array([r.quote.mid for r in rows], dtype=float)
                all_bids = np.array([r.quote.bid for r in rows], dtype=float)
            missing = np.isnan(vendor)
            if missing.any():
                strikes = all_strikes[missing]
                mids = all_mids[missing]
                bids = all_bids[missing]
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
            self._deltas[key] = vendor
        return self._deltas[key]

    def strike_by_delta(self, expiry: date, target_delta: float, right: Right) -> OptionQuote:
        """The contract of ``right`` at ``expiry`` whose delta is nearest ``target_delta``.

        ``target_delta`` may be given signed (-0.30 for a put) or as a magnitude (0.30); ties go
        to the further out-of-the-money strike.
        """
        if not (math.isfinite(target_delta) and 0.0 < abs(target_delta) < 1.0):
            raise DataError(f"target delta must be strictly between 0 and 1 in size, got "
                            f"{target_delta!r}")
        deltas = self._delta_array(expiry, right)
        usable = ~np.isnan(deltas)
        if not usable.any():
            raise DataError(
                f"{self.underlying} {expiry} {right.name.lower()}s: no contract with a usable "
                "delta (missing or one-sided quotes)"
            )
        distance = np.where(usable, np.abs(np.abs(deltas) - abs(target_delta)), np.inf)
        ties = np.flatnonzero(distance == distance.min())
        strikes = self._side_strikes(expiry, right)[ties]
        pick = np.argmax(strikes) if right is Right.CALL else np.argmin(strikes)
        return self._row(expiry, right, int(ties[pick]))


@dataclass(frozen=True, slots=True)
class _Columns:
    contracts: Sequence[Contract]
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    ts: datetime | None
    delta: np.ndarray | None
    iv: np.ndarray | None
    open_interest: np.ndarray | None
    volume: np.ndarray | None
