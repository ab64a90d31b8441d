"""Specifications of the paper broker's order lifecycle (Alpaca's state names), fill model, fees
and buying power, on hand-set quotes.

The hand spread is a 10-wide bull put: sell P450 (bid 3.00 / ask 3.10), buy P440 (1.50 / 1.60).
Natural credit 1.40, mid 1.50. Prices are net per share, > 0 a credit; money is in dollars.
"""

import sqlite3
from datetime import date, timedelta

import pytest

from tests.unit.adapters.test_sim_broker import FakeMarket, ny, order, reversed_legs
from thetadesk.adapters.sim_broker import _SCHEMA, Fees, FillModel, SimBroker
from thetadesk.errors import DataError, OrderRejected
from thetadesk.models import Contract, Fill, Leg, OrderRequest, OrderStatus, Quote, Right
from thetadesk.strategies.spreads import bull_put_credit

ACCOUNT = "paper-1"
EXPIRY = date(2025, 8, 15)  # after every date used here
P450 = Contract("SPY", EXPIRY, Right.PUT, 450.0)
P440 = Contract("SPY", EXPIRY, Right.PUT, 440.0)
LEGS = bull_put_credit(P450, P440).legs
MONDAY = ny(2025, 3, 3, 10, 30)
CLOSE = ny(2025, 3, 3, 16, 0)
EARLY_CLOSE_DAY = ny(2025, 7, 3, 10, 0)  # the eve of Independence Day closes at 13:00


def quotes(short_bid=3.00, short_bid_size=100, long_ask_size=100):
    return {
        P450: Quote(short_bid, short_bid + 0.10, short_bid_size, 100),
        P440: Quote(1.50, 1.60, 100, long_ask_size),
    }


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "broker.sqlite"


def broker_on(market, db_path, cash=100_000.0, commission=0.65, **kwargs):
    return SimBroker(ACCOUNT, market, db_path, cash, commission, **kwargs)


def day(coid, quantity=1, limit=1.60, opening=True, legs=LEGS):
    return OrderRequest(coid, ACCOUNT, tuple(legs), quantity, limit, opening,
                        time_in_force="day")


def market_order(coid, quantity=1, legs=LEGS, opening=True):
    return OrderRequest(coid, ACCOUNT, tuple(legs), quantity, 0.0, opening, order_type="market")


# -- state transitions ---------------------------------------------------------------------


def test_lifecycle_new_to_filled_when_the_market_reaches_the_limit(db_path):
    fake = FakeMarket(quotes())
    broker = broker_on(fake, db_path)

    accepted = broker.submit(order("f-1", LEGS, limit=1.50), MONDAY)
    fake.quotes = quotes(short_bid=3.10)  # natural 1.50
    fills = broker.poll(MONDAY + timedelta(minutes=1))

    assert accepted.status is OrderStatus.NEW
    assert [f.exec_id for f in fills] == ["f-1-1"]
    final = broker.get_order_by_client_id("f-1")
    assert (final.status, final.filled_quantity, final.avg_fill_price) == (
        OrderStatus.FILLED, 1, 1.50)


def test_lifecycle_new_to_partially_filled_to_filled_limited_by_displayed_size(db_path):
    # Smallest displayed size: the short leg's bid size 4; half of it, 2 units, per poll.
    fake = FakeMarket(quotes(short_bid_size=4, long_ask_size=10))
    broker = broker_on(fake, db_path, fill_model=FillModel(max_display_share=0.5))

    first = broker.submit(order("pf-1", LEGS, quantity=3, limit=1.40), MONDAY)
    after_first = broker.account()
    later = MONDAY + timedelta(minutes=1)
    second = broker.poll(later)

    assert (first.status, first.filled_quantity) == (OrderStatus.PARTIALLY_FILLED, 2)
    assert first.status.is_open
    assert broker.fills("pf-1") == [
        Fill("pf-1-1", "pf-1", 2, 1.40, 2 * 2 * 0.65, MONDAY),
        Fill("pf-1-2", "pf-1", 1, 1.40, 2 * 0.65, later),
    ]
    assert second == broker.fills("pf-1")  # the first poll returns both executions
    done = broker.get_order_by_client_id("pf-1")
    assert (done.status, done.filled_quantity, done.avg_fill_price) == (
        OrderStatus.FILLED, 3, 1.40)
    assert {p.contract: p.quantity for p in broker.positions()} == {P450: -3, P440: 3}
    # while 1 unit was open it still reserved a third of (1,000 - 140 + 1.30) x 3
    assert after_first.cash == pytest.approx(100_000.0 + 280.0 - 2.60)
    assert broker.account().cash == pytest.approx(100_000.0 + 420.0 - 3.90)


def test_lifecycle_displayed_size_too_small_means_no_fill(db_path):
    fake = FakeMarket(quotes(short_bid_size=1))
    broker = broker_on(fake, db_path, fill_model=FillModel(max_display_share=0.5))

    accepted = broker.submit(order("small-1", LEGS, quantity=1, limit=1.40), MONDAY)

    assert accepted.status is OrderStatus.NEW
    assert broker.poll(MONDAY + timedelta(minutes=1)) == []


def test_lifecycle_new_to_canceled_releases_the_reservation(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path)
    before = broker.account().buying_power

    broker.submit(order("c-1", LEGS, limit=1.60), MONDAY)
    reserved = broker.account().buying_power
    canceled = broker.cancel("c-1", MONDAY + timedelta(minutes=5))

    assert reserved == pytest.approx(before - (1_000.0 - 160.0 + 1.30))
    assert canceled.status is OrderStatus.CANCELED
    assert broker.account().buying_power == before


def test_lifecycle_day_order_expires_at_the_session_close(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path)

    accepted = broker.submit(day("d-1"), MONDAY)
    broker.submit(order("gtc-1", LEGS, limit=1.60), MONDAY)
    just_before = broker.poll(CLOSE - timedelta(seconds=1))
    still_open = broker.get_order_by_client_id("d-1").status
    broker.poll(CLOSE)

    assert accepted.expires_at == CLOSE
    assert accepted.time_in_force == "day"
    assert just_before == []
    assert still_open is OrderStatus.NEW
    expired = broker.get_order_by_client_id("d-1")
    assert expired.status is OrderStatus.EXPIRED
    assert not expired.status.is_open
    assert "expired at the session close" in expired.reason
    assert expired.updated_at == CLOSE
    assert broker.get_order_by_client_id("gtc-1").status is OrderStatus.NEW  # good until canceled
    assert [o.client_order_id for o in broker.open_orders()] == ["gtc-1"]


def test_lifecycle_day_order_expires_at_an_early_close(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path)

    accepted = broker.submit(day("early-1"), EARLY_CLOSE_DAY)
    broker.poll(ny(2025, 7, 3, 12, 59))
    at_one = broker.get_order_by_client_id("early-1").status
    broker.poll(ny(2025, 7, 3, 13, 0))

    assert accepted.expires_at == ny(2025, 7, 3, 13, 0)
    assert at_one is OrderStatus.NEW
    assert broker.get_order_by_client_id("early-1").status is OrderStatus.EXPIRED


def test_lifecycle_day_order_after_the_close_belongs_to_the_next_session(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path)

    friday_evening = broker.submit(day("late-1"), ny(2025, 2, 28, 17, 0))
    cancel_expired = broker.cancel("late-1", ny(2025, 3, 3, 16, 0))  # expiry comes first

    assert friday_evening.expires_at == CLOSE  # Monday's close
    assert cancel_expired.status is OrderStatus.EXPIRED


def test_lifecycle_new_to_replaced_and_the_replacement_fills(db_path):
    fake = FakeMarket(quotes())
    broker = broker_on(fake, db_path)
    before = broker.account().buying_power
    broker.submit(order("r-1", LEGS, limit=1.60), MONDAY)

    new = broker.replace("r-1", "r-2", MONDAY + timedelta(minutes=1), limit_price=1.45)
    resting = broker.account().buying_power
    fake.quotes = quotes(short_bid=3.05)  # natural 1.45
    fills = broker.poll(MONDAY + timedelta(minutes=2))

    old = broker.get_order_by_client_id("r-1")
    assert (old.status, old.replaced_by, old.reason) == (
        OrderStatus.REPLACED, "r-2", "replaced by r-2")
    assert not old.status.is_open
    assert (new.status, new.limit_price, new.quantity, new.replaces) == (
        OrderStatus.NEW, 1.45, 1, "r-1")
    assert new.broker_order_id != old.broker_order_id
    assert [(f.client_order_id, f.price) for f in fills] == [("r-2", 1.45)]
    assert broker.fills("r-1") == []
    # only the replacement reserves buying power while it rests: 1,000 - 145 + 1.30
    assert resting == pytest.approx(before - 856.30)
    assert broker.get_order_by_client_id("r-2").status is OrderStatus.FILLED


def test_lifecycle_replace_of_a_partial_fill_carries_the_remainder(db_path):
    fake = FakeMarket(quotes(short_bid_size=4))
    broker = broker_on(fake, db_path, fill_model=FillModel(max_display_share=0.5))
    broker.submit(order("rp-1", LEGS, quantity=5, limit=1.40), MONDAY)  # 2 fill

    fake.quotes = quotes(short_bid=2.90, short_bid_size=4)  # natural 1.30
    new = broker.replace("rp-1", "rp-2", MONDAY + timedelta(minutes=1), limit_price=1.30)

    assert broker.get_order_by_client_id("rp-1").filled_quantity == 2
    assert (new.quantity, new.filled_quantity, new.status) == (
        3, 2, OrderStatus.PARTIALLY_FILLED)


def test_lifecycle_replace_rejections_change_nothing(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path)
    broker.submit(order("x-1", LEGS, limit=1.40), MONDAY)  # fills
    later = MONDAY + timedelta(minutes=1)

    with pytest.raises(OrderRejected, match="no such order"):
        broker.replace("nope", "x-9", later)
    with pytest.raises(OrderRejected, match="the order is filled"):
        broker.replace("x-1", "x-9", later, limit_price=1.50)
    assert broker.get_order_by_client_id("x-9") is None


def test_lifecycle_replace_with_a_used_id_or_failing_checks_keeps_the_old_order(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path, cash=2_000.0)
    broker.submit(order("y-1", LEGS, limit=1.60), MONDAY)
    broker.submit(order("y-2", LEGS, limit=1.60), MONDAY)
    later = MONDAY + timedelta(minutes=1)

    with pytest.raises(OrderRejected, match="must be unique"):
        broker.replace("y-1", "y-2", later, limit_price=1.55)
    with pytest.raises(OrderRejected, match="insufficient buying power"):
        broker.replace("y-1", "y-3", later, quantity=5)

    assert [o.client_order_id for o in broker.open_orders()] == ["y-1", "y-2"]
    assert broker.get_order_by_client_id("y-1").status is OrderStatus.NEW
    assert broker.get_order_by_client_id("y-3") is None


def test_lifecycle_rejected_order_is_final(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path)

    with pytest.raises(OrderRejected, match="does not match a held position"):
        broker.submit(order("rej-1", reversed_legs(LEGS), limit=-1.60, opening=False), MONDAY)

    rejected = broker.get_order_by_client_id("rej-1")
    assert rejected.status is OrderStatus.REJECTED
    assert not rejected.status.is_open
    with pytest.raises(OrderRejected, match="the order is rejected"):
        broker.replace("rej-1", "rej-2", MONDAY)


# -- fees --------------------------------------------------------------------------------------


def test_fees_hand_example_open_and_close(db_path):
    fake = FakeMarket(quotes())
    broker = SimBroker(ACCOUNT, fake, db_path, 10_000.0, fees=Fees())

    broker.submit(order("fee-1", LEGS, quantity=5, limit=1.40), MONDAY)
    # 10 contracts: commission 0.65 x 10 = 6.50; ORF 0.02 x 10 = 0.20;
    # TAF on the 5 sold: 0.00279 x 5 = 0.01395, rounded up to 0.02; total 6.72
    close = broker.submit(order("fee-2", reversed_legs(LEGS), quantity=5, limit=-1.60,
                                opening=False), MONDAY)

    assert broker.fills("fee-1")[0].commission == pytest.approx(6.72)
    assert close.status is OrderStatus.FILLED
    assert broker.fills("fee-2")[0].commission == pytest.approx(6.72)  # sells 5 P440
    assert broker.account().cash == pytest.approx(10_000.0 + 700.0 - 800.0 - 2 * 6.72)


def test_fees_breakdown_caps_the_taf_and_rounds_regulatory_fees_up():
    fees = Fees()
    big = fees.breakdown(LEGS, 4_000)  # 4,000 sold: 11.16 of TAF, capped at 8.30

    assert big == {"commission": pytest.approx(5_200.0), "orf": pytest.approx(160.0),
                   "taf": pytest.approx(8.30)}
    assert fees.breakdown(LEGS, 1) == {"commission": 1.30, "orf": 0.04, "taf": 0.01}
    assert fees.total(LEGS, 1) == pytest.approx(1.35)
    assert Fees(0.0, 0.0, 0.0, 0.0).total(LEGS, 3) == 0.0
    buy_only = (Leg(P440, 1),)
    assert fees.breakdown(buy_only, 2)["taf"] == 0.0


def test_fees_contradicting_commission_raises_data_error(db_path):
    with pytest.raises(DataError, match="contradicts"):
        SimBroker(ACCOUNT, FakeMarket(quotes()), db_path, 1_000.0, 0.50, fees=Fees())
    with pytest.raises(DataError, match="must be finite and >= 0"):
        Fees(orf_per_contract=-0.01)


# -- fill model ----------------------------------------------------------------------------------


def test_fill_model_market_order_fills_at_natural_less_slippage(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path, fill_model=FillModel(slippage_ticks=2))

    opened = broker.submit(market_order("m-1", quantity=2), MONDAY)
    closed = broker.submit(market_order("m-2", quantity=2, legs=reversed_legs(LEGS),
                                        opening=False), MONDAY)

    assert (opened.status, opened.avg_fill_price, opened.order_type) == (
        OrderStatus.FILLED, 1.38, "market")  # natural credit 1.40 less 2 ticks
    assert closed.avg_fill_price == -1.62  # natural debit 1.60 plus 2 ticks
    assert broker.positions() == []
    assert broker.account().cash == pytest.approx(100_000.0 + 276.0 - 324.0 - 4 * 1.30)


def test_fill_model_slippage_makes_a_marginal_limit_wait_never_fill_worse(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path, fill_model=FillModel(slippage_ticks=2))

    at_natural = broker.submit(order("s-1", LEGS, limit=1.40), MONDAY)
    inside = broker.submit(order("s-2", LEGS, limit=1.38), MONDAY)

    assert at_natural.status is OrderStatus.NEW
    assert (inside.status, inside.avg_fill_price) == (OrderStatus.FILLED, 1.38)


def test_fill_model_market_order_without_quotes_rejected(db_path):
    broker = broker_on(FakeMarket({P450: quotes()[P450]}), db_path)

    with pytest.raises(OrderRejected, match="market order needs a usable quote"):
        broker.submit(market_order("mq-1"), MONDAY)


def _minute_of_fill(db_path, seed, limit=1.45, minutes=60):
    broker = broker_on(FakeMarket(quotes()), db_path,
                       fill_model=FillModel(mid_fill_probability=True, seed=seed))
    broker.submit(order("p-1", LEGS, limit=limit), MONDAY)
    for minute in range(1, minutes):
        if broker.poll(MONDAY + timedelta(minutes=minute)):
            return minute
    return None if broker.fills("p-1") == [] else 0


def test_fill_model_probabilistic_fills_reproducible_with_a_seed(tmp_path):
    # limit 1.45 is halfway between the mid 1.50 and the natural 1.40: p = 0.5 a minute
    runs = [_minute_of_fill(tmp_path / f"run{i}.sqlite", seed=11) for i in range(2)]
    at_mid = _minute_of_fill(tmp_path / "mid.sqlite", seed=11, limit=1.50)

    assert runs[0] is not None
    assert runs[0] == runs[1]
    assert at_mid is None  # p = 0 at the mid


def test_fill_model_probability_rises_linearly_from_mid_to_natural(tmp_path):
    N = 150  # orders per limit, one draw each at the submission
    counts = {}
    for limit, p in ((1.48, 0.2), (1.42, 0.8)):
        broker = SimBroker(ACCOUNT, FakeMarket(quotes()), tmp_path / f"{limit}.sqlite",
                           10_000_000.0, 0.0,
                           fill_model=FillModel(mid_fill_probability=True, seed=5))
        for i in range(N):
            broker.submit(order(f"lin-{i}", LEGS, limit=limit), MONDAY)
        counts[p] = sum(1 for i in range(N)
                        if broker.get_order_by_client_id(f"lin-{i}").status
                        is OrderStatus.FILLED)

    assert 0.1 * N < counts[0.2] < 0.3 * N
    assert 0.7 * N < counts[0.8] < 0.9 * N


def test_fill_model_bad_values_raise_data_error():
    for kwargs in ({"mode": "natural"}, {"slippage_ticks": -1}, {"max_display_share": 0.0},
                   {"max_display_share": 1.5}, {"mid_fill_probability": 1}):
        with pytest.raises(DataError):
            FillModel(**kwargs)


# -- buying power ------------------------------------------------------------------------------


def test_buying_power_credit_spread_needs_width_less_credit(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path, cash=900.0)

    # 10 wide x 100 = 1,000 less the 140 credit, plus 1.30 commission: 861.30 <= 900
    accepted = broker.submit(order("bp-1", LEGS, limit=1.40), MONDAY)
    with pytest.raises(OrderRejected) as rejected:
        broker.submit(order("bp-2", LEGS, limit=1.60), MONDAY)

    assert accepted.status is OrderStatus.FILLED
    message = str(rejected.value)
    assert message.startswith("insufficient buying power: the order needs $841.30")
    assert "margin $1,000.00 less credit $160.00" in message
    assert "fees $1.30" in message
    assert message.endswith(f"${broker.account().buying_power:,.2f} is available")


# -- persistence -------------------------------------------------------------------------------


def test_lifecycle_new_states_survive_a_restart(db_path):
    fake = FakeMarket(quotes(short_bid_size=4))
    first = broker_on(fake, db_path, fill_model=FillModel(max_display_share=0.5))
    first.submit(day("keep-day"), MONDAY)  # rests, expires at the close
    first.submit(order("keep-old", LEGS, limit=1.60), MONDAY)
    first.replace("keep-old", "keep-new", MONDAY, limit_price=1.55)
    first.submit(order("keep-part", LEGS, quantity=5, limit=1.40), MONDAY)  # 2 of 5
    first.submit(day("keep-exp"), MONDAY)
    first.poll(CLOSE)
    ids = ("keep-day", "keep-old", "keep-new", "keep-part", "keep-exp")
    state = ([first.get_order_by_client_id(c) for c in ids], first.open_orders(),
             first.fills("keep-part"), first.account())
    first.close()

    second = broker_on(fake, db_path, fill_model=FillModel(max_display_share=0.5))

    assert ([second.get_order_by_client_id(c) for c in ids], second.open_orders(),
            second.fills("keep-part"), second.account()) == state
    statuses = [o.status for o in state[0]]
    assert statuses == [OrderStatus.EXPIRED, OrderStatus.REPLACED, OrderStatus.NEW,
                        OrderStatus.PARTIALLY_FILLED, OrderStatus.EXPIRED]
    assert state[0][2].replaces == "keep-old"
    assert state[0][3].filled_quantity == 4  # 2 at the submission, 2 more at the last poll
    second.poll(ny(2025, 3, 4, 9, 31))  # the last unit
    assert second.get_order_by_client_id("keep-part").status is OrderStatus.FILLED


def test_lifecycle_version_1_file_is_migrated(db_path):
    db = sqlite3.connect(db_path)
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO book (id, account, starting_cash, cash) VALUES (1, ?, 5000, 5000)",
               (ACCOUNT,))
    db.execute(
        "INSERT INTO orders (client_order_id, broker_order_id, status, opening, legs, quantity, "
        "limit_price, submitted_at, updated_at) VALUES ('old-1', 'b-1', 'new', 1, ?, 1, 1.6, "
        "?, ?)",
        (f'[["{P450.occ}", 100, -1], ["{P440.occ}", 100, 1]]',
         MONDAY.isoformat(), MONDAY.isoformat()),
    )
    db.commit()
    db.close()

    broker = broker_on(FakeMarket(quotes()), db_path)

    old = broker.get_order_by_client_id("old-1")
    assert (old.status, old.order_type, old.time_in_force, old.expires_at) == (
        OrderStatus.NEW, "limit", "gtc", None)
    assert broker.account().cash == 5_000.0


def test_order_request_new_fields_validated():
    with pytest.raises(DataError, match="order_type must be 'limit' or 'market'"):
        OrderRequest("v-1", ACCOUNT, LEGS, 1, 1.0, order_type="stop")
    with pytest.raises(DataError, match="time_in_force must be 'gtc' or 'day'"):
        OrderRequest("v-2", ACCOUNT, LEGS, 1, 1.0, time_in_force="ioc")
    plain = OrderRequest("v-3", ACCOUNT, LEGS, 1, 1.0)
    assert (plain.order_type, plain.time_in_force) == ("limit", "gtc")
