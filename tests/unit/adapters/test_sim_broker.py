"""Specifications of the paper broker: validation, matching, money, expiry, persistence.

Money is in dollars; prices are net per share, > 0 a credit. Commission is $0.65 per contract.
"""

import math
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from thetadesk.adapters.sim_broker import SimBroker, defined_risk_margin
from thetadesk.adapters.sim_market import SimMarket, SimSymbol
from thetadesk.chain import NEW_YORK, expiry_instant
from thetadesk.errors import DataError, OrderRejected
from thetadesk.models import Contract, Fill, Leg, OrderRequest, OrderStatus, Quote, Right
from thetadesk.strategies.spreads import bear_call_credit, bull_put_credit, iron_condor

ACCOUNT = "paper-1"
COMMISSION = 0.65
START = date(2025, 1, 2)
NOW = datetime(2025, 3, 3, 10, 30, tzinfo=NEW_YORK)  # a Monday morning
SYMBOLS = {
    "SPY": SimSymbol(spot=450.0, vol=0.18, dividend_yield=0.013, strike_step=5.0),
    "QQQ": SimSymbol(spot=380.0, vol=0.22, dividend_yield=0.006, strike_step=5.0),
}


def ny(*args):
    return datetime(*args, tzinfo=NEW_YORK)


@pytest.fixture(scope="module")
def market():
    return SimMarket(7, SYMBOLS, 0.04, START)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "broker.sqlite"


def make_broker(market, db_path, cash=100_000.0, **kwargs):
    return SimBroker(ACCOUNT, market, db_path, starting_cash=cash,
                     commission_per_contract=COMMISSION, **kwargs)


def order(coid, legs, quantity=1, limit=1.0, opening=True, account=ACCOUNT):
    return OrderRequest(coid, account, tuple(legs), quantity, limit, opening)


def reversed_legs(legs):
    return tuple(Leg(leg.contract, -leg.ratio) for leg in legs)


def natural(market, legs, now):
    return sum(
        -leg.ratio * (q.ask if leg.is_long else q.bid)
        for leg in legs
        for q in [market.quote(leg.contract, now)]
    )


def marketable(price):
    """A limit at or just inside the natural price: crossing it is enough to fill."""
    return math.floor(round(price * 100, 6)) / 100


def bull_put(market, now=NOW, width=10.0, dte=35):
    chain = market.chain("SPY", now)
    short = chain.strike_by_delta(chain.nearest_expiry(dte), -0.30, Right.PUT).contract
    long = Contract("SPY", short.expiry, Right.PUT, short.strike - width)
    return bull_put_credit(short, long)


class FakeMarket:
    """Quotes set by hand, for arithmetic that is easy to check."""

    def __init__(self, quotes, spots=None, is_open=True):
        self.quotes = dict(quotes)
        self.spots = dict(spots or {"SPY": 450.0})
        self.open = is_open

    def quote(self, contract, now):
        if contract not in self.quotes:
            raise DataError(f"no quote for {contract}")
        return self.quotes[contract]

    def spot(self, symbol, now):
        if symbol not in self.spots:
            raise DataError(f"unknown symbol {symbol!r}")
        return self.spots[symbol]

    def is_open(self, now):
        return self.open


EXPIRY = date(2025, 4, 4)
P450 = Contract("SPY", EXPIRY, Right.PUT, 450.0)
P440 = Contract("SPY", EXPIRY, Right.PUT, 440.0)
HAND_QUOTES = {P450: Quote(3.00, 3.10), P440: Quote(1.50, 1.60)}  # natural credit 1.40
HAND_SPREAD = bull_put_credit(P450, P440)


# -- fills on a simulated market ------------------------------------------------------------


def test_sim_broker_marketable_bull_put_fills_at_the_limit_with_commission(market, db_path):
    broker = make_broker(market, db_path)
    spread = bull_put(market)
    limit = marketable(natural(market, spread.legs, NOW))
    assert limit > 0

    result = broker.submit(order("bp-1", spread.legs, quantity=2, limit=limit), NOW)

    assert result.status is OrderStatus.FILLED
    assert (result.filled_quantity, result.avg_fill_price) == (2, limit)
    commission = 2 * 2 * COMMISSION
    assert broker.fills("bp-1") == [Fill("bp-1-1", "bp-1", 2, limit, commission, NOW)]
    assert broker.account().cash == pytest.approx(100_000.0 + limit * 100 * 2 - commission)
    held = {p.contract: p.quantity for p in broker.positions()}
    assert held == {spread.legs[0].contract: -2, spread.legs[1].contract: 2}
    assert broker.poll(NOW) == broker.fills("bp-1")
    assert broker.poll(NOW + timedelta(minutes=1)) == []


def test_sim_broker_unmarketable_limit_rests_never_fills_then_cancels(market, db_path):
    broker = make_broker(market, db_path)
    spread = bull_put(market)
    limit = round(natural(market, spread.legs, NOW) + 5.0, 2)

    accepted = broker.submit(order("rest-1", spread.legs, limit=limit), NOW)
    polled = [broker.poll(NOW + timedelta(hours=h)) for h in range(1, 6)]
    canceled = broker.cancel("rest-1", NOW + timedelta(hours=6))
    again = broker.cancel("rest-1", NOW + timedelta(hours=7))

    assert accepted.status is OrderStatus.NEW
    assert polled == [[]] * 5
    assert canceled.status is OrderStatus.CANCELED
    assert again == canceled
    assert broker.open_orders() == []
    assert broker.positions() == []
    assert broker.account().cash == 100_000.0


def test_sim_broker_unmarketable_limit_fills_at_limit_once_the_market_reaches_it(
    market, db_path
):
    broker = make_broker(market, db_path)
    hours = [NOW + timedelta(hours=h) for h in range(1, 24 * 7)]
    hours = [t for t in hours if market.is_open(t)]
    # Whichever way the path goes, one of the two credit spreads gains credit.
    chain = market.chain("SPY", NOW)
    short_call = chain.strike_by_delta(chain.nearest_expiry(35), 0.30, Right.CALL).contract
    bear_call = bear_call_credit(
        short_call, Contract("SPY", short_call.expiry, Right.CALL, short_call.strike + 10.0)
    )
    spread = max(
        (bull_put(market), bear_call),
        key=lambda s: max(natural(market, s.legs, t) for t in hours)
        - natural(market, s.legs, NOW),
    )
    naturals = [natural(market, spread.legs, t) for t in hours]
    start = natural(market, spread.legs, NOW)
    assert max(naturals) > start + 0.02, "the path should move one spread's price"
    limit = round(start + 0.02, 2)
    first = next(i for i, n in enumerate(naturals) if n >= limit)

    accepted = broker.submit(order("move-2", spread.legs, limit=limit), NOW)
    polled = [broker.poll(t) for t in hours[: first + 1]]

    assert accepted.status is OrderStatus.NEW
    assert polled[:-1] == [[]] * first
    assert polled[-1] == [Fill("move-2-1", "move-2", 1, limit, 2 * COMMISSION, hours[first])]


def test_sim_broker_order_outside_regular_hours_rests_until_the_open(market, db_path):
    broker = make_broker(market, db_path)
    saturday = ny(2025, 3, 1, 12, 0)
    spread = bull_put(market, now=saturday)
    limit = marketable(natural(market, spread.legs, saturday)) - 1.0  # easily marketable

    accepted = broker.submit(order("wknd-1", spread.legs, limit=limit), saturday)
    sunday = broker.poll(saturday + timedelta(days=1))
    monday = broker.poll(ny(2025, 3, 3, 9, 30))

    assert accepted.status is OrderStatus.NEW
    assert sunday == []
    assert [f.exec_id for f in monday] == ["wknd-1-1"]
    assert monday[0].price == limit


def test_sim_broker_closing_order_reduces_then_flattens_positions(market, db_path):
    broker = make_broker(market, db_path)
    spread = bull_put(market)
    broker.submit(
        order("open-1", spread.legs, quantity=2,
              limit=marketable(natural(market, spread.legs, NOW))), NOW
    )
    later = NOW + timedelta(days=1)
    close_legs = reversed_legs(spread.legs)
    debit = marketable(natural(market, close_legs, later))
    assert debit < 0
    cash_before = broker.account().cash

    first = broker.submit(order("close-1", close_legs, limit=debit, opening=False), later)
    held = {p.contract: p.quantity for p in broker.positions()}
    with pytest.raises(OrderRejected, match="does not match a held position"):
        broker.submit(order("close-2", close_legs, quantity=2, limit=debit, opening=False), later)
    broker.submit(order("close-3", close_legs, limit=debit, opening=False), later)

    assert first.status is OrderStatus.FILLED
    assert held == {spread.legs[0].contract: -1, spread.legs[1].contract: 1}
    assert broker.positions() == []
    assert broker.account().cash == pytest.approx(cash_before + 2 * (debit * 100 - 2 * COMMISSION))


# -- rejections -------------------------------------------------------------------------------


def test_sim_broker_duplicate_client_order_id_rejected_and_counted(market, db_path):
    broker = make_broker(market, db_path)
    spread = bull_put(market)
    limit = marketable(natural(market, spread.legs, NOW))
    first = broker.submit(order("dup-1", spread.legs, limit=limit), NOW)

    for _ in range(2):
        with pytest.raises(OrderRejected, match="client_order_id must be unique"):
            broker.submit(order("dup-1", spread.legs, limit=limit), NOW)

    assert broker.submission_count("dup-1") == 3
    assert broker.submission_count("never-sent") == 0
    assert broker.get_order_by_client_id("dup-1") == first
    assert len(broker.fills("dup-1")) == 1
    assert {p.quantity for p in broker.positions()} == {-1, 1}


def test_sim_broker_insufficient_buying_power_rejected_and_recorded(market, db_path):
    broker = make_broker(market, db_path, cash=1_000.0)
    spread = bull_put(market, width=10.0)  # $1,000 margin per spread, plus commission

    with pytest.raises(OrderRejected, match="insufficient buying power"):
        broker.submit(order("bp-big", spread.legs, limit=0.01), NOW)

    recorded = broker.get_order_by_client_id("bp-big")
    assert recorded.status is OrderStatus.REJECTED
    assert "insufficient buying power" in recorded.reason
    assert broker.positions() == []
    assert broker.account().cash == 1_000.0
    assert broker.submission_count("bp-big") == 1


def _different_underlyings(market):
    spy = bull_put(market).legs[0]
    qqq_chain = market.chain("QQQ", NOW)
    qqq = qqq_chain.strike_by_delta(qqq_chain.nearest_expiry(35), -0.2, Right.PUT).contract
    return (spy, Leg(qqq, 1)), True, "different underlyings"


def _expired_leg(market):
    expired = Contract("SPY", date(2025, 2, 28), Right.PUT, 440.0)
    return (Leg(expired, 1),), True, "expired"


def _closing_without_position(market):
    return reversed_legs(bull_put(market).legs), False, "does not match a held position"


def _naked_short_call(market):
    chain = market.chain("SPY", NOW)
    call = chain.strike_by_delta(chain.nearest_expiry(35), 0.2, Right.CALL).contract
    return (Leg(call, -1),), True, "undefined risk"


@pytest.mark.parametrize(
    "case", [_different_underlyings, _expired_leg, _closing_without_position, _naked_short_call]
)
def test_sim_broker_invalid_order_rejected_with_reason_and_recorded(market, db_path, case):
    broker = make_broker(market, db_path)
    legs, opening, reason = case(market)

    with pytest.raises(OrderRejected, match=reason):
        broker.submit(order("bad-1", legs, limit=0.5, opening=opening), NOW)

    recorded = broker.get_order_by_client_id("bad-1")
    assert recorded.status is OrderStatus.REJECTED
    assert reason in recorded.reason
    assert broker.open_orders() == []


def test_sim_broker_order_for_another_account_rejected(market, db_path):
    broker = make_broker(market, db_path)

    with pytest.raises(OrderRejected, match="account 'other'"):
        broker.submit(order("acct-1", bull_put(market).legs, account="other"), NOW)


def test_sim_broker_cancel_unknown_order_raises_order_rejected(market, db_path):
    with pytest.raises(OrderRejected, match="no such order"):
        make_broker(market, db_path).cancel("nope", NOW)


# -- hand-computed money ---------------------------------------------------------------------


def test_sim_broker_resting_order_fills_at_limit_when_the_market_moves(db_path):
    fake = FakeMarket(HAND_QUOTES)
    broker = make_broker(fake, db_path, cash=10_000.0)

    accepted = broker.submit(order("move-1", HAND_SPREAD.legs, limit=1.50), NOW)
    before = broker.poll(NOW + timedelta(minutes=1))
    fake.quotes[P450] = Quote(3.20, 3.30)  # natural credit 1.60 >= 1.50
    after = broker.poll(NOW + timedelta(minutes=2))

    assert accepted.status is OrderStatus.NEW
    assert before == []
    assert after == [Fill("move-1-1", "move-1", 1, 1.50, 1.30, NOW + timedelta(minutes=2))]
    assert broker.get_order_by_client_id("move-1").status is OrderStatus.FILLED
    assert broker.account().cash == pytest.approx(10_000.0 + 150.0 - 1.30)


def test_sim_broker_leg_without_quote_does_not_fill(db_path):
    fake = FakeMarket({P450: HAND_QUOTES[P450]})  # the long leg has no quote
    broker = make_broker(fake, db_path)

    accepted = broker.submit(order("noq-1", HAND_SPREAD.legs, limit=0.10), NOW)

    assert accepted.status is OrderStatus.NEW
    assert broker.poll(NOW + timedelta(minutes=1)) == []


def test_sim_broker_equity_and_buying_power_hand_computed(db_path):
    broker = make_broker(FakeMarket(HAND_QUOTES), db_path, cash=10_000.0)

    broker.submit(order("hand-1", HAND_SPREAD.legs, quantity=2, limit=1.40), NOW)
    filled = broker.account()
    broker.submit(order("hand-2", HAND_SPREAD.legs, quantity=1, limit=5.00), NOW)  # rests
    reserved = broker.account()

    # cash: 10,000 + 1.40 x 100 x 2 - 0.65 x 4 = 10,277.40
    # marks: -2 x 100 x 3.05 + 2 x 100 x 1.55 = -300; equity 9,977.40
    # margin: 2 spreads x $10 wide x 100 = 2,000; buying power 7,977.40
    assert filled.cash == pytest.approx(10_277.40)
    assert filled.equity == pytest.approx(9_977.40)
    assert filled.buying_power == pytest.approx(7_977.40)
    # the resting opening order reserves 1,000 of margin less its 500 credit, plus 1.30 of
    # commission
    assert reserved.buying_power == pytest.approx(7_977.40 - 501.30)
    assert reserved.cash == filled.cash


def test_sim_broker_buying_power_never_negative(db_path):
    fake = FakeMarket(HAND_QUOTES)
    broker = make_broker(fake, db_path, cash=1_100.0)
    broker.submit(order("edge-1", HAND_SPREAD.legs, limit=1.40), NOW)

    fake.quotes[P450] = Quote(9.90, 10.10)  # the short put is now deep in the money

    assert broker.account().equity < 1_000.0
    assert broker.account().buying_power == 0.0


def test_defined_risk_margin_of_common_structures():
    p430, c470, c480 = (Contract("SPY", EXPIRY, r, k) for r, k in
                        [(Right.PUT, 430.0), (Right.CALL, 470.0), (Right.CALL, 480.0)])
    condor = iron_condor(P440, P450, c470, c480)  # put side 10 wide, call side 10 wide

    assert defined_risk_margin((leg.contract, leg.ratio) for leg in condor.legs) == 1_000.0
    assert defined_risk_margin([(P450, -3), (P440, 3)]) == 3_000.0
    assert defined_risk_margin([(P450, -1), (p430, 1)]) == 2_000.0
    assert defined_risk_margin([(P450, 1), (c470, 2)]) == 0.0
    assert defined_risk_margin([(P450, -1)]) == 45_000.0
    assert defined_risk_margin([(c470, -1), (c480, 1), (P450, 1)]) == 1_000.0
    assert defined_risk_margin([(c470, -1)]) == math.inf


# -- expiry -----------------------------------------------------------------------------------


def test_sim_broker_cash_settlement_at_intrinsic_value(market, db_path):
    broker = make_broker(market, db_path, settlement="cash")
    expiry = market.chain("SPY", NOW).nearest_expiry(4)
    close = expiry_instant(expiry)
    settle_spot = market.spot("SPY", close)
    short_strike = math.ceil(settle_spot / 5) * 5 + 5.0  # in the money at expiry
    spread = bull_put_credit(
        Contract("SPY", expiry, Right.PUT, short_strike),
        Contract("SPY", expiry, Right.PUT, short_strike - 10.0),  # out of the money at expiry
    )
    broker.submit(order("exp-1", spread.legs, quantity=2,
                        limit=marketable(natural(market, spread.legs, NOW))), NOW)
    broker.submit(order("exp-2", spread.legs, limit=10.5), NOW)  # never: wider than the spread
    cash_before = broker.account().cash

    just_before = broker.poll(close - timedelta(seconds=1))
    at_close = broker.poll(close)

    assert [f.exec_id for f in just_before] == ["exp-1-1"]
    assert at_close == []
    assert broker.positions() == []
    intrinsic = short_strike - settle_spot
    settled = {s.contract.strike: s for s in broker.settlements()}
    assert settled[short_strike].intrinsic == pytest.approx(intrinsic)
    assert settled[short_strike].amount == pytest.approx(-2 * 100 * intrinsic)
    assert settled[short_strike - 10.0].amount == 0.0
    assert (settled[short_strike].kind, settled[short_strike - 10.0].kind) == (
        "cash_settled", "expired")
    assert broker.share_positions() == []
    assert all(s.underlying_price == settle_spot and s.time == close for s in settled.values())
    assert broker.account().cash == pytest.approx(cash_before - 2 * 100 * intrinsic)
    canceled = broker.get_order_by_client_id("exp-2")
    assert canceled.status is OrderStatus.CANCELED
    assert "expired" in canceled.reason
    assert broker.poll(close + timedelta(days=1)) == []
    assert len(broker.settlements()) == 2


# -- persistence ------------------------------------------------------------------------------


def test_sim_broker_new_instance_on_same_file_continues_exactly(market, db_path):
    first = make_broker(market, db_path)
    spread = bull_put(market)
    limit = marketable(natural(market, spread.legs, NOW))
    first.submit(order("keep-1", spread.legs, quantity=3, limit=limit), NOW)
    first.submit(order("keep-2", spread.legs, limit=limit + 5.0), NOW)  # rests
    assert [f.exec_id for f in first.poll(NOW)] == ["keep-1-1"]
    first.submit(order("keep-3", spread.legs, limit=limit - 0.5), NOW + timedelta(minutes=1))
    state = (
        [first.get_order_by_client_id(c) for c in ("keep-1", "keep-2", "keep-3")],
        first.open_orders(), first.positions(), first.account(), first.fills("keep-3"),
    )
    first.close()

    second = make_broker(market, db_path, cash=5.0)  # an existing file keeps its own cash

    assert (
        [second.get_order_by_client_id(c) for c in ("keep-1", "keep-2", "keep-3")],
        second.open_orders(), second.positions(), second.account(), second.fills("keep-3"),
    ) == state
    assert [f.exec_id for f in second.poll(NOW + timedelta(minutes=1))] == ["keep-3-1"]
    assert second.poll(NOW + timedelta(minutes=2)) == []
    with pytest.raises(OrderRejected, match="must be unique"):
        second.submit(order("keep-1", spread.legs, quantity=3, limit=limit), NOW)
    assert second.submission_count("keep-1") == 2


def test_sim_broker_file_of_another_account_raises_data_error(market, db_path):
    make_broker(market, db_path).close()

    with pytest.raises(DataError, match="paper-1"):
        SimBroker("paper-2", market, db_path, 1_000.0, COMMISSION)


_KILLED_CHILD = """
import os, signal, sys
from datetime import date, datetime
from pathlib import Path
from thetadesk.adapters.sim_broker import SimBroker
from thetadesk.adapters.sim_market import SimMarket, SimSymbol
from thetadesk.chain import NEW_YORK
from thetadesk.models import Contract, Leg, OrderRequest, Right

market = SimMarket(7, {"SPY": SimSymbol(450.0, 0.18, 0.013, 5.0)}, 0.04, date(2025, 1, 2))
broker = SimBroker("paper-1", market, Path(sys.argv[1]), 100_000.0, 0.65)
now = datetime(2025, 3, 3, 10, 30, tzinfo=NEW_YORK)
legs = (Leg(Contract("SPY", date(2025, 4, 4), Right.PUT, 400.0), -1),
        Leg(Contract("SPY", date(2025, 4, 4), Right.PUT, 390.0), 1))
broker.submit(OrderRequest("kill-1", "paper-1", legs, 1, 0.01), now)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sim_broker_state_survives_sigkill_right_after_submit(market, db_path):
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, str(db_path)], env=env, cwd=root,
        capture_output=True, timeout=60, check=False,
    )
    assert done.returncode == -9, done.stderr.decode()

    broker = make_broker(market, db_path)

    assert broker.get_order_by_client_id("kill-1").status is OrderStatus.FILLED
    assert [f.exec_id for f in broker.poll(NOW)] == ["kill-1-1"]
    assert {p.contract.strike: p.quantity for p in broker.positions()} == {400.0: -1, 390.0: 1}
    assert broker.account().cash == pytest.approx(100_000.0 + 1.0 - 2 * COMMISSION)
    assert broker.submission_count("kill-1") == 1


def test_sim_broker_naive_time_raises_data_error(market, db_path):
    with pytest.raises(DataError, match="timezone-aware"):
        make_broker(market, db_path).poll(datetime(2025, 3, 3, 10, 30))  # noqa: DTZ001


def test_sim_broker_times_are_reported_in_utc(market, db_path):
    broker = make_broker(market, db_path)
    spread = bull_put(market)
    result = broker.submit(order("utc-1", spread.legs, limit=9.0), NOW)

    assert result.submitted_at == NOW
    assert result.submitted_at.tzinfo == UTC
