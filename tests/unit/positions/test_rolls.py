"""Specifications of roll selection on a real simulated chain."""

import pytest

from tests.unit.conftest import MORNING, make_market
from thetadesk.account import _natural, _reversed
from thetadesk.models import Right
from thetadesk.positions import RollPlan, RollRules, choose_roll
from thetadesk.strategies.spreads import bear_call_credit, bull_put_credit


@pytest.fixture(scope="module")
def chain():
    return make_market().chain("SPY", MORNING, min_dte=1, max_dte=120)


def _put_spread(chain, dte, delta):
    expiry = chain.nearest_expiry(dte)
    short = chain.strike_by_delta(expiry, delta, Right.PUT).contract
    long = next(r.contract for r in chain.rows(expiry, Right.PUT)
                if r.contract.strike == short.strike - 5)
    return bull_put_credit(short, long)


def test_roll_goes_out_in_time_and_away_in_strike(chain):
    old = _put_spread(chain, 14, 0.45)  # a tested put spread two weeks out
    quotes = {r.contract: r.quote for e in chain.expiries() for r in chain.rows(e)}
    close_natural = _natural(_reversed(old.legs), quotes)  # as the account closes it
    plan = choose_roll(chain, old.legs, "bull_put_credit", close_natural,
                       RollRules(enabled=True, target_dte=45, short_delta=0.25, max_debit=5.0),
                       frozenset({Right.PUT}))
    assert isinstance(plan, RollPlan), plan
    new_short = next(leg.contract for leg in plan.spread.legs if leg.ratio < 0)
    new_long = next(leg.contract for leg in plan.spread.legs if leg.ratio > 0)
    old_short = next(leg.contract for leg in old.legs if leg.ratio < 0)
    assert new_short.expiry > old_short.expiry
    assert new_short.strike < old_short.strike
    assert new_short.strike - new_long.strike == 5
    assert plan.net == pytest.approx(plan.open_natural + close_natural)
    assert plan.detail["new_dte"] == chain.dte(new_short.expiry)
    assert close_natural < 0  # closing a short spread costs


def test_roll_refused_when_it_costs_more_than_the_debit_allowed(chain):
    old = _put_spread(chain, 14, 0.45)
    result = choose_roll(chain, old.legs, "bull_put_credit", -4.9,
                         RollRules(enabled=True, target_dte=45, max_debit=0.10),
                         frozenset({Right.PUT}))
    assert isinstance(result, str)
    assert "more than the 0.10 allowed" in result


def test_roll_tested_side_moves_strictly_away_even_if_delta_pick_is_closer(chain):
    old = _put_spread(chain, 14, 0.10)  # far out of the money
    old_short = next(leg.contract for leg in old.legs if leg.ratio < 0)
    plan = choose_roll(chain, old.legs, "bull_put_credit", -0.05,
                       RollRules(enabled=True, target_dte=45, short_delta=0.45, max_debit=5.0),
                       frozenset({Right.PUT}))
    assert isinstance(plan, RollPlan), plan
    new_short = next(leg.contract for leg in plan.spread.legs if leg.ratio < 0)
    assert new_short.strike < old_short.strike


def test_roll_bear_call_mirrors(chain):
    expiry = chain.nearest_expiry(14)
    short = chain.strike_by_delta(expiry, 0.45, Right.CALL).contract
    long = next(r.contract for r in chain.rows(expiry, Right.CALL)
                if r.contract.strike == short.strike + 5)
    old = bear_call_credit(short, long)
    plan = choose_roll(chain, old.legs, "bear_call_credit", -0.5,
                       RollRules(enabled=True, target_dte=45, max_debit=5.0),
                       frozenset({Right.CALL}))
    assert isinstance(plan, RollPlan), plan
    new_short = next(leg.contract for leg in plan.spread.legs if leg.ratio < 0)
    assert new_short.strike > short.strike
    assert new_short.expiry > short.expiry


def test_roll_not_for_debit_spreads_or_without_later_expiry(chain):
    old = _put_spread(chain, 14, 0.45)
    assert "credit spreads" in choose_roll(chain, old.legs, "bull_call_debit", 0.0,
                                           RollRules(enabled=True), frozenset())
    last = _put_spread(chain, 200, 0.25)  # the furthest listed expiry
    assert "no expiry listed after" in choose_roll(chain, last.legs, "bull_put_credit", -1.0,
                                                   RollRules(enabled=True), frozenset())
