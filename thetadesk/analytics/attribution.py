"""P&L attribution of trades: by strategy, regime, weekday, time of day and DTE bucket.

Each table maps a label to ``{"trades", "pnl", "win_rate", "avg_pnl"}`` (dollars, after
commissions), rows in a fixed order (weekdays Monday first, time and DTE buckets ascending).

Regime at entry, until the decision layer records its own: ``regime_at_entry`` labels a trade
``<trend>/<volatility>`` from what was known when it was opened, never later:

- trend from the underlying's closes of the sessions BEFORE the entry day: ``up`` when the last
  close is above its 50-session mean and the 20-session mean is above the 50-session mean,
  ``down`` when both are below, else ``range`` (``unknown`` with fewer than 50 closes);
- volatility from the at-the-money implied volatility the entry decision saw: ``low`` below
  0.15, ``high`` above 0.25, else ``normal``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import numpy as np

from thetadesk.analytics.metrics import Trade
from thetadesk.chain import NEW_YORK

__all__ = [
    "DTE_BUCKETS",
    "attribute",
    "attribution_tables",
    "dte_bucket",
    "regime_at_entry",
    "time_bucket",
    "weekday",
]

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DTE_BUCKETS = ((0, 7), (8, 21), (22, 35), (36, 49), (50, 10_000))
LOW_IV, HIGH_IV = 0.15, 0.25
TREND_FAST, TREND_SLOW = 20, 50


def _ny(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(NEW_YORK)


def weekday(trade: Trade) -> str:
    return WEEKDAYS[_ny(trade.opened_at).weekday()]


def time_bucket(trade: Trade) -> str:
    """The New York hour of the entry: ``"10:00-11:00"``."""
    h = _ny(trade.opened_at).hour
    return f"{h:02d}:00-{h + 1:02d}:00"


def dte_bucket(trade: Trade) -> str:
    for lo, hi in DTE_BUCKETS:
        if lo <= trade.entry_dte <= hi:
            return f"{lo}-{hi}" if hi < 10_000 else f"{lo}+"
    return "negative"


def regime_at_entry(closes_before: Sequence[float], atm_iv: float | None) -> str:
    """``trend/volatility`` from closes strictly before the entry day and the entry's ATM IV."""
    c = np.asarray(closes_before, dtype=float)
    if c.size < TREND_SLOW:
        trend = "unknown"
    else:
        slow = c[-TREND_SLOW:].mean()
        fast = c[-TREND_FAST:].mean()
        if c[-1] > slow and fast > slow:
            trend = "up"
        elif c[-1] < slow and fast < slow:
            trend = "down"
        else:
            trend = "range"
    if atm_iv is None or not np.isfinite(atm_iv):
        vol = "unknown"
    elif atm_iv < LOW_IV:
        vol = "low"
    elif atm_iv > HIGH_IV:
        vol = "high"
    else:
        vol = "normal"
    return f"{trend}/{vol}"


def attribute(trades: Iterable[Trade], key: Callable[[Trade], str],
              order: Sequence[str] | None = None) -> dict[str, dict]:
    """Trades grouped by ``key``: count, P&L, win rate and mean P&L per group."""
    groups: dict[str, list[float]] = {}
    for t in trades:
        groups.setdefault(key(t), []).append(t.pnl)
    labels = sorted(groups)
    if order is not None:
        labels = [k for k in order if k in groups] + [k for k in labels if k not in order]
    out = {}
    for label in labels:
        p = np.asarray(groups[label])
        out[label] = {"trades": int(p.size), "pnl": float(p.sum()),
                      "win_rate": float((p > 0).mean()), "avg_pnl": float(p.mean())}
    return out


def attribution_tables(trades: Sequence[Trade]) -> dict[str, dict[str, dict]]:
    """Every table of the module docs, keyed ``strategy``, ``regime``, ``weekday``,
    ``time_of_day`` and ``dte``."""
    dte_order = [f"{lo}-{hi}" if hi < 10_000 else f"{lo}+" for lo, hi in DTE_BUCKETS]
    return {
        "strategy": attribute(trades, lambda t: t.strategy),
        "regime": attribute(trades, lambda t: t.regime),
        "weekday": attribute(trades, weekday, WEEKDAYS),
        "time_of_day": attribute(trades, time_bucket),
        "dte": attribute(trades, dte_bucket, dte_order),
    }
