"""Specifications of portfolio construction (thetadesk/sizing.py): budgets, buckets, rooms."""

import copy
import math
from datetime import date, timedelta

import numpy as np
import pytest
import yaml

from thetadesk.config import DEFAULT_CONFIG, parse_config
from thetadesk.errors import ConfigError
from thetadesk.sizing import (
    MIN_COMMON_RETURNS,
    SizingRules,
    buckets,
    portfolio_room,
    size,
    trade_budget,
    vol_multiplier,
)

DEFAULT_DATA = yaml.safe_load(DEFAULT_CONFIG.read_text())


def _series(returns, start=date(2024, 1, 2), price=100.0):
    out = [(start, price)]
    for i, r in enumerate(returns, 1):
        price *= math.exp(r)
        out.append((start + timedelta(days=i), price))
    return out


def test_trade_budget_percent_of_equity_follows_the_equity():
    rules = SizingRules(risk_per_trade_pct=2.0)
    assert trade_budget(rules, equity=100_000, fixed_budget=1000)[0] == pytest.approx(2000)
    assert trade_budget(rules, equity=80_000, fixed_budget=1000)[0] == pytest.approx(1600)


def test_trade_budget_without_a_percent_is_the_fixed_dollar_budget_times_the_multiplier():
    budget, vol = trade_budget(SizingRules(), equity=100_000, fixed_budget=1000,
                               size_multiplier=0.5)
    assert budget == pytest.approx(500)
    assert vol == 1.0


def test_vol_multiplier_shrinks_above_the_target_only_and_stops_at_the_floor():
    rules = SizingRules(vol_target_iv=0.20, vol_min_multiplier=0.4)
    assert vol_multiplier(rules, 0.15) == 1.0
    assert vol_multiplier(rules, 0.40) == pytest.approx(0.5)
    assert vol_multiplier(rules, 1.00) == pytest.approx(0.4)
    assert vol_multiplier(rules, math.nan) == 1.0  # unknown: not shrunk by itself
    assert vol_multiplier(SizingRules(), 0.80) == 1.0  # no target: no scaling


def test_buckets_group_correlated_symbols_and_keep_unrelated_ones_apart():
    rng = np.random.default_rng(1)
    market = rng.normal(0, 0.01, 80)
    other = rng.normal(0, 0.01, 80)
    closes = {
        "SPY": _series(market),
        "QQQ": _series(market * 1.2 + rng.normal(0, 0.002, 80)),
        "TLT": _series(other),
    }
    assert buckets(["SPY", "QQQ", "TLT"], closes, threshold=0.7, window=60) == [
        ("QQQ", "SPY"), ("TLT",)]


def test_buckets_with_too_short_a_history_count_every_symbol_together():
    rng = np.random.default_rng(2)
    closes = {"SPY": _series(rng.normal(0, 0.01, MIN_COMMON_RETURNS - 1)),
              "TLT": _series(rng.normal(0, 0.01, MIN_COMMON_RETURNS - 1))}
    assert buckets(["SPY", "TLT"], closes, threshold=0.7, window=60) == [("SPY", "TLT")]


def test_buckets_read_only_the_last_window_of_returns():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 0.01, 200)
    # Correlated long ago, unrelated over the last 60 returns.
    b = np.concatenate([a[:140], rng.normal(0, 0.01, 60)])
    closes = {"SPY": _series(a), "XLE": _series(b)}
    assert buckets(["SPY", "XLE"], closes, threshold=0.7, window=60) == [("SPY",), ("XLE",)]
    assert buckets(["SPY", "XLE"], closes, threshold=0.7, window=200) == [("SPY", "XLE")]


def test_portfolio_room_counts_the_whole_book_and_the_bucket_apart():
    rules = SizingRules(max_total_risk_pct=10.0, max_bucket_risk_pct=6.0)
    total, bucket = portfolio_room(rules, equity=100_000,
                                   at_risk={"SPY": 3000, "QQQ": 2000, "TLT": 1000},
                                   symbol="SPY", bucket=("QQQ", "SPY"))
    assert total == pytest.approx(4000)
    assert bucket == pytest.approx(1000)
    assert portfolio_room(SizingRules(), equity=100_000, at_risk={"SPY": 1e9}, symbol="SPY",
                          bucket=("SPY",)) == (None, None)


def test_size_takes_the_least_of_budget_and_rooms():
    assert size(400.0, 2000.0, None, None) == (5, "")
    assert size(400.0, 2000.0, 1300.0, None) == (3, "")
    assert size(400.0, 2000.0, 1300.0, 900.0) == (2, "")


@pytest.mark.parametrize(("budget", "room_total", "room_bucket", "says"), [
    (300.0, None, None, "more than the $300.00 budget per trade"),
    (2000.0, 350.0, None, "the portfolio has $350.00 of max loss left"),
    (2000.0, None, -50.0, "its bucket of correlated underlyings has $0.00 of max loss left"),
])
def test_size_zero_says_which_budget_is_spent(budget, room_total, room_bucket, says):
    quantity, why = size(400.0, budget, room_total, room_bucket)
    assert quantity == 0
    assert says in why


def _config(**sizing):
    data = copy.deepcopy(DEFAULT_DATA)
    data["sizing"] = sizing
    return parse_config(data, env={})


def test_sizing_config_absent_keeps_the_fixed_dollar_budget():
    data = copy.deepcopy(DEFAULT_DATA)
    data.pop("sizing", None)
    rules = SizingRules.from_config(parse_config(data, env={}).sizing)
    assert rules == SizingRules()


@pytest.mark.parametrize(("sizing", "text"), [
    ({"max_total_risk_pct": 10, "max_bucket_risk_pct": 20},
     "sizing.max_bucket_risk_pct: 20 is above max_total_risk_pct (10)"),
    ({"risk_per_trade_pct": 2, "max_total_risk_pct": 1},
     "sizing.max_total_risk_pct: 1 is below risk_per_trade_pct (2)"),
    ({"risk_per_trade_pct": 0}, "sizing.risk_per_trade_pct: "),
    ({"min_days_between_entries": -1}, "sizing.min_days_between_entries: "),
    ({"budget": 3}, "sizing.budget: "),
])
def test_sizing_config_bad_values_are_named_by_path(sizing, text):
    with pytest.raises(ConfigError) as err:
        _config(**sizing)
    assert text in str(err.value)
