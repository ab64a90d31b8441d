"""Market regime: trend (up, down, range) x volatility (low, normal, high), with hysteresis.

The raw reading at each decision time comes from daily signals, point in time:

- Trend: up when the close is above the slow moving average and the fast one above the slow,
  down when both are below, and in either case only when ADX says the move has strength (at
  least ``adx_trend``; a trend already in force keeps it down to ``adx_range``, the lower of
  the two thresholds). Anything else is a range.
- Volatility: from a 0..100 percentile of volatility against its own past year (the IV
  percentile, or the realised volatility's where no IV history exists). High from
  ``high_enter`` up, and it stays high until it falls below ``high_exit``; low from
  ``low_enter`` down, until it rises above ``low_exit``; normal between.

Hysteresis twice over: the thresholds above are bands rather than lines, and a new regime takes
effect only after the raw reading has shown it ``confirm`` observations running (one a session
for daily inputs), so a market sitting on a threshold does not flip the desk's strategy every
tick. ``RegimeTracker`` holds that state; it can be rebuilt from the ledger's regime history
(``restore``) or by replaying the inputs (``classify``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

__all__ = ["Regime", "RegimeInputs", "RegimeRules", "RegimeTracker", "Trend", "Volatility",
           "classify"]


class Trend(StrEnum):
    UP = "up"
    DOWN = "down"
    RANGE = "range"


class Volatility(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class Regime:
    trend: Trend
    volatility: Volatility

    @property
    def name(self) -> str:
        """``up/normal`` and so on: the key of the regime's parameters in config."""
        return f"{self.trend.value}/{self.volatility.value}"

    @classmethod
    def parse(cls, name: str) -> Regime:
        try:
            trend, vol = name.split("/")
            return cls(Trend(trend), Volatility(vol))
        except ValueError:
            raise ValueError(f"not a regime name: {name!r} (expected trend/volatility, e.g. "
                             "'up/normal'; trends up, down, range; volatility low, normal, "
                             "high)") from None


@dataclass(frozen=True, slots=True)
class RegimeInputs:
    """One observation: the close and its fast and slow moving averages, ADX, and the
    volatility percentile (0..100). NaN anywhere means "not known yet" (warm-up, a gap)."""

    close: float
    sma_fast: float
    sma_slow: float
    adx: float
    vol_percentile: float

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if math.isfinite(v) else None)
                for k, v in (("close", self.close), ("sma_fast", self.sma_fast),
                             ("sma_slow", self.sma_slow), ("adx", self.adx),
                             ("vol_percentile", self.vol_percentile))}


@dataclass(frozen=True, slots=True)
class RegimeRules:
    fast: int = 20  # sessions in the fast moving average
    slow: int = 50  # sessions in the slow one
    adx_period: int = 14
    adx_trend: float = 25.0  # ADX from which a new trend is recognised
    adx_range: float = 20.0  # ADX below which a trend in force becomes a range
    low_enter: float = 20.0  # volatility percentile at or below which it becomes low
    low_exit: float = 30.0  # ... and above which low volatility ends
    high_enter: float = 80.0  # at or above which it becomes high
    high_exit: float = 70.0  # ... and below which high volatility ends
    confirm: int = 3  # observations a new regime must hold before it takes effect

    def __post_init__(self) -> None:
        if not (1 <= self.fast < self.slow):
            raise ValueError(f"regime: fast ({self.fast}) must be >= 1 and below slow "
                             f"({self.slow})")
        if self.adx_period < 1:
            raise ValueError(f"regime: adx_period must be >= 1, got {self.adx_period}")
        if not (0 <= self.adx_range <= self.adx_trend <= 100):
            raise ValueError(f"regime: need 0 <= adx_range ({self.adx_range}) <= adx_trend "
                             f"({self.adx_trend}) <= 100")
        if not (0 <= self.low_enter <= self.low_exit < self.high_exit <= self.high_enter
                <= 100):
            raise ValueError(
                "regime: need 0 <= low_enter <= low_exit < high_exit <= high_enter <= 100, got "
                f"{self.low_enter}, {self.low_exit}, {self.high_exit}, {self.high_enter}")
        if self.confirm < 1:
            raise ValueError(f"regime: confirm must be >= 1 observation, got {self.confirm}")


def _raw_trend(x: RegimeInputs, held: Trend | None, rules: RegimeRules) -> Trend | None:
    if not all(math.isfinite(v) for v in (x.close, x.sma_fast, x.sma_slow, x.adx)):
        return None
    if x.close > x.sma_slow and x.sma_fast > x.sma_slow:
        direction = Trend.UP
    elif x.close < x.sma_slow and x.sma_fast < x.sma_slow:
        direction = Trend.DOWN
    else:
        return Trend.RANGE
    needed = rules.adx_range if held is direction else rules.adx_trend
    return direction if x.adx >= needed else Trend.RANGE


def _raw_vol(p: float, held: Volatility | None, rules: RegimeRules) -> Volatility | None:
    if not math.isfinite(p):
        return None
    if p >= rules.high_enter or (held is Volatility.HIGH and p >= rules.high_exit):
        return Volatility.HIGH
    if p <= rules.low_enter or (held is Volatility.LOW and p <= rules.low_exit):
        return Volatility.LOW
    return Volatility.NORMAL


@dataclass(frozen=True, slots=True)
class _State:
    regime: Regime | None = None  # in force
    candidate: Regime | None = None  # the raw reading that differs from it
    count: int = 0  # consecutive observations of the candidate


class RegimeTracker:
    """The regime in force for one underlying, updated one observation at a time."""

    def __init__(self, rules: RegimeRules | None = None, regime: Regime | None = None) -> None:
        self.rules = rules or RegimeRules()
        self._state = _State(regime)

    @property
    def regime(self) -> Regime | None:
        """The regime in force; None until the inputs have warmed up."""
        return self._state.regime

    def restore(self, regime: Regime | None) -> None:
        """Start from a recorded regime (the ledger's last), with nothing pending."""
        self._state = _State(regime)

    def raw(self, x: RegimeInputs) -> Regime | None:
        """This observation's reading on its own (threshold bands relative to the regime in
        force), before the confirmation count; None while an input is unknown."""
        held = self._state.regime
        trend = _raw_trend(x, held.trend if held else None, self.rules)
        vol = _raw_vol(x.vol_percentile, held.volatility if held else None, self.rules)
        if trend is None or vol is None:
            return None
        return Regime(trend, vol)

    def update(self, x: RegimeInputs) -> tuple[Regime | None, bool]:
        """Take one observation; the regime in force after it and whether it just changed.
        The first complete reading sets the regime at once (there is nothing to flip from);
        an unknown reading changes nothing and resets a pending change's count."""
        s = self._state
        reading = self.raw(x)
        if reading is None:
            self._state = replace(s, candidate=None, count=0)
            return s.regime, False
        if s.regime is None:
            self._state = _State(reading)
            return reading, True
        if reading == s.regime:
            self._state = _State(s.regime)
            return s.regime, False
        count = s.count + 1 if reading == s.candidate else 1
        if count >= self.rules.confirm:
            self._state = _State(reading)
            return reading, True
        self._state = _State(s.regime, reading, count)
        return s.regime, False


def classify(inputs: Iterable[RegimeInputs], rules: RegimeRules | None = None,
             start: Regime | None = None) -> list[Regime | None]:
    """The regime in force after each observation (a backtest's or a restart's replay)."""
    tracker = RegimeTracker(rules, start)
    return [tracker.update(x)[0] for x in inputs]


def daily_inputs(high, low, close, vol_percentile, rules: RegimeRules | None = None
                 ) -> list[RegimeInputs]:
    """Each session's ``RegimeInputs`` from daily bars and a volatility percentile series
    (the same length; see ``realised_vol_percentile`` when there is no IV history)."""
    import numpy as np

    from thetadesk.signals.indicators import adx, sma

    r = rules or RegimeRules()
    c = np.asarray(close, dtype=np.float64)
    p = np.asarray(vol_percentile, dtype=np.float64)
    if p.shape != c.shape:
        raise ValueError(f"{len(p)} volatility percentiles for {len(c)} closes")
    fast, slow = sma(c, r.fast), sma(c, r.slow)
    strength = adx(high, low, c, r.adx_period).adx
    return [RegimeInputs(float(c[i]), float(fast[i]), float(slow[i]), float(strength[i]),
                         float(p[i])) for i in range(len(c))]


def realised_vol_percentile(close, window: int = 20, lookback: int = 252,
                            min_observations: int = 60):
    """The percentile (0..100) of the ``window``-session realised volatility against its own
    last ``lookback`` values, point in time: the volatility regime's input where no implied
    volatility history exists."""
    from thetadesk.signals.indicators import close_to_close_vol
    from thetadesk.signals.volatility import rolling_iv_rank

    return rolling_iv_rank(close_to_close_vol(close, window), lookback, min_observations)[1]
