"""Specifications of the exit rules for credit spreads."""

import pytest

from thetadesk.exits import ExitRules, decide_exit

RULES = ExitRules(take_profit=0.5, stop_multiple=2.0, close_dte=7)


@pytest.mark.parametrize(
    ("value_now", "dte", "reason"),
    [
        (-0.40, 30, "take_profit"),  # profit 0.40 >= 50% of 0.80
        (-0.41, 30, None),  # profit 0.39
        (-2.40, 30, "stop"),  # loss 1.60 = 2 x 0.80
        (-2.39, 30, None),
        (-0.70, 7, "time"),  # DTE threshold wins whatever the P&L
        (-0.70, 8, None),
    ],
)
def test_decide_exit_for_a_080_credit(value_now, dte, reason):
    decision = decide_exit(0.80, value_now, dte, RULES)
    assert (decision.reason if decision else None) == reason


def test_decide_exit_detail_states_the_numbers():
    assert decide_exit(0.80, -2.50, 30, RULES).detail == "loss 1.70/share >= 2 x the 0.80 credit"
