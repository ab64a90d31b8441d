"""The hedging engine and the account placing its orders, on a real paper broker, ledger and
risk gate: share hedges in their own book, the churn interval, tail puts bought from the
premium collected and rolled, and what a HALTED breaker lets through."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.conftest import MORNING, RULES, make_market
from thetadesk.account import AccountEngine, AccountRules
from thetadesk.adapters.sim_broker import SimBroker
from thetadesk.exits import ExitRules
from thetadesk.hedging import HedgeEngine, HedgeRules
from thetadesk.messages import HedgeOrder
from thetadesk.risk.engine import RiskEngine
from thetadesk.risk.gate import PortfolioLimits, SnapshotBuilder
from thetadesk.risk.limits import RiskLimits
from thetadesk.store import Ledger
from thetadesk.symbol import SymbolEngine

STEP = timedelta(minutes=5)
WIDE = RiskLimits(max_loss_per_trade=5000, max_open_positions=4, min_buying_power=10_000,
                  daily_loss_limit=5000)
VOLS = {"SPY": 0.16, "QQQ": 0.20}


@pytest.fixture
def desk(tmp_path):
    market = make_market()
    ledger = Ledger(tmp_path / "thetadesk.db")
    broker = SimBroker("paper", market, tmp_path / "paper.db", starting_cash=100_000,
                       commission_per_contract=0.65)
    snapshots = SnapshotBuilder(market, 0.04, {"SPY": (0.16, 0.013), "QQQ": (0.20, 0.006)},
                                0.85)
    risk = RiskEngine(ledger, {"paper": WIDE}, {"paper": PortfolioLimits()}, snapshots)
    rules = AccountRules("paper", ("SPY", "QQQ"), 5000.0, ExitRules(0.9, 50.0, 7), rate=0.04)
    engine = AccountEngine(rules, ledger, broker, market, risk.check, MORNING)

    def hedger(**kw):
        return HedgeEngine(ledger, risk, market, HedgeRules(**kw), {"paper": None}, VOLS)

    yield market, ledger, broker, risk, engine, hedger
    broker.close()
    ledger.close()


def _round(engine, now, hedges=(), intents=()):
    engine.prepare(now)
    return engine.enter(now, intents, hedges=hedges)


def _open_spread(market, engine):
    intent = SymbolEngine("SPY", RULES, market).tick(MORNING).intents[0]
    _round(engine, MORNING, intents=[intent])
    return intent


def _shares(symbol, n, at=MORNING):
    return HedgeOrder("paper", "delta", symbol, at, "test hedge", shares=n)


def test_share_hedge_is_held_in_the_hedge_book_and_blocks_nothing(desk):
    _market, ledger, _broker, _, engine, _ = desk
    tick = _round(engine, MORNING, [_shares("SPY", -100)])
    assert len(tick.submitted) == 1
    assert [(r["symbol"], r["quantity"]) for r in ledger.hedge_shares("paper")] == [("SPY", -100)]
    assert ledger.share_positions("paper") == []
    assert "SPY" in engine.entry_symbols()  # hedges do not block entries
    _round(engine, MORNING + STEP)  # assignment leftovers are closed; hedges are not
    assert ledger.hedge_shares("paper")[0]["quantity"] == -100
    engine.reconcile_positions(MORNING + STEP)
    assert engine.fail_closed is None
    (decision,) = ledger.decisions("paper")
    assert decision["kind"] == "hedge_delta"
    assert decision["open_order_id"] == tick.submitted[0]


def test_share_hedge_reduces_without_flipping_in_one_order(desk):
    _, ledger, _, _, engine, _ = desk
    _round(engine, MORNING, [_shares("SPY", -100)])
    _round(engine, MORNING + STEP, [_shares("SPY", 300, MORNING + STEP)])
    assert ledger.hedge_shares("paper") == []
    (row,) = ledger.hedge_shares("paper", open_only=False)
    assert row["realized_pnl"] != 0 or row["quantity"] == 0
    assert ledger.pnl_attribution("paper")["hedge"] == pytest.approx(row["realized_pnl"])


def test_hedge_engine_hedges_out_of_band_in_lots_then_waits_the_interval(desk):
    market, ledger, _, _, engine, hedger = desk
    _open_spread(market, engine)
    hedging = hedger(band=40.0, lot=100, min_interval=timedelta(minutes=30))
    at = MORNING + STEP
    orders = hedging.decide(at)["paper"]
    report = hedging.report("paper")
    delta = report["beta_weighted_delta"]
    assert delta > 50, report
    (order,) = orders
    assert order.shares == -100 * round(delta / 100)
    assert abs(delta + order.shares) <= 40.0  # back inside the band
    assert order.kind == "delta"
    _round(engine, at, orders)
    assert ledger.hedge_shares("paper")[0]["quantity"] == order.shares
    later = at + STEP
    after = hedging.decide(later)["paper"]
    assert after == () or all(o.kind != "delta" for o in after)
    text = hedging.report("paper")["delta_hedge"]
    assert text is None or "less than" in text  # inside the band, or held back
    assert hedging.report("paper")["gamma"]["SPY"] < 0  # a short put spread is short gamma
    assert hedging.report("paper")["rebalance"]["cost_per_day"] >= 0


def test_hedge_engine_buys_tail_puts_from_premium_and_rolls_them(desk):
    market, ledger, _, _, engine, hedger = desk
    _open_spread(market, engine)
    hedging = hedger(band=10_000.0, tail_fraction=1.0, put_delta=0.10, tail_dte=60,
                     tail_roll_dte=21, max_contracts=5)
    at = MORNING + STEP
    orders = hedging.decide(at)["paper"]
    (tail,) = orders
    assert tail.kind == "tail"
    assert tail.legs[0].contract.is_call is False
    budget = hedging.report("paper")["tail"]["budget"]
    assert tail.quantity * -tail.limit_price * 100 <= budget + 1e-6
    _round(engine, at, orders)
    (put,) = [p for p in ledger.positions("paper") if p["strategy"] == "hedge_tail"]
    assert put["quantity"] == tail.quantity
    # The next check has spent the budget: nothing more to buy, nothing to roll.
    assert hedging.decide(at + STEP)["paper"] == ()
    assert hedging.report("paper")["tail"]["spent"] > 0
    # Weeks later the put is near expiry: it is sold, as a roll.
    late = datetime(2025, 2, 18, 16, 0, tzinfo=UTC)
    _round(engine, late)  # the spread expired on the 7th: settled first
    (roll,) = [o for o in hedging.decide(late)["paper"] if o.kind == "tail_roll"]
    assert roll.close_position_id == put["position_id"]
    engine.enter(late, hedges=[roll])
    assert ledger.position(put["position_id"])["status"] == "closed"


def test_tail_put_is_not_managed_by_the_exit_rules(desk):
    market, ledger, _, _, engine, hedger = desk
    _open_spread(market, engine)
    hedging = hedger(band=10_000.0, tail_fraction=1.0)
    _round(engine, MORNING + STEP, hedging.decide(MORNING + STEP)["paper"])
    (put,) = [p for p in ledger.positions("paper") if p["strategy"] == "hedge_tail"]
    for i in range(2, 6):
        _round(engine, MORNING + i * STEP)
    assert ledger.position(put["position_id"])["status"] == "open"
    assert not [d for d in ledger.decisions("paper") if d["kind"] in ("stop", "take_profit")]


def test_halted_lets_through_only_hedges_that_measurably_reduce_risk(desk):
    market, ledger, _, risk, engine, _ = desk
    _open_spread(market, engine)  # a long-delta book
    risk.halt("paper", by="test", now=MORNING + STEP)
    at = MORNING + 2 * STEP
    intent = SymbolEngine("QQQ", RULES, market).tick(at).intents[0]
    tick = _round(engine, at, [_shares("SPY", -100, at)], [intent])
    assert ledger.hedge_shares("paper")[0]["quantity"] == -100  # reduced the delta: passed
    assert len(tick.rejected) == 1  # the new entry did not
    verdicts = ledger.verdicts("paper")
    assert verdicts[-1]["check_name"] == "manual_halt"
    at2 = at + STEP
    tick2 = _round(engine, at2, [_shares("SPY", 400, at2)])  # would leave delta far longer
    assert len(tick2.rejected) == 1
    assert ledger.hedge_shares("paper")[0]["quantity"] == -100
    refused = [d for d in ledger.decisions("paper") if d["status"] == "abandoned"]
    assert refused
    assert "halted" in refused[-1]["detail"]


class _CountingMarket:
    """The market, counting chain requests by DTE window."""

    def __init__(self, market):
        self.market, self.windows = market, []

    def chain(self, symbol, now, min_dte=None, max_dte=None):
        self.windows.append((min_dte, max_dte))
        return self.market.chain(symbol, now, min_dte=min_dte, max_dte=max_dte)

    def __getattr__(self, name):
        return getattr(self.market, name)


def test_a_budget_short_of_one_put_is_not_repriced_the_same_day(desk):
    market, _, _, _, engine, hedger = desk
    _open_spread(market, engine)
    hedging = hedger(band=10_000.0, tail_fraction=0.01, tail_dte=60, tail_roll_dte=21)
    counting = hedging.market = _CountingMarket(market)
    at = MORNING + STEP
    assert hedging.decide(at)["paper"] == ()
    first = list(counting.windows)
    assert "below one" in hedging.report("paper")["tail"]["note"]
    assert any(lo > 21 for lo, _ in first)  # the put window was priced once
    counting.windows.clear()
    assert hedging.decide(at + STEP)["paper"] == ()
    assert all(lo <= 21 for lo, _ in counting.windows)  # only the IV window this time
    assert "when priced today" in hedging.report("paper")["tail"]["note"]
