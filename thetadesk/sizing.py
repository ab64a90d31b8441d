"""Portfolio construction: how many spreads an entry gets, and whether a symbol may take one.

Pure functions over a snapshot of the account (its equity and the max loss already at stake);
the account engine (``thetadesk.account``) gathers the snapshot and applies the answer. Units:
money in dollars, budgets in percent of the account's current equity (``2.0`` = 2%, as the
``_pct`` names say), implied volatility as an annual decimal.

The budget of one trade (``trade_budget``):

- ``risk_per_trade_pct`` given: that percent of current equity (marked to market), so the desk
  grows and shrinks its trades with its capital. Not given: the account's fixed-dollar
  ``max_risk_per_trade`` (the original rule).
- times the intent's own ``size_multiplier`` (the adaptive strategy's regime sizes, 0..2],
- times a volatility multiplier when ``vol_target_iv`` is given: ``vol_target_iv / atm_iv`` when
  implied volatility is above the target, never above 1 and never below ``vol_min_multiplier``
  (trades shrink in high volatility, when a max loss is likelier).

The portfolio's room (``portfolio_room``): the max loss of every open strategy position and
working opening order counts against ``max_total_risk_pct`` of equity; the max loss in the new
trade's **bucket** counts against ``max_bucket_risk_pct``. A bucket is a set of underlyings
whose daily returns moved together (``buckets``): SPY, QQQ, IWM and DIA usually form one, so a
second index adds no room of its own. Correlations come from the closes the ledger recorded
(``Ledger.closes``); while fewer than ``MIN_COMMON_RETURNS`` common returns exist, every symbol
is counted in one bucket (the cautious answer until correlation can be measured).

``size`` turns the budget and the room into a whole number of spreads (the budget and each
room divided by the spread's max loss, rounded down); 0 comes with the reason in words.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

__all__ = [
    "MIN_COMMON_RETURNS",
    "Sizing",
    "SizingRules",
    "buckets",
    "portfolio_room",
    "size",
    "trade_budget",
    "vol_multiplier",
]

MIN_COMMON_RETURNS = 20  # daily returns two symbols must share before their correlation counts


@dataclass(frozen=True, slots=True)
class SizingRules:
    """The ``sizing:`` config section as values (see ``thetadesk.config.SizingConfig``)."""

    risk_per_trade_pct: float | None = None
    max_total_risk_pct: float | None = None
    max_bucket_risk_pct: float | None = None
    bucket_correlation: float = 0.7
    correlation_window: int = 60
    min_days_between_entries: int = 0
    vol_target_iv: float | None = None
    vol_min_multiplier: float = 0.25

    @classmethod
    def from_config(cls, sizing) -> SizingRules:
        return cls(sizing.risk_per_trade_pct, sizing.max_total_risk_pct,
                   sizing.max_bucket_risk_pct, sizing.bucket_correlation,
                   sizing.correlation_window, sizing.min_days_between_entries,
                   sizing.vol_target_iv, sizing.vol_min_multiplier)

    @property
    def needs_buckets(self) -> bool:
        return self.max_bucket_risk_pct is not None


@dataclass(frozen=True, slots=True)
class Sizing:
    """One entry's answer: ``quantity`` spreads (0: none, ``reason`` says why) and the figures
    behind it, recorded with the intent (``as_detail``)."""

    quantity: int
    budget: float
    vol_multiplier: float
    room_total: float | None
    room_bucket: float | None
    bucket: tuple[str, ...]
    reason: str = ""

    def as_detail(self) -> dict:
        return {"quantity": self.quantity, "budget": round(self.budget, 2),
                "vol_multiplier": round(self.vol_multiplier, 4),
                "room_total": None if self.room_total is None else round(self.room_total, 2),
                "room_bucket": None if self.room_bucket is None else round(self.room_bucket, 2),
                "bucket": list(self.bucket)}


def vol_multiplier(rules: SizingRules, atm_iv: float | None) -> float:
    """The volatility multiplier of a trade's budget (1 without ``vol_target_iv``, or when the
    implied volatility is unknown: an unknown level does not shrink a trade by itself)."""
    target = rules.vol_target_iv
    if target is None or atm_iv is None or not (math.isfinite(atm_iv) and atm_iv > 0):
        return 1.0
    return max(min(target / atm_iv, 1.0), rules.vol_min_multiplier)


def trade_budget(rules: SizingRules, *, equity: float, fixed_budget: float,
                 size_multiplier: float = 1.0, atm_iv: float | None = None,
                 ) -> tuple[float, float]:
    """(dollars one trade may lose at most, the volatility multiplier applied)."""
    base = (equity * rules.risk_per_trade_pct / 100.0 if rules.risk_per_trade_pct is not None
            else fixed_budget)
    vol = vol_multiplier(rules, atm_iv)
    return max(base, 0.0) * size_multiplier * vol, vol


def buckets(symbols: Iterable[str], closes: Mapping[str, Sequence[tuple[date, float]]], *,
            threshold: float, window: int) -> list[tuple[str, ...]]:
    """The symbols grouped into buckets of correlated underlyings: two symbols whose last
    ``window`` common daily log returns correlate at ``threshold`` or more share a bucket (and
    so, transitively, do their partners). A pair with fewer than ``MIN_COMMON_RETURNS``
    common returns is treated as correlated. Buckets and their members are sorted."""
    names = sorted(set(symbols))
    parent = {s: s for s in names}

    def root(s: str) -> str:
        while parent[s] != s:
            s = parent[s]
        return s

    returns = {s: _log_returns(closes.get(s, ())) for s in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if _correlated(returns[a], returns[b], threshold, window):
                ra, rb = root(a), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = {}
    for s in names:
        groups.setdefault(root(s), []).append(s)
    return sorted(tuple(g) for g in groups.values())


def _log_returns(series: Sequence[tuple[date, float]]) -> dict[date, float]:
    out: dict[date, float] = {}
    ordered = sorted(series)
    for (_, prev), (day, price) in itertools.pairwise(ordered):
        if prev > 0 and price > 0 and math.isfinite(prev) and math.isfinite(price):
            out[day] = math.log(price / prev)
    return out


def _correlated(a: Mapping[date, float], b: Mapping[date, float], threshold: float,
                window: int) -> bool:
    common = sorted(set(a) & set(b))[-window:]
    if len(common) < MIN_COMMON_RETURNS:
        return True
    x = np.array([a[d] for d in common])
    y = np.array([b[d] for d in common])
    if x.std() == 0 or y.std() == 0:
        return True
    return float(np.corrcoef(x, y)[0, 1]) >= threshold


def portfolio_room(rules: SizingRules, *, equity: float, at_risk: Mapping[str, float],
                   symbol: str, bucket: Sequence[str]) -> tuple[float | None, float | None]:
    """(dollars of max loss the portfolio may still add, dollars the new trade's bucket may
    still add); None where no limit is set. ``at_risk`` is the max loss at stake per symbol."""
    total = None
    if rules.max_total_risk_pct is not None:
        total = equity * rules.max_total_risk_pct / 100.0 - sum(at_risk.values())
    in_bucket = None
    if rules.max_bucket_risk_pct is not None:
        members = set(bucket) | {symbol}
        in_bucket = (equity * rules.max_bucket_risk_pct / 100.0
                     - sum(v for s, v in at_risk.items() if s in members))
    return total, in_bucket


def size(max_loss_per_spread: float, budget: float, room_total: float | None,
         room_bucket: float | None) -> tuple[int, str]:
    """(whole spreads, the reason when it is 0) for a spread losing ``max_loss_per_spread``
    at most, within the trade's ``budget`` and the portfolio's rooms."""
    if not (math.isfinite(max_loss_per_spread) and max_loss_per_spread > 0):
        return 0, f"max loss per spread {max_loss_per_spread} unusable"
    quantity = int(budget // max_loss_per_spread)
    if quantity < 1:
        return 0, (f"one spread risks ${max_loss_per_spread:,.2f}, more than the "
                   f"${budget:,.2f} budget per trade")
    for room, what in ((room_total, "the portfolio"), (room_bucket, "its bucket of correlated "
                                                                    "underlyings")):
        if room is None:
            continue
        fits = int(max(room, 0.0) // max_loss_per_spread)
        if fits < 1:
            return 0, (f"{what} has ${max(room, 0.0):,.2f} of max loss left, less than one "
                       f"spread's ${max_loss_per_spread:,.2f}")
        quantity = min(quantity, fits)
    return quantity, ""
