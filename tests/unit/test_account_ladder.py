"""Specifications of the account's portfolio construction: a ladder of positions per symbol,
spacing between entries, equity-percentage sizing, the portfolio and bucket budgets."""

import math
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from tests.unit.conftest import MORNING, RULES, START, account_rules
from thetadesk.account import OPEN_STATUSES
from thetadesk.models import Leg
from thetadesk.sizing import SizingRules
from thetadesk.symbol import SymbolEngine

DAY = timedelta(days=1)


def _rules(limit=3, **sizing):
    return replace(account_rules(), max_positions_per_symbol=limit,
                   sizing=SizingRules(**sizing))


def _intent(market, symbol, at):
    tick = SymbolEngine(symbol, RULES, market).tick(at)
    assert tick.intents, tick.note
    return tick.intents[0]


def test_account_ladder_holds_several_positions_in_one_symbol_each_its_own(
        broker, make_engine, market, ledger):
    engine = make_engine(broker, rules=_rules(limit=3))
    engine.tick(MORNING, [_intent(market, "SPY", MORNING)])
    later = MORNING + DAY
    engine.prepare(later)
    assert "SPY" in engine.entry_symbols()  # one position of three allowed

    engine.enter(later, [_intent(market, "SPY", later)])

    positions = ledger.positions("paper")
    assert [p["symbol"] for p in positions] == ["SPY", "SPY"]
    assert len({p["position_id"] for p in positions}) == 2


def test_account_at_its_positions_per_symbol_limit_takes_no_entry_in_that_symbol(
        broker, make_engine, market, ledger):
    engine = make_engine(broker, rules=_rules(limit=1))
    engine.tick(MORNING, [_intent(market, "SPY", MORNING)])
    later = MORNING + DAY
    engine.prepare(later)
    assert engine.entry_symbols() == ("QQQ",)

    engine.enter(later, [_intent(market, "SPY", later)])

    assert len(ledger.positions("paper")) == 1


def test_account_without_a_limit_of_its_own_leaves_the_count_to_the_gate(
        broker, make_engine, market, ledger):
    engine = make_engine(broker, rules=_rules(limit=None))
    for day in (0, 2, 4):  # three entries whose strikes do not net against each other
        at = MORNING + day * DAY
        engine.tick(at, [_intent(market, "SPY", at)])
    assert len(ledger.positions("paper")) == 3


def test_account_min_days_between_entries_spaces_a_symbols_entries(
        broker, make_engine, market, ledger):
    engine = make_engine(broker, rules=_rules(limit=4, min_days_between_entries=7))
    engine.tick(MORNING, [_intent(market, "SPY", MORNING)])
    for day in (1, 4):  # Tuesday and Friday of the same week
        at = MORNING + day * DAY
        engine.tick(at, [_intent(market, "SPY", at)])
        assert "SPY" not in engine.entry_symbols(at)
    assert len(ledger.positions("paper")) == 1
    week = MORNING + 7 * DAY
    engine.prepare(week)
    assert "SPY" in engine.entry_symbols()
    engine.enter(week, [_intent(market, "SPY", week)])
    assert len(ledger.positions("paper")) == 2


def test_account_sizes_by_percent_of_current_equity(broker, make_engine, market, ledger):
    engine = make_engine(broker, rules=_rules(risk_per_trade_pct=1.2))
    intent = _intent(market, "SPY", MORNING)
    equity = broker.account().equity

    engine.tick(MORNING, [intent])

    (position,) = ledger.positions("paper")
    assert position["quantity"] == int(equity * 0.012 // intent.max_loss_per_spread)
    context = ledger.intents("paper")[0]["context"]
    assert '"sizing"' in context  # the figures behind the size are kept with the intent


def test_account_portfolio_budget_shrinks_the_next_trade_to_the_room_left(
        broker, make_engine, market, ledger):
    first = _intent(market, "SPY", MORNING)
    per_trade = 1.2  # percent of equity
    equity = broker.account().equity
    q1 = int(equity * per_trade / 100 // first.max_loss_per_spread)
    at_stake = q1 * first.max_loss_per_spread
    # Room for one more spread after the first trade, not a full second trade.
    total_pct = (at_stake + 1.5 * first.max_loss_per_spread) / equity * 100
    engine = make_engine(broker, rules=_rules(risk_per_trade_pct=per_trade,
                                              max_total_risk_pct=total_pct))
    engine.tick(MORNING, [first])
    later = MORNING + DAY
    second = _intent(market, "SPY", later)

    engine.tick(later, [second])

    first_pos, second_pos = ledger.positions("paper")
    assert first_pos["quantity"] == q1
    room = equity * total_pct / 100 - at_stake  # equity moved a little; the room with it
    assert second_pos["quantity"] == pytest.approx(room // second.max_loss_per_spread, abs=1)
    assert second_pos["quantity"] < q1


def _record_closes(ledger, returns_by_symbol):
    session = START - timedelta(days=200)
    prices = dict.fromkeys(returns_by_symbol, 100.0)
    for i in range(len(next(iter(returns_by_symbol.values())))):
        session += DAY
        for symbol, returns in returns_by_symbol.items():
            prices[symbol] *= math.exp(returns[i])
            ledger.record_close(symbol, session, prices[symbol])


@pytest.mark.parametrize(("correlated", "qqq_enters"), [(True, False), (False, True)])
def test_account_bucket_of_correlated_underlyings_shares_one_budget(
        broker, make_engine, market, ledger, correlated, qqq_enters):
    rng = np.random.default_rng(5)
    spy = rng.normal(0, 0.01, 80)
    qqq = spy * 1.1 + rng.normal(0, 0.002, 80) if correlated else rng.normal(0, 0.01, 80)
    _record_closes(ledger, {"SPY": spy, "QQQ": qqq})
    spy_intent = _intent(market, "SPY", MORNING)
    per_trade = 1.0
    engine = make_engine(broker, rules=_rules(risk_per_trade_pct=per_trade,
                                              max_total_risk_pct=10.0,
                                              max_bucket_risk_pct=per_trade * 1.05))

    engine.tick(MORNING, [spy_intent, _intent(market, "QQQ", MORNING)])

    held = sorted(p["symbol"] for p in ledger.positions("paper"))
    assert held == (["QQQ", "SPY"] if qqq_enters else ["SPY"])


def test_account_takes_no_entry_whose_leg_would_net_against_another_positions(
        broker, make_engine, market, ledger):
    # The broker keeps one net position per contract: a new spread short the contract an open
    # spread is long would net the two, and closing either would be refused.
    engine = make_engine(broker, rules=_rules(limit=3))
    first = _intent(market, "SPY", MORNING)
    engine.tick(MORNING, [first])
    (held,) = ledger.positions("paper")
    long_leg = next(leg for leg in first.spread.legs if leg.ratio > 0)
    width = abs(first.spread.strikes[1] - first.spread.strikes[0])
    later = MORNING + DAY
    normal = _intent(market, "SPY", later)
    below = replace(long_leg.contract, strike=long_leg.contract.strike - width)
    netting = replace(normal, intent_id=normal.intent_id + "-net", spread=replace(
        first.spread, legs=(Leg(long_leg.contract, -1), Leg(below, 1))))

    engine.tick(later, [netting])
    assert [p["position_id"] for p in ledger.positions("paper")] == [held["position_id"]]
    assert not ledger.orders("paper", OPEN_STATUSES)

    engine.tick(later + timedelta(minutes=15), [normal])  # the proposal as made: no netting
    assert len(ledger.positions("paper")) == 2
