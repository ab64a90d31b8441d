"""The tail book's VIX calls and gamma scalping, on a real paper broker, ledger and risk gate
over the simulator with VIX options: VIX calls bought with their share of the protection
budget through the gate and rolled like the puts; nothing bought (and one log line) where no
VIX chain is listed; the scalp buying shares as the puts' delta grows in a fall and selling
them in the recovery, its shares apart from the delta band's."""

from datetime import date, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from tests.unit.conftest import MORNING, RULES, make_market
from thetadesk.account import AccountEngine, AccountRules
from thetadesk.adapters.sim_broker import SimBroker
from thetadesk.adapters.sim_market import SimShock
from thetadesk.chain import NEW_YORK
from thetadesk.exits import ExitRules
from thetadesk.hedging import HedgeEngine, HedgeRules, scalp_book
from thetadesk.messages import HedgeOrder
from thetadesk.models import Leg, Right
from thetadesk.risk.engine import RiskEngine
from thetadesk.risk.gate import PortfolioLimits, SnapshotBuilder
from thetadesk.risk.limits import RiskLimits
from thetadesk.store import Ledger, legs_from_json
from thetadesk.symbol import SymbolEngine

STEP = timedelta(minutes=5)
WIDE = RiskLimits(max_loss_per_trade=5000, max_open_positions=4, min_buying_power=10_000,
                  daily_loss_limit=50_000)
VOLS = {"SPY": 0.16, "QQQ": 0.20}
DOWN, UP = date(2025, 1, 13), date(2025, 1, 15)  # an 8% gap down, then one up


def _desk(tmp_path, market, limits=None):
    ledger = Ledger(tmp_path / "thetadesk.db")
    broker = SimBroker("paper", market, tmp_path / "paper.db", starting_cash=250_000,
                       commission_per_contract=0.65)
    snapshots = SnapshotBuilder(market, 0.04, {"SPY": (0.16, 0.013), "QQQ": (0.20, 0.006)},
                                0.85)
    risk = RiskEngine(ledger, {"paper": WIDE}, {"paper": limits or PortfolioLimits()}, snapshots)
    rules = AccountRules("paper", ("SPY", "QQQ"), 5000.0, ExitRules(0.9, 50.0, 7), rate=0.04)
    engine = AccountEngine(rules, ledger, broker, market, risk.check, MORNING)

    def hedger(**kw):
        return HedgeEngine(ledger, risk, market, HedgeRules(**{"band": 10_000.0, **kw}),
                           {"paper": None}, VOLS)

    return ledger, broker, engine, hedger


@pytest.fixture
def swings(tmp_path):
    market = make_market(vix_options=True, shocks=(SimShock(DOWN, -0.08), SimShock(UP, 0.08)))
    ledger, broker, engine, hedger = _desk(tmp_path, market)
    yield market, ledger, engine, hedger
    broker.close()
    ledger.close()


@pytest.fixture
def vix_desk(tmp_path):
    market = make_market(vix_options=True)
    # A VaR limit far away: the gate measures every order (the VIX call on its future).
    ledger, broker, engine, hedger = _desk(tmp_path, market, PortfolioLimits(max_var99=1e9))
    yield market, ledger, engine, hedger
    broker.close()
    ledger.close()


def _round(engine, now, hedges=(), intents=()):
    engine.prepare(now)
    return engine.enter(now, intents, hedges=hedges)


def _at(day, hour=10, minute=0):
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


def _buy_puts(market, engine, quantity=10, delta=0.25):
    chain = market.chain("SPY", MORNING, min_dte=40, max_dte=90)
    row = chain.strike_by_delta(chain.nearest_expiry(60), delta, Right.PUT)
    order = HedgeOrder("paper", "tail", "SPY", MORNING, "test protection",
                       legs=(Leg(row.contract, 1),), quantity=quantity,
                       limit_price=-row.quote.ask)
    tick = _round(engine, MORNING, [order])
    assert len(tick.submitted) == 1
    return row.contract


def _scalp(hedging, engine, at):
    orders = [o for o in hedging.decide(at)["paper"] if o.kind == "gamma"]
    if orders:
        _round(engine, at, orders)
    return orders, hedging.report("paper")["gamma_scalp"]


def test_gamma_scalp_buys_as_the_puts_delta_grows_in_a_fall_and_sells_in_the_recovery(swings):
    market, ledger, engine, hedger = swings
    _buy_puts(market, engine)
    hedging = hedger(gamma_scalp=True, scalp_band=50.0, lot=100)
    (first,), state = _scalp(hedging, engine, MORNING + STEP)
    assert state["option_delta"] < -150  # ten 25-delta puts: short the market
    assert first.shares > 0  # long shares against long puts
    assert abs(state["option_delta"] + first.shares) <= 50.0
    assert first.strategy == "hedge_gamma"
    held = scalp_book(ledger, "paper", "SPY")["shares"]
    assert held == first.shares
    assert _scalp(hedging, engine, MORNING + 2 * STEP)[0] == []  # inside the band now
    (down,), state = _scalp(hedging, engine, _at(DOWN))
    assert state["option_delta"] < -(held + 50.0)  # the fall deepened the puts' delta
    assert down.shares > 0  # buys low
    low = market.spot("SPY", _at(DOWN))
    (up,), state = _scalp(hedging, engine, _at(UP))
    assert up.shares < 0  # sells high
    high = market.spot("SPY", _at(UP))
    assert high > low
    book = scalp_book(ledger, "paper", "SPY")
    assert book["trades"] == 3
    assert book["shares"] == first.shares + down.shares + up.shares
    assert hedging.report("paper")["gamma_scalp"]["pnl"] == pytest.approx(
        book["cash"] + book["shares"] * high, abs=0.01)
    # Every scalp order went through the gate, approved.
    verdicts = {v["client_order_id"]: v["approved"] for v in ledger.verdicts("paper")}
    scalps = [o for o in ledger.orders("paper") if o["purpose"] == "hedge_gamma"]
    assert len(scalps) == 3
    assert all(verdicts[o["client_order_id"]] for o in scalps)


def test_gamma_scalp_shares_are_its_own_within_the_hedge_share_book(swings):
    market, ledger, engine, hedger = swings
    _buy_puts(market, engine)
    _round(engine, MORNING + STEP, [HedgeOrder("paper", "delta", "SPY", MORNING + STEP,
                                               "band hedge", shares=-300)])
    hedging = hedger(gamma_scalp=True, scalp_band=50.0)
    (order,), _ = _scalp(hedging, engine, MORNING + 2 * STEP)
    assert order.shares > 0
    assert scalp_book(ledger, "paper", "SPY")["shares"] == order.shares
    (row,) = ledger.hedge_shares("paper")
    assert row["quantity"] == -300 + order.shares


def test_gamma_scalp_waits_its_interval_and_is_off_by_default(swings):
    market, _, engine, hedger = swings
    _buy_puts(market, engine)
    assert all(o.kind != "gamma" for o in hedger().decide(MORNING + STEP)["paper"])
    hedging = hedger(gamma_scalp=True, scalp_band=50.0,
                     scalp_interval=timedelta(days=30))
    assert _scalp(hedging, engine, MORNING + STEP)[0]
    orders, state = _scalp(hedging, engine, _at(DOWN))
    assert orders == []
    assert "last scalp" in state["note"]


def _collect(market, engine):
    intent = SymbolEngine("SPY", RULES, market).tick(MORNING).intents[0]
    _round(engine, MORNING, intents=[intent])


def test_vix_calls_are_bought_with_their_budget_through_the_gate_and_rolled(vix_desk):
    market, ledger, engine, hedger = vix_desk
    _collect(market, engine)
    hedging = hedger(tail_fraction=1.0, vix_calls=True, vix_call_share=0.5,
                     vix_call_delta=0.30, vix_call_dte=60, tail_dte=60, tail_roll_dte=21)
    at = MORNING + STEP
    orders = hedging.decide(at)["paper"]
    (vix,) = [o for o in orders if o.symbol == "VIX"]
    report = hedging.report("paper")["tail"]
    call = vix.legs[0].contract
    assert vix.kind == "tail"
    assert call.underlying == "VIX"
    assert call.is_call
    assert call.expiry == date(2025, 3, 18)  # 71 days: the listed expiry nearest 60
    row = market.chain("VIX", at).find(call.expiry, Right.CALL, call.strike)
    assert row.delta == pytest.approx(0.30, abs=0.06)
    assert vix.quantity * -vix.limit_price * 100 <= report["vix"]["budget"] + 1e-6
    assert report["vix"]["budget"] == pytest.approx(report["budget"] + report["spent"],
                                                    abs=0.02)  # half each, nothing spent yet
    _round(engine, at, orders)
    (held,) = [p for p in ledger.positions("paper")
               if p["strategy"] == "hedge_tail" and p["symbol"] == "VIX"]
    assert held["quantity"] == vix.quantity
    verdicts = {v["client_order_id"]: v for v in ledger.verdicts("paper")}
    (opened,) = [o for o in ledger.orders("paper") if o["position_id"] == held["position_id"]]
    assert verdicts[opened["client_order_id"]]["approved"]
    assert '"VIX.250318"' in verdicts[opened["client_order_id"]]["request"]  # measured on it
    later = hedging.decide(at + STEP)
    assert all(o.symbol != "VIX" for o in later["paper"])  # its budget is spent
    assert hedging.report("paper")["tail"]["vix"]["held"] == vix.quantity
    late = datetime(2025, 2, 25, 16, 0, tzinfo=MORNING.tzinfo)
    _round(engine, late)
    rolls = [o for o in hedging.decide(late)["paper"] if o.kind == "tail_roll"]
    assert held["position_id"] in {o.close_position_id for o in rolls}
    engine.enter(late, hedges=rolls)
    assert ledger.position(held["position_id"])["status"] == "closed"


def test_vix_calls_where_no_chain_is_listed_log_once_and_buy_puts_only(tmp_path):
    market = make_market()
    ledger, broker, engine, hedger = _desk(tmp_path, market)
    try:
        _collect(market, engine)
        hedging = hedger(tail_fraction=1.0, vix_calls=True, vix_call_share=0.5)
        with capture_logs() as logs:
            first = hedging.decide(MORNING + STEP)["paper"]
            hedging.decide(MORNING + 2 * STEP)
        assert [e for e in logs if e["event"] == "vix_calls_unavailable"] != []
        assert len([e for e in logs if e["event"] == "vix_calls_unavailable"]) == 1
        assert all(o.symbol == "SPY" for o in first)
        assert "vix" not in hedging.report("paper")["tail"]
        assert all(legs_from_json(o["legs"])[0].contract.underlying == "SPY"
                   for o in ledger.orders("paper") if o["purpose"] == "hedge_tail")
    finally:
        broker.close()
        ledger.close()


def test_a_vix_call_held_to_expiry_is_cash_settled_into_the_hedge_book(vix_desk):
    market, ledger, engine, _ = vix_desk
    chain = market.chain("VIX", MORNING)
    row = chain.find(date(2025, 1, 22), Right.CALL, 15.0)
    order = HedgeOrder("paper", "tail", "VIX", MORNING, "test protection",
                       legs=(Leg(row.contract, 1),), quantity=2, limit_price=-row.quote.ask)
    _round(engine, MORNING, [order])
    (pos,) = [p for p in ledger.positions("paper") if p["symbol"] == "VIX"]
    _round(engine, _at(date(2025, 1, 22), 10, 0))
    closed = ledger.position(pos["position_id"])
    settle = market.spot("VIX", _at(date(2025, 1, 22), 9, 30))
    assert closed["status"] == "closed"
    assert closed["exit_reason"] == "cash_settled"
    assert closed["exit_price"] == pytest.approx(max(settle - 15.0, 0.0))
    assert ledger.share_positions("paper") == []  # cash, not shares
    assert ledger.pnl_attribution("paper")["hedge"] == pytest.approx(closed["realized_pnl"])
