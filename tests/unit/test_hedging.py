"""Specifications of the hedging logic's pure parts: band sizing in round lots, option hedge
sizing, the tail budget, dynamic levels and the gamma upkeep estimate."""

import math

import pytest

from thetadesk.hedging import (
    HedgeRules,
    delta_hedge_shares,
    dynamic_levels,
    option_hedge_contracts,
    rebalance_cost,
    tail_budget,
)


@pytest.mark.parametrize(("delta", "shares"), [
    (0.0, 0), (150.0, 0), (-150.0, 0),  # inside the band (its edge included)
    (151.0, -200),  # 151 is 1.51 lots from the middle: two lots
    (249.0, -200), (251.0, -300), (-420.0, 400), (-449.0, 400), (-450.0, 500),
])
def test_delta_hedge_shares_round_lots_back_to_middle(delta, shares):
    assert delta_hedge_shares(delta, band=150.0, target=0.0, lot=100) == shares


def test_delta_hedge_shares_with_a_target_off_zero():
    assert delta_hedge_shares(260.0, band=50.0, target=100.0, lot=100) == -200
    assert delta_hedge_shares(140.0, band=50.0, target=100.0, lot=100) == 0


def test_delta_hedge_shares_none_when_no_lot_helps():
    assert delta_hedge_shares(40.0, band=30.0, target=0.0, lot=100) == 0  # 0.4 of a lot


@pytest.mark.parametrize(("delta", "shares"), [
    (52.0, 0),  # one lot would leave -48, outside the band's far side: the next check undoes it
    (-52.0, 0),
    (130.0, -100),  # +30 is inside; -70 would not be
    (180.0, -200),  # -20 is inside
    (160.0, -100),  # neither +60 nor -40 is inside: stop short of the target, never cross it
])
def test_delta_hedge_shares_never_overshoots_a_band_narrower_than_a_lot(delta, shares):
    assert delta_hedge_shares(delta, band=34.0, target=0.0, lot=100) == shares
    after = delta + shares
    assert abs(after) <= 34.0 or (abs(after) < abs(delta) and after * delta > 0) or shares == 0


def test_option_hedge_contracts_offsets_excess():
    assert option_hedge_contracts(300.0, 0.30) == 10
    assert option_hedge_contracts(-140.0, 0.30) == 5
    assert option_hedge_contracts(10.0, 0.30) == 0
    with pytest.raises(ValueError, match="option_delta must be > 0"):
        option_hedge_contracts(100.0, 0.0)


def test_tail_budget_is_fraction_of_collected_less_spent():
    assert tail_budget(10_000.0, 0.10, 250.0) == pytest.approx(750.0)
    assert tail_budget(10_000.0, 0.10, 2_000.0) == 0.0
    assert tail_budget(10_000.0, 0.0, 0.0) == 0.0


RULES = HedgeRules(band=200.0, tail_fraction=0.1, var_usage_from=0.5, iv_ratio_from=1.25,
                   iv_ratio_full=2.0, band_at_full=0.5, tail_at_full=2.0)


def test_dynamic_levels_calm_keeps_the_configured_band_and_fraction():
    levels = dynamic_levels(RULES, 0.3, 1.0)
    assert (levels.stress, levels.band, levels.tail_fraction) == (0.0, 200.0, 0.1)
    assert dynamic_levels(RULES, None, None).band == 200.0


def test_dynamic_levels_var_usage_narrows_band_and_grows_tail():
    half = dynamic_levels(RULES, 0.75, None)
    assert half.stress == pytest.approx(0.5)
    assert half.band == pytest.approx(150.0)
    assert half.tail_fraction == pytest.approx(0.15)
    full = dynamic_levels(RULES, 1.4, None)
    assert (full.band, full.tail_fraction) == (pytest.approx(100.0), pytest.approx(0.2))


def test_dynamic_levels_never_spend_more_than_the_premium_collected():
    rules = HedgeRules(tail_fraction=0.8, tail_at_full=2.0)
    assert dynamic_levels(rules, 1.0, None).tail_fraction == 1.0
    assert dynamic_levels(rules, 0.75, None).tail_fraction == 1.0  # 0.8 x 1.5 = 1.2, capped


def test_dynamic_levels_volatility_regime_counts_the_larger_of_the_two():
    levels = dynamic_levels(RULES, 0.6, 1.625)  # var 0.2 of the way, IV half way
    assert levels.stress == pytest.approx(0.5)


def test_rebalance_cost_grows_with_gamma_squared_and_falls_with_band():
    base = rebalance_cost(gamma=10.0, spot=500.0, daily_vol=0.01, band=100.0,
                          cost_per_share=0.01)
    assert base["delta_drift_per_day"] == pytest.approx(50.0)
    assert base["hedges_per_day"] == pytest.approx(0.25)
    assert base["cost_per_day"] == pytest.approx(0.25 * 100.0 * 0.01)
    double = rebalance_cost(20.0, 500.0, 0.01, 100.0, 0.01)
    assert double["cost_per_day"] == pytest.approx(4 * base["cost_per_day"])
    wider = rebalance_cost(10.0, 500.0, 0.01, 200.0, 0.01)
    assert wider["cost_per_day"] == pytest.approx(base["cost_per_day"] / 2)
    assert math.isinf(rebalance_cost(10.0, 500.0, 0.01, 0.0, 0.01)["cost_per_day"])
