"""The account engine managing positions end to end on a real paper broker and ledger: ladder
scale-outs and the trail, the breach stop, a roll recorded as one decision, repair, and every
exit's decision row with its numbers."""

import json
from datetime import timedelta

import pytest

from tests.fakes.market import PricedMarket
from tests.unit.conftest import MORNING, RULES, make_market
from thetadesk.account import AccountEngine, AccountRules
from thetadesk.adapters.sim_broker import SimBroker
from thetadesk.exits import ExitRules
from thetadesk.positions import ManageRules, RepairRules, RollRules
from thetadesk.risk.engine import RiskEngine
from thetadesk.risk.limits import RiskLimits
from thetadesk.store import Ledger, legs_from_json
from thetadesk.symbol import SymbolEngine

STEP = timedelta(minutes=5)
WIDE = RiskLimits(max_loss_per_trade=5000, max_open_positions=4, min_buying_power=10_000,
                  daily_loss_limit=5000)
ROLLING = ManageRules(take_profit=0.9, stop_multiple=50.0, close_dte=7,
                      roll=RollRules(enabled=True, when_short_delta=0.40, target_dte=60,
                                     short_delta=0.25, max_debit=5.0))
LADDER = ManageRules(take_profit=0.75, ladder=(0.25, 0.50), trail=0.15, stop_multiple=5.0,
                     close_dte=7)


@pytest.fixture
def desk(tmp_path):
    market = PricedMarket(make_market())
    ledger = Ledger(tmp_path / "thetadesk.db")
    broker = SimBroker("paper", market, tmp_path / "paper.db", starting_cash=100_000,
                       commission_per_contract=0.65)
    risk = RiskEngine(ledger, {"paper": WIDE})

    def engine(manage, max_risk=2400.0):
        rules = AccountRules("paper", ("SPY", "QQQ"), max_risk, ExitRules(0.5, 2.0, 7),
                             manage=manage, rate=0.04, dividend_yields=(("SPY", 0.013),))
        return AccountEngine(rules, ledger, broker, market, risk.check, MORNING)

    yield market, ledger, broker, engine
    broker.close()
    ledger.close()


def _open(market, engine):
    intent = SymbolEngine("SPY", RULES, market).tick(MORNING).intents[0]
    engine.tick(MORNING, [intent])
    return intent


def _price_profit(market, pos, fraction):
    """Quote the position's legs so that its profit at mid is ``fraction`` of max profit."""
    legs = legs_from_json(pos["legs"])
    short = next(leg.contract for leg in legs if leg.ratio < 0)
    long = next(leg.contract for leg in legs if leg.ratio > 0)
    credit = pos["entry_price"]
    market.set_mid(long, 0.20)
    market.set_mid(short, 0.20 + credit * (1 - fraction))


def test_ladder_scales_out_rung_by_rung_then_trails(desk):
    market, ledger, _broker, make = desk
    engine = make(LADDER)
    _open(market, engine)
    (pos,) = ledger.positions("paper")
    n = pos["quantity"]
    assert n >= 3, "the sizing should give a position the ladder can split"
    plan = [n // 3 + (1 if i >= 3 - n % 3 else 0) for i in range(3)]

    _price_profit(market, pos, 0.30)
    t1 = engine.tick(MORNING + STEP)
    pos = ledger.position(pos["position_id"])
    assert pos["quantity"] == n - plan[0]
    assert pos["status"] == "open"
    assert pos["rungs_hit"] == 1
    assert t1.closed == 0
    _price_profit(market, pos, 0.52)
    engine.tick(MORNING + 2 * STEP)
    pos = ledger.position(pos["position_id"])
    assert pos["quantity"] == plan[2]
    assert pos["rungs_hit"] == 2
    _price_profit(market, pos, 0.60)  # a new peak: no action, the peak is kept
    engine.tick(MORNING + 3 * STEP)
    pos = ledger.position(pos["position_id"])
    assert pos["quantity"] == plan[2]
    assert pos["peak_profit"] == pytest.approx(0.60, abs=0.02)
    _price_profit(market, pos, 0.44)  # 16 points below the peak: the trail closes the rest
    t4 = engine.tick(MORNING + 4 * STEP)
    pos = ledger.position(pos["position_id"])
    assert pos["status"] == "closed"
    assert pos["exit_reason"] == "trail"
    assert t4.closed == 1

    decisions = ledger.decisions("paper")
    assert [d["kind"] for d in decisions] == ["scale_out", "scale_out", "trail"]
    first = json.loads(decisions[0]["detail"])
    assert first["rung"] == 1
    assert first["quantity"] == n
    assert first["plan"] == plan
    assert first["profit_fraction"] == pytest.approx(0.30, abs=0.02)
    closes = [o for o in ledger.orders("paper") if not o["opening"]]
    assert [o["quantity"] for o in closes] == [plan[0], plan[1], plan[2]]
    assert all(o["decision_id"] == d["decision_id"] for o, d in zip(closes, decisions,
                                                                      strict=True))
    assert pos["realized_pnl"] > 0
    assert {o["status"] for o in closes} == {"filled"}


def test_take_profit_closes_a_single_spread_at_the_last_rung(desk):
    market, ledger, _, make = desk
    engine = make(LADDER, max_risk=500.0)
    _open(market, engine)
    (pos,) = ledger.positions("paper")
    assert pos["quantity"] == 1
    _price_profit(market, pos, 0.30)
    engine.tick(MORNING + STEP)  # rung 1 reached, nothing planned to close there
    assert ledger.position(pos["position_id"])["quantity"] == 1
    assert ledger.decisions("paper")[0]["kind"] == "scale_out"
    _price_profit(market, pos, 0.80)
    engine.tick(MORNING + 2 * STEP)
    assert ledger.position(pos["position_id"])["exit_reason"] == "take_profit"


def test_breach_stop_closes_when_spot_crosses_the_short_strike(desk):
    market, ledger, _, make = desk
    engine = make(ManageRules(take_profit=0.9, stop_multiple=50.0, close_dte=7,
                              stop_on_breach=True))
    _open(market, engine)
    (pos,) = ledger.positions("paper")
    short = next(leg.contract for leg in legs_from_json(pos["legs"]) if leg.ratio < 0)
    market.spots["SPY"] = short.strike + 1.0
    engine.tick(MORNING + STEP)
    assert ledger.position(pos["position_id"])["status"] == "open"
    market.spots["SPY"] = short.strike - 0.5
    engine.tick(MORNING + 2 * STEP)
    closed = ledger.position(pos["position_id"])
    assert closed["status"] == "closed"
    assert closed["exit_reason"] == "breach"
    (decision,) = ledger.decisions("paper")
    assert "below the short" in json.loads(decision["detail"])["why"]
    assert decision["reason"] == json.loads(decision["detail"])["why"]  # in words


def test_roll_closes_tested_spread_and_opens_one_further_out_as_one_decision(desk):
    market, ledger, _broker, make = desk
    engine = make(ROLLING)
    _open(market, engine)
    (old,) = ledger.positions("paper")
    old_legs = legs_from_json(old["legs"])
    short = next(leg.contract for leg in old_legs if leg.ratio < 0)
    market.spots["SPY"] = short.strike + 0.5  # at the money: the short put is tested
    tick = engine.tick(MORNING + STEP)

    old_now = ledger.position(old["position_id"])
    assert old_now["status"] == "closed"
    assert old_now["exit_reason"] == "roll"
    (roll,) = ledger.decisions("paper", kind="roll")
    assert roll["status"] == "done"
    assert "delta" in roll["reason"]  # why it was rolled, in words
    new = ledger.position(roll["new_position_id"])
    assert new["status"] == "open"
    assert new["rolled_from"] == old["position_id"]
    assert new["rolls"] == 1
    assert new["quantity"] == old["quantity"]
    new_short = next(leg.contract for leg in legs_from_json(new["legs"]) if leg.ratio < 0)
    assert new_short.expiry > short.expiry
    assert new_short.strike < short.strike
    detail = json.loads(roll["detail"])
    assert detail["net"] >= -5.0
    assert detail["new_legs"]
    assert ledger.order(roll["close_order_id"])["decision_id"] == roll["decision_id"]
    assert ledger.order(roll["open_order_id"])["decision_id"] == roll["decision_id"]
    assert len(tick.submitted) == 2
    # The new position is not rolled again at once (one roll per chain by default).
    engine.tick(MORNING + 2 * STEP)
    assert len(ledger.decisions("paper", kind="roll")) == 1
    engine.reconcile_positions(MORNING + 2 * STEP)
    assert engine.fail_closed is None


def test_roll_refused_by_the_risk_gate_ends_as_a_close(desk, tmp_path):
    market, ledger, _broker, make = desk
    rules = ManageRules(take_profit=0.9, stop_multiple=50.0, close_dte=7,
                        roll=RollRules(enabled=True, when_short_delta=0.40, target_dte=60,
                                       max_debit=5.0))
    engine = make(rules)
    _open(market, engine)
    (old,) = ledger.positions("paper")
    short = next(leg.contract for leg in legs_from_json(old["legs"]) if leg.ratio < 0)
    market.spots["SPY"] = short.strike + 0.5
    strict = RiskEngine(ledger, {"paper": RiskLimits(1.0, 4, 10_000, 5000)})
    engine.risk_gate = strict.check  # the new spread's max loss is beyond $1 a trade
    tick = engine.tick(MORNING + STEP)
    (roll,) = ledger.decisions("paper", kind="roll")
    assert roll["status"] == "abandoned"
    assert "risk gate refused" in roll["note"]
    assert ledger.position(old["position_id"])["status"] == "closed"
    assert ledger.positions("paper") == []
    assert any(a.kind == "roll_refused" for a in tick.alerts)


def test_repair_reduces_loser_once(desk):
    market, ledger, _, make = desk
    engine = make(ManageRules(take_profit=0.9, stop_multiple=50.0, close_dte=7,
                              repair=RepairRules(reduce_at_loss=0.4, reduce_fraction=0.5)))
    _open(market, engine)
    (pos,) = ledger.positions("paper")
    n = pos["quantity"]
    legs = legs_from_json(pos["legs"])
    short = next(leg.contract for leg in legs if leg.ratio < 0)
    long = next(leg.contract for leg in legs if leg.ratio > 0)
    loss = 0.45 * pos["max_loss_per_spread"] / 100  # per share
    market.set_mid(long, 1.00)
    market.set_mid(short, 1.00 + pos["entry_price"] + loss)
    engine.tick(MORNING + STEP)
    engine.tick(MORNING + 2 * STEP)
    pos = ledger.position(pos["position_id"])
    assert pos["quantity"] == n - n // 2
    assert pos["reduced"] == 1
    assert [d["kind"] for d in ledger.decisions("paper")] == ["repair_reduce"]


def test_a_rolled_position_keeps_its_own_exit_levels(desk):
    from dataclasses import replace

    market, ledger, _broker, make = desk
    engine = make(ROLLING)
    intent = SymbolEngine("SPY", RULES, market).tick(MORNING).intents[0]
    own = {"stop_multiple": 40.0, "take_profit": 0.8}
    engine.tick(MORNING, [replace(intent, context={**intent.context, "exits": own})])
    (old,) = ledger.positions("paper")
    short = next(leg.contract for leg in legs_from_json(old["legs"]) if leg.ratio < 0)
    market.spots["SPY"] = short.strike + 0.5  # tested: rolled
    engine.tick(MORNING + STEP)
    (roll,) = ledger.decisions("paper", kind="roll")
    new = ledger.position(roll["new_position_id"])
    assert json.loads(new["exit_rules"]) == own


def test_a_structure_with_its_own_exit_set_is_managed_by_it(desk):
    market, ledger, broker, _make = desk
    risk = RiskEngine(ledger, {"paper": WIDE})
    base = ManageRules(take_profit=0.9, stop_multiple=5.0, close_dte=7)
    own = ManageRules(take_profit=0.3, stop_multiple=None, close_dte=7)
    rules = AccountRules("paper", ("SPY", "QQQ"), 2400.0, ExitRules(0.9, 5.0, 7), manage=base,
                         rate=0.04, structures=(("bull_put_credit", own),))
    engine = AccountEngine(rules, ledger, broker, market, risk.check, MORNING)
    _open(market, engine)
    (pos,) = ledger.positions("paper")

    _price_profit(market, pos, 0.35)  # above the structure's 30%, below the account's 90%
    engine.tick(MORNING + STEP)

    closed = ledger.position(pos["position_id"])
    assert closed["status"] == "closed"
    assert closed["exit_reason"] == "take_profit"
