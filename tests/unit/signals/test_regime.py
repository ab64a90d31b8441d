"""Regimes on constructed markets: trends, ranges, volatility shifts, and the hysteresis that
keeps a market sitting on a threshold from flipping the regime every observation."""

import itertools
import math

import numpy as np
import pytest

from thetadesk.signals.regime import (
    Regime,
    RegimeInputs,
    RegimeRules,
    RegimeTracker,
    Trend,
    Volatility,
    classify,
    daily_inputs,
    realised_vol_percentile,
)

UP_NORMAL = Regime(Trend.UP, Volatility.NORMAL)


def obs(close=105.0, fast=103.0, slow=100.0, adx=30.0, pct=50.0):
    return RegimeInputs(close, fast, slow, adx, pct)


def test_raw_readings_of_trend_and_volatility():
    t = RegimeTracker(RegimeRules())
    assert t.raw(obs()) == UP_NORMAL
    assert t.raw(obs(close=95.0, fast=97.0)) == Regime(Trend.DOWN, Volatility.NORMAL)
    assert t.raw(obs(adx=15.0)).trend is Trend.RANGE  # no strength: a range
    assert t.raw(obs(close=99.0)).trend is Trend.RANGE  # mixed signals: a range
    assert t.raw(obs(pct=85.0)).volatility is Volatility.HIGH
    assert t.raw(obs(pct=10.0)).volatility is Volatility.LOW
    assert t.raw(obs(adx=math.nan)) is None


def test_the_first_reading_sets_the_regime_and_a_change_needs_confirming():
    t = RegimeTracker(RegimeRules(confirm=3))
    assert t.update(obs(adx=math.nan)) == (None, False)  # warming up
    assert t.update(obs()) == (UP_NORMAL, True)
    down = obs(close=95.0, fast=97.0)
    assert t.update(down) == (UP_NORMAL, False)
    assert t.update(down) == (UP_NORMAL, False)
    regime, changed = t.update(down)
    assert changed
    assert regime == Regime(Trend.DOWN, Volatility.NORMAL)


def test_an_interrupted_change_starts_counting_again():
    t = RegimeTracker(RegimeRules(confirm=2), UP_NORMAL)
    high = obs(pct=90.0)
    assert t.update(high) == (UP_NORMAL, False)
    assert t.update(obs()) == (UP_NORMAL, False)  # back to the regime in force: count reset
    assert t.update(high) == (UP_NORMAL, False)
    assert t.update(high) == (Regime(Trend.UP, Volatility.HIGH), True)
    t.update(obs(pct=90.0))
    assert t.update(obs(pct=math.nan)) == (Regime(Trend.UP, Volatility.HIGH), False)


def test_threshold_bands_hold_a_regime_in_force():
    rules = RegimeRules(confirm=1)
    t = RegimeTracker(rules, Regime(Trend.UP, Volatility.HIGH))
    assert t.update(obs(pct=75.0))[0].volatility is Volatility.HIGH  # above high_exit 70
    assert t.update(obs(pct=65.0))[0].volatility is Volatility.NORMAL
    assert t.update(obs(pct=75.0))[0].volatility is Volatility.NORMAL  # below high_enter 80
    assert t.update(obs(pct=20.0))[0].volatility is Volatility.LOW
    assert t.update(obs(pct=28.0))[0].volatility is Volatility.LOW  # below low_exit 30
    # An up trend in force keeps going while ADX >= adx_range (20); a new one needs 25.
    assert t.update(obs(adx=22.0))[0].trend is Trend.UP
    assert t.update(obs(adx=18.0))[0].trend is Trend.RANGE
    assert t.update(obs(adx=22.0))[0].trend is Trend.RANGE


def test_a_market_on_a_threshold_flips_far_less_with_hysteresis():
    rng = np.random.default_rng(2)
    pct = 80.0 + rng.normal(0.0, 3.0, 200)  # the percentile wanders across 80
    xs = [obs(pct=p) for p in pct]
    none = classify(xs, RegimeRules(high_exit=80.0, confirm=1))
    both = classify(xs, RegimeRules(confirm=3))

    def flips(rs):
        return sum(a != b for a, b in itertools.pairwise(rs))

    assert flips(none) > 40
    assert flips(both) <= 2


def test_constructed_trends_and_a_volatility_shift_from_daily_bars():
    days = 400
    rng = np.random.default_rng(9)
    drift = np.r_[np.full(150, 0.004), np.full(100, 0.0), np.full(150, -0.004)]
    vol = np.r_[np.full(250, 0.005), np.full(150, 0.02)]
    close = 100 * np.exp(np.cumsum(drift + vol * rng.normal(size=days)))
    high, low = close * (1 + vol), close * (1 - vol)
    inputs = daily_inputs(high, low, close, realised_vol_percentile(close))
    regimes = classify(inputs)
    assert regimes[100] is not None
    assert regimes[140].trend is Trend.UP
    assert regimes[390].trend is Trend.DOWN
    assert regimes[140].volatility is not Volatility.HIGH
    # The shift to four times the volatility reads high once the 20-day window holds it ...
    assert regimes[290].volatility is Volatility.HIGH
    # ... and, a percentile against the past year, normal again once it is the new normal.
    assert regimes[390].volatility is Volatility.NORMAL


def test_regime_names_round_trip_and_bad_rules_are_refused():
    assert Regime.parse("range/high") == Regime(Trend.RANGE, Volatility.HIGH)
    assert UP_NORMAL.name == "up/normal"
    with pytest.raises(ValueError, match="not a regime name"):
        Regime.parse("sideways")
    with pytest.raises(ValueError, match="low_enter <= low_exit"):
        RegimeRules(low_exit=75.0)
    with pytest.raises(ValueError, match="fast"):
        RegimeRules(fast=50, slow=20)
    with pytest.raises(ValueError, match="confirm"):
        RegimeRules(confirm=0)


def test_the_regime_history_is_kept_in_the_ledger_and_restores_a_tracker(tmp_path):
    from datetime import UTC, datetime, timedelta

    from thetadesk.store import Ledger

    ledger = Ledger(tmp_path / "ledger.db")
    t = RegimeTracker(RegimeRules(confirm=2))
    start = datetime(2025, 1, 6, 21, 0, tzinfo=UTC)
    readings = [obs(), obs(), obs(close=95.0, fast=97.0), obs(close=95.0, fast=97.0), obs()]
    previous = None
    for i, x in enumerate(readings):
        regime, changed = t.update(x)
        if changed:
            at = start + timedelta(days=i)
            assert ledger.record_regime(symbol="SPY", at=at, trend=regime.trend.value,
                                        volatility=regime.volatility.value,
                                        inputs=x.as_dict(), previous=previous)
            assert not ledger.record_regime(symbol="SPY", at=at, trend="range",
                                            volatility="low", inputs={})  # a re-run tick
            previous = regime.name
    history = ledger.regimes("SPY")
    assert [(h["trend"], h["volatility"], h["previous"]) for h in history] == [
        ("up", "normal", None), ("down", "normal", "up/normal")]
    assert history[1]["inputs"]["close"] == 95.0
    assert ledger.regimes("QQQ") == []
    assert ledger.latest_regime("SPY", start + timedelta(days=2))["trend"] == "up"
    last = ledger.latest_regime("SPY")
    restored = RegimeTracker(RegimeRules(confirm=2))
    restored.restore(Regime.parse(f"{last['trend']}/{last['volatility']}"))
    assert restored.regime == t.regime
    ledger.close()
