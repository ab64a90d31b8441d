"""Specifications of the position-management decision: ladders, stops, time exits, rolls and
repair, each with the reason and the numbers behind it."""

import math
from dataclasses import replace

import pytest

from tests.configs import LADDERED_EXITS
from thetadesk.positions import (
    ManageRules,
    PositionView,
    RepairRules,
    RollRules,
    decide,
    ladder_plan,
)
from thetadesk.positions.manage import ShortLeg

LADDER = ManageRules(take_profit=0.75, ladder=(0.25, 0.50), trail=0.15, stop_multiple=2.0,
                     close_dte=7)


def view(**kw) -> PositionView:
    """A 5-wide bull put spread sold for 1.00 (max profit $100, max loss $400), 6 held."""
    base = dict(position_id="p1", strategy="bull_put_credit", quantity=6, initial_quantity=6,
                entry_price=1.00, value=-1.00, max_profit=100.0, max_loss=400.0,
                multiplier=100, dte=30, spot=590.0,
                shorts=(ShortLeg(570.0, False, 0.20),))
    base.update(kw)
    return PositionView(**base)


@pytest.mark.parametrize(("initial", "rungs", "plan"), [
    (6, 3, (2, 2, 2)), (4, 3, (1, 1, 2)), (2, 3, (0, 1, 1)), (1, 3, (0, 0, 1)), (5, 1, (5,)),
    (0, 2, (0, 0)),
])
def test_ladder_plan_splits_evenly_remainder_to_later_rungs(initial, rungs, plan):
    assert ladder_plan(initial, rungs) == plan
    assert sum(plan) == initial


def test_ladder_plan_refuses_no_rungs():
    with pytest.raises(ValueError, match="rung"):
        ladder_plan(3, 0)


def test_decide_nothing_between_rungs():
    assert decide(view(value=-0.90), LADDER) is None  # 10% of max profit


def test_decide_first_rung_scales_out_its_share():
    action = decide(view(value=-0.75), LADDER)  # 25% of max profit
    assert (action.kind, action.reason, action.quantity, action.rung) == (
        "close", "scale_out", 2, 1)
    assert action.detail["profit_fraction"] == pytest.approx(0.25)
    assert action.detail["plan"] == [2, 2, 2]


def test_decide_second_rung_after_first_closes_next_share():
    action = decide(view(value=-0.45, quantity=4, rungs_hit=1, peak_profit=0.3), LADDER)
    assert (action.reason, action.quantity, action.rung) == ("scale_out", 2, 2)


def test_decide_jump_past_two_rungs_closes_both_shares():
    action = decide(view(value=-0.45), LADDER)  # 55%: rungs 1 and 2 at once
    assert (action.reason, action.quantity, action.rung) == ("scale_out", 4, 2)


def test_decide_last_rung_closes_everything_left():
    action = decide(view(value=-0.20, quantity=2, rungs_hit=2, peak_profit=0.6), LADDER)
    assert (action.reason, action.quantity, action.rung) == ("take_profit", 2, 3)


def test_decide_rung_with_nothing_planned_is_reached_with_zero_quantity():
    action = decide(view(value=-0.70, quantity=2, initial_quantity=2), LADDER)
    assert (action.reason, action.quantity, action.rung) == ("scale_out", 0, 1)


def test_decide_trail_fires_at_the_giveback_and_not_before():
    held = view(quantity=4, rungs_hit=1, peak_profit=0.45)
    assert decide(replace(held, value=-0.69), LADDER) is None  # 31%: 14 points below the peak
    action = decide(replace(held, value=-0.70), LADDER)  # 30%: 15 points below
    assert (action.reason, action.quantity) == ("trail", 4)
    assert action.detail["peak_profit"] == pytest.approx(0.45)


def test_decide_no_trail_before_any_rung():
    assert decide(view(value=-0.95, peak_profit=0.2), LADDER) is None


def test_decide_stop_at_credit_multiple():
    action = decide(view(value=-3.00), LADDER)  # loss 2.00 = 2 x the 1.00 credit
    assert (action.reason, action.quantity) == ("stop", 6)
    assert "2 x the 1.00 premium" in action.detail["why"]
    assert decide(view(value=-2.99), LADDER) is None


def test_decide_breach_of_short_strike_when_configured():
    rules = replace(LADDER, stop_on_breach=True)
    action = decide(view(spot=569.5), rules)
    assert action.reason == "breach"
    assert "below the short 570 put" in action.detail["why"]
    assert decide(view(spot=570.5), rules) is None
    assert decide(view(spot=569.5), LADDER) is None  # off by default


def test_decide_breach_of_short_call_is_above():
    rules = replace(LADDER, stop_on_breach=True)
    call = view(strategy="bear_call_credit", shorts=(ShortLeg(600.0, True, 0.2),))
    assert decide(replace(call, spot=600.5), rules).reason == "breach"
    assert decide(replace(call, spot=599.5), rules) is None


def test_decide_short_delta_stop():
    rules = replace(LADDER, short_delta_stop=0.5)
    assert decide(view(shorts=(ShortLeg(570.0, False, 0.49),)), rules) is None
    action = decide(view(shorts=(ShortLeg(570.0, False, 0.50),)), rules)
    assert action.reason == "short_delta"
    assert action.detail["short_deltas"] == [0.5]


def test_decide_unknown_delta_never_stops():
    rules = replace(LADDER, short_delta_stop=0.5)
    assert decide(view(shorts=(ShortLeg(570.0, False, math.nan),)), rules) is None


def test_decide_time_exit_at_dte_threshold():
    action = decide(view(dte=7), LADDER)
    assert (action.reason, action.quantity) == ("time", 6)
    assert decide(view(dte=8), LADDER) is None


def test_decide_expiry_day_closes_unless_held_to_expiry():
    rules = replace(LADDER, close_dte=0)
    assert decide(view(dte=0), rules).reason == "time"
    assert decide(view(dte=0), replace(rules, hold_to_expiry=True)) is None


def test_decide_time_before_stop_before_profit():
    rules = replace(LADDER, short_delta_stop=0.3)
    assert decide(view(dte=5, value=-3.5), rules).reason == "time"
    assert decide(view(value=-3.5, shorts=(ShortLeg(570, False, 0.6),)), rules).reason == "stop"


ROLL = replace(LADDER, roll=RollRules(enabled=True, when_short_delta=0.40))


def test_decide_roll_when_tested():
    action = decide(view(shorts=(ShortLeg(570.0, False, 0.41),), value=-1.8), ROLL)
    assert (action.kind, action.quantity) == ("roll", 6)
    assert "0.41 >= 0.40" in action.detail["why"]


def test_decide_roll_not_when_disabled_exhausted_or_refused():
    tested = view(shorts=(ShortLeg(570.0, False, 0.45),), value=-1.8)
    assert decide(tested, LADDER) is None
    assert decide(replace(tested, rolls=1), ROLL) is None  # max_rolls 1
    assert decide(tested, ROLL, allow_roll=False) is None


def test_decide_roll_only_for_credit_spreads():
    debit = view(strategy="bull_call_debit", shorts=(ShortLeg(600, True, 0.45),),
                 entry_price=-2.0, value=2.0, max_profit=300.0, max_loss=200.0)
    assert decide(debit, ROLL) is None


def test_decide_stop_wins_over_roll():
    rules = replace(ROLL, short_delta_stop=0.6)
    action = decide(view(shorts=(ShortLeg(570.0, False, 0.65),)), rules)
    assert action.reason == "short_delta"


REPAIR = replace(LADDER, repair=RepairRules(reduce_at_loss=0.5, reduce_fraction=0.5,
                                            add_at_profit=0.15, add_fraction=0.5))


def test_decide_repair_reduces_loser_once():
    loser = view(value=-2.60)  # loss 1.60/share = $160 = 40% of max loss
    assert decide(loser, REPAIR) is None
    assert decide(view(value=-2.95), replace(REPAIR, stop_multiple=3.0)) is None  # 48.75%
    action = decide(view(value=-3.00), replace(REPAIR, stop_multiple=3.0))  # loss 50%
    assert (action.reason, action.quantity) == ("repair_reduce", 3)
    assert decide(view(value=-3.00, reduced=True), replace(REPAIR, stop_multiple=3.0)) is None


def test_decide_repair_reduce_keeps_at_least_one():
    rules = replace(REPAIR, stop_multiple=3.0,
                    repair=replace(REPAIR.repair, reduce_fraction=0.9))
    assert decide(view(value=-3.0, quantity=2), rules).quantity == 1
    assert decide(view(value=-3.0, quantity=1), rules) is None


def test_decide_repair_adds_to_winner_before_first_rung_only_once():
    action = decide(view(value=-0.85), REPAIR)  # 15% of max profit
    assert (action.kind, action.reason, action.quantity) == ("add", "repair_add", 3)
    assert decide(view(value=-0.85, added=True), REPAIR) is None
    assert decide(view(value=-0.85), LADDER) is None  # off by default


def test_decide_debit_spread_profit_and_stop_from_premium():
    debit = view(strategy="bull_call_debit", entry_price=-2.0, value=2.0, max_profit=300.0,
                 max_loss=200.0, shorts=(ShortLeg(600, True, 0.3),))
    assert decide(replace(debit, value=4.25), LADDER).reason == "take_profit"  # 75% of 300
    assert decide(replace(debit, value=0.0), replace(LADDER, stop_multiple=1.0)).reason == "stop"


def test_decide_without_a_stop_holds_a_loss_past_any_multiple():
    rules = replace(LADDER, stop_multiple=None)
    assert decide(view(value=-3.90), rules) is None  # a 2.9x loss: no per-trade stop
    assert decide(view(value=-3.90), LADDER).reason == "stop"


def test_decide_a_spread_too_cheap_to_close_is_left_to_expire():
    rules = replace(LADDER, min_close_value=0.05, take_profit=0.9, ladder=())
    assert decide(view(value=-0.05, dte=3), rules) is None  # no time exit, no take profit
    assert decide(view(value=-0.06, dte=3), rules).reason == "time"  # a cent above: closed
    assert decide(view(value=-0.08, dte=20), rules).reason == "take_profit"


def test_decide_a_cheap_spread_is_still_stopped():
    rules = replace(LADDER, min_close_value=0.05, stop_multiple=0.02)
    # Sold for 0.01, worth 0.04 now: cheap, but the loss is 3x the premium.
    action = decide(view(entry_price=0.01, value=-0.04), rules)
    assert action.reason == "stop"


def test_decide_min_close_value_leaves_a_debit_spread_alone():
    rules = replace(LADDER, min_close_value=0.05)
    debit = view(strategy="bull_call_debit", entry_price=-1.0, value=0.02, dte=5, shorts=())
    assert decide(debit, rules).reason == "time"


def test_manage_rules_by_structure_replace_only_the_keys_given():
    import yaml

    from thetadesk.config import DEFAULT_CONFIG, parse_config

    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["exits"].update(LADDERED_EXITS)
    data["exits"]["structures"] = {"iron_condor": {"take_profit": 0.5, "stop_multiple": None},
                                   "bull_call_debit": {"hold_to_expiry": True}}
    exits = parse_config(data, env={}).exits
    base = ManageRules.from_config(exits)
    sets = dict(ManageRules.by_structure(exits))
    assert sets["iron_condor"] == replace(base, take_profit=0.5, stop_multiple=None,
                                          ladder=(0.25,))  # the 0.50 rung is not below 0.5
    assert sets["bull_call_debit"] == replace(base, hold_to_expiry=True)
    assert "bull_put_credit" not in sets
