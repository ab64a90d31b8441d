"""Specifications of the paper broker's expiry settlement (physical and cash), early assignment
before ex-dividend dates, and share orders, on hand-set quotes and spots.

Money is in dollars, prices per share. Shares are quoted at spot with a one-cent spread.
"""

import sqlite3
from datetime import date, timedelta

import pytest

from tests.unit.adapters.test_sim_broker import FakeMarket, ny, order
from thetadesk.adapters.sim_broker import EarlyAssignment, Fees, SimBroker
from thetadesk.chain import expiry_instant
from thetadesk.clock import MarketCalendar
from thetadesk.errors import DataError, OrderRejected
from thetadesk.models import (
    Contract,
    OrderStatus,
    Quote,
    Right,
    ShareOrder,
    SharePosition,
)
from thetadesk.strategies.spreads import bear_call_credit, bull_put_credit

ACCOUNT = "paper-1"
EXPIRY = date(2025, 3, 7)  # a Friday
CLOSE = expiry_instant(EXPIRY)  # 16:00 New York
OPEN_DAY = ny(2025, 3, 3, 10, 30)
NEXT_MORNING = ny(2025, 3, 10, 9, 35)  # the Monday after expiry
P450 = Contract("SPY", EXPIRY, Right.PUT, 450.0)
P440 = Contract("SPY", EXPIRY, Right.PUT, 440.0)
C460 = Contract("SPY", EXPIRY, Right.CALL, 460.0)
C470 = Contract("SPY", EXPIRY, Right.CALL, 470.0)
QUOTES = {P450: Quote(3.00, 3.10, 100, 100), P440: Quote(1.50, 1.60, 100, 100),
          C460: Quote(2.00, 2.10, 100, 100), C470: Quote(0.80, 0.90, 100, 100)}
NO_FEES = Fees(0.0, 0.0, 0.0, 0.0, taf_per_share_sold=0.0)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "broker.sqlite"


def broker_on(market, db_path, **kwargs):
    kwargs.setdefault("fees", NO_FEES)
    return SimBroker(ACCOUNT, market, db_path, 100_000.0, **kwargs)


def open_bull_put(broker, quantity=2):
    """Sell P450 / buy P440 at the natural credit 1.40."""
    spread = bull_put_credit(P450, P440)
    result = broker.submit(order("bp", spread.legs, quantity=quantity, limit=1.40), OPEN_DAY)
    assert result.status is OrderStatus.FILLED
    return spread


# -- physical settlement at expiry ------------------------------------------------------------


def test_short_put_in_the_money_is_assigned_shares_at_the_strike(db_path):
    market = FakeMarket(QUOTES, {"SPY": 450.0})
    broker = broker_on(market, db_path)
    open_bull_put(broker)
    cash_open = broker.account().cash
    assert cash_open == pytest.approx(100_000.0 + 2 * 100 * 1.40)

    market.spots["SPY"] = 445.0  # between the strikes at the close: only the short put is ITM
    broker.poll(CLOSE)

    assert broker.positions() == []
    assert broker.share_positions() == [SharePosition("SPY", 200, 450.0)]
    settled = {s.contract: s for s in broker.settlements()}
    assert (settled[P450].kind, settled[P450].shares, settled[P450].amount) == (
        "assigned", 200, -90_000.0)
    assert (settled[P440].kind, settled[P440].shares, settled[P440].amount) == (
        "expired", 0, 0.0)
    assert settled[P450].intrinsic == pytest.approx(5.0)
    assert all(s.underlying_price == 445.0 and s.time == CLOSE for s in settled.values())
    assert len({s.activity_id for s in settled.values()}) == 2
    account = broker.account()
    assert account.cash == pytest.approx(cash_open - 90_000.0)
    # Equity: the shares at 445 are worth what a cash settlement at 5.00 intrinsic would leave.
    assert account.equity == pytest.approx(cash_open - 2 * 100 * 5.0)
    # Half the shares' notional is margin: buying power shrinks accordingly.
    assert account.buying_power == pytest.approx(account.equity - 0.5 * 200 * 445.0)


def test_spread_with_both_legs_in_the_money_nets_out_like_a_cash_settlement(db_path, tmp_path):
    physical_market = FakeMarket(QUOTES, {"SPY": 450.0})
    physical = broker_on(physical_market, db_path)
    cash_market = FakeMarket(QUOTES, {"SPY": 450.0})
    cash = broker_on(cash_market, tmp_path / "cash.sqlite", settlement="cash")
    for broker, market in ((physical, physical_market), (cash, cash_market)):
        open_bull_put(broker)
        market.spots["SPY"] = 430.0  # both puts in the money
        broker.poll(CLOSE)

    assert physical.share_positions() == []  # +200 assigned, -200 exercised
    kinds = sorted((s.kind, s.shares) for s in physical.settlements())
    assert kinds == [("assigned", 200), ("exercised", -200)]
    assert physical.account().cash == pytest.approx(cash.account().cash)
    assert physical.account().cash == pytest.approx(100_000.0 + 2 * 100 * (1.40 - 10.0))
    assert sorted(s.kind for s in cash.settlements()) == ["cash_settled", "cash_settled"]


def test_long_call_exercised_and_short_call_assigned(db_path):
    market = FakeMarket(QUOTES, {"SPY": 450.0})
    broker = broker_on(market, db_path)
    spread = bear_call_credit(C460, C470)  # short 460 call, long 470 call
    broker.submit(order("bc", spread.legs, quantity=1, limit=1.10), OPEN_DAY)
    market.spots["SPY"] = 465.0
    broker.poll(CLOSE)

    assert broker.share_positions() == [SharePosition("SPY", -100, 460.0)]  # delivered away
    settled = {s.contract: s for s in broker.settlements()}
    assert (settled[C460].kind, settled[C460].shares, settled[C460].amount) == (
        "assigned", -100, 46_000.0)
    assert settled[C470].kind == "expired"


def test_an_option_less_than_a_cent_in_the_money_expires(db_path):
    market = FakeMarket(QUOTES, {"SPY": 450.0})
    broker = broker_on(market, db_path)
    open_bull_put(broker)
    market.spots["SPY"] = 449.995
    broker.poll(CLOSE)
    assert broker.share_positions() == []
    assert {s.kind for s in broker.settlements()} == {"expired"}


def test_settlements_since_filters_and_survive_a_restart(db_path):
    market = FakeMarket(QUOTES, {"SPY": 450.0})
    broker = broker_on(market, db_path)
    open_bull_put(broker)
    market.spots["SPY"] = 445.0
    broker.poll(CLOSE)
    first = broker.settlements()
    broker.close()

    again = broker_on(market, db_path)
    assert again.settlements() == first
    assert again.settlements(since=CLOSE) == first
    assert again.settlements(since=CLOSE + timedelta(seconds=1)) == []
    assert again.share_positions() == [SharePosition("SPY", 200, 450.0)]
    again.poll(NEXT_MORNING)  # settling twice changes nothing
    assert again.settlements() == first
    with pytest.raises(DataError, match="timezone-aware"):
        again.settlements(since=CLOSE.replace(tzinfo=None))


def test_bad_settlement_mode_raises_data_error(db_path):
    with pytest.raises(DataError, match="settlement must be 'physical' or 'cash'"):
        broker_on(FakeMarket(QUOTES), db_path, settlement="shares")


# -- share orders -----------------------------------------------------------------------------


def assigned(db_path, fees=NO_FEES):
    """A broker holding 200 SPY from an assignment at 450, the morning after, SPY at 445.004."""
    market = FakeMarket(QUOTES, {"SPY": 450.0})
    broker = broker_on(market, db_path, fees=fees)
    open_bull_put(broker)
    market.spots["SPY"] = 445.0
    broker.poll(CLOSE)
    market.spots["SPY"] = 445.004  # share quote 445.00 / 445.01
    return broker, market


def test_market_sale_of_assigned_shares_fills_at_the_bid(db_path):
    broker, _ = assigned(db_path)
    cash = broker.account().cash

    result = broker.submit(ShareOrder("sell-1", ACCOUNT, "SPY", -200), NEXT_MORNING)

    assert (result.status, result.filled_quantity, result.avg_fill_price) == (
        OrderStatus.FILLED, 200, 445.00)
    assert broker.share_positions() == []
    (fill,) = broker.fills("sell-1")
    assert (fill.quantity, fill.price, fill.commission) == (200, 445.00, 0.0)
    assert broker.account().cash == pytest.approx(cash + 200 * 445.00)
    # The round trip: +280 credit, -5.00 x 200 on the assignment, nothing else.
    assert broker.account().equity == pytest.approx(100_000.0 + 280.0 - 1_000.0)


def test_share_sale_pays_the_taf_on_shares_sold(db_path):
    broker, _ = assigned(db_path, fees=Fees(0.0, 0.0, 0.0, 8.30, 0.0, 0.000166))
    broker.submit(ShareOrder("sell-1", ACCOUNT, "SPY", -200), NEXT_MORNING)
    assert broker.fills("sell-1")[0].commission == 0.04  # 200 x 0.000166 = 0.0332, up to 0.04
    assert Fees(taf_per_share_sold=0.000166).shares(-100_000) == 0.65 * 0 + 8.30  # the cap
    assert Fees(commission_per_share=0.005).shares(300) == pytest.approx(1.5)


def test_share_order_outside_the_session_rests_then_fills_at_the_open(db_path):
    broker, market = assigned(db_path)
    market.open = False
    result = broker.submit(ShareOrder("sell-1", ACCOUNT, "SPY", -200), CLOSE)
    assert result.status is OrderStatus.NEW
    assert result.expires_at == ny(2025, 3, 10, 16, 0)  # a day order: Monday's close
    market.open = True
    fills = broker.poll(NEXT_MORNING)
    assert [(f.client_order_id, f.quantity, f.price) for f in fills] == [("sell-1", 200, 445.00)]


def test_share_limit_waits_for_the_market_and_can_be_replaced(db_path):
    broker, market = assigned(db_path)
    result = broker.submit(ShareOrder("sell-1", ACCOUNT, "SPY", -200, "limit", 446.0),
                           NEXT_MORNING)
    assert result.status is OrderStatus.NEW
    market.spots["SPY"] = 446.2
    assert broker.poll(NEXT_MORNING + timedelta(minutes=5))[0].price == 446.0

    broker2, _ = assigned(db_path.with_name("b2.sqlite"))
    broker2.submit(ShareOrder("sell-2", ACCOUNT, "SPY", -200, "limit", 446.0), NEXT_MORNING)
    new = broker2.replace("sell-2", "sell-3", NEXT_MORNING, limit_price=444.0)
    assert (new.status, new.avg_fill_price, new.replaces) == (OrderStatus.FILLED, 444.0,
                                                              "sell-2")
    assert broker2.share_positions() == []


def test_closing_share_orders_must_reduce_a_held_position(db_path):
    broker, market = assigned(db_path)
    market.spots["QQQ"] = 380.0
    with pytest.raises(OrderRejected, match="does not reduce a held share position"):
        broker.submit(ShareOrder("sell-1", ACCOUNT, "SPY", -300), NEXT_MORNING)
    with pytest.raises(OrderRejected, match="does not reduce a held share position"):
        broker.submit(ShareOrder("buy-1", ACCOUNT, "SPY", 100), NEXT_MORNING)
    with pytest.raises(OrderRejected, match="does not reduce a held share position"):
        broker.submit(ShareOrder("sell-q", ACCOUNT, "QQQ", -1), NEXT_MORNING)
    broker.submit(ShareOrder("sell-2", ACCOUNT, "SPY", -150, "limit", 500.0), NEXT_MORNING)
    with pytest.raises(OrderRejected, match=r"held \+200, -150 already being closed"):
        broker.submit(ShareOrder("sell-3", ACCOUNT, "SPY", -100), NEXT_MORNING)
    assert broker.get_order_by_client_id("sell-1").status is OrderStatus.REJECTED


def test_opening_share_order_needs_half_the_notional(db_path):
    market = FakeMarket(QUOTES, {"SPY": 450.0})
    broker = broker_on(market, db_path)
    with pytest.raises(OrderRejected, match="insufficient buying power"):
        broker.submit(ShareOrder("big", ACCOUNT, "SPY", 500, opening=True), OPEN_DAY)
    result = broker.submit(ShareOrder("small", ACCOUNT, "SPY", 100, opening=True), OPEN_DAY)
    assert (result.status, result.avg_fill_price) == (OrderStatus.FILLED, 450.01)
    assert broker.share_positions() == [SharePosition("SPY", 100, 450.01)]
    assert broker.account().buying_power == pytest.approx(
        broker.account().equity - 0.5 * 100 * 450.0)


def test_share_order_validation():
    with pytest.raises(DataError, match="non-zero integer"):
        ShareOrder("x", ACCOUNT, "SPY", 0)
    with pytest.raises(DataError, match="takes no limit price"):
        ShareOrder("x", ACCOUNT, "SPY", 1, "market", 10.0)
    with pytest.raises(DataError, match="needs a limit price > 0"):
        ShareOrder("x", ACCOUNT, "SPY", 1, "limit", None)
    with pytest.raises(DataError, match="share symbol"):
        ShareOrder("x", ACCOUNT, "spy", 1)
    assert ShareOrder("x", ACCOUNT, "SPY", -3).side == "sell"


def test_version_2_file_is_migrated_with_settlement_kinds(db_path):
    market = FakeMarket(QUOTES, {"SPY": 450.0})
    broker = broker_on(market, db_path, settlement="cash")
    open_bull_put(broker)
    market.spots["SPY"] = 445.0
    broker.poll(CLOSE)
    broker.close()
    # Turn the file back into a version-2 file: no kind/shares columns, no shares table (and
    # none of version 4's interest columns and table).
    db = sqlite3.connect(db_path)
    rows = db.execute("SELECT occ, multiplier, quantity, underlying_price, intrinsic, amount, "
                      "time FROM settlements ORDER BY seq").fetchall()
    db.executescript("""
        DROP TABLE settlements;
        DROP TABLE shares;
        CREATE TABLE settlements (seq INTEGER PRIMARY KEY AUTOINCREMENT, occ TEXT NOT NULL,
            multiplier INTEGER NOT NULL, quantity INTEGER NOT NULL,
            underlying_price REAL NOT NULL, intrinsic REAL NOT NULL, amount REAL NOT NULL,
            time TEXT NOT NULL);
        ALTER TABLE orders DROP COLUMN instrument;
        ALTER TABLE orders DROP COLUMN symbol;
        ALTER TABLE orders DROP COLUMN side;
        ALTER TABLE book DROP COLUMN dividend_cursor;
        ALTER TABLE book DROP COLUMN interest_through;
        ALTER TABLE book DROP COLUMN interest_paid;
        DROP TABLE interest;
        PRAGMA user_version = 2;
    """)
    db.executemany("INSERT INTO settlements (occ, multiplier, quantity, underlying_price, "
                   "intrinsic, amount, time) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()

    migrated = broker_on(market, db_path)
    kinds = {s.contract: s.kind for s in migrated.settlements()}
    assert kinds == {P450: "cash_settled", P440: "expired"}
    assert migrated.get_order_by_client_id("bp").status is OrderStatus.FILLED


# -- early assignment -------------------------------------------------------------------------

JUNE = date(2025, 6, 20)  # the third Friday of June 2025: an ex-dividend date
C500_JULY = Contract("SPY", date(2025, 7, 18), Right.CALL, 500.0)
C510_JULY = Contract("SPY", date(2025, 7, 18), Right.CALL, 510.0)
EVE = ny(2025, 6, 19, 10, 0)  # Juneteenth 2025 is a holiday: the session before is the 18th
EVE_CLOSE = ny(2025, 6, 18, 16, 0)


def test_ex_dividend_dates_are_third_fridays_or_the_next_session():
    early = EarlyAssignment({"SPY": 0.013})
    dates = early.ex_dates(date(2025, 1, 1), date(2025, 12, 31), MarketCalendar())
    assert dates == [date(2025, 3, 21), JUNE, date(2025, 9, 19), date(2025, 12, 19)]
    good_friday = EarlyAssignment({"SPY": 0.01}, months=(4,))
    assert good_friday.ex_dates(date(2025, 1, 1), date(2025, 12, 31), MarketCalendar()) == [
        date(2025, 4, 21)]  # 18 April 2025 is Good Friday: the next session, Monday
    with pytest.raises(DataError, match=r"months must be 1\.\.12"):
        EarlyAssignment({"SPY": 0.01}, months=(13,))
    with pytest.raises(DataError, match=r"dividend yield of SPY must be <= 0\.2"):
        EarlyAssignment({"SPY": 0.5})


def deep_call_market(time_value):
    """SPY at 560: the July 500 call is 60 in the money with ``time_value`` over intrinsic."""
    mid = 60.0 + time_value
    quotes = {C500_JULY: Quote(mid - 0.05, mid + 0.05, 10, 10),
              C510_JULY: Quote(mid - 10.0 - 0.05, mid - 10.0 + 0.05, 10, 10)}
    return FakeMarket(quotes, {"SPY": 560.0})


@pytest.mark.parametrize(("time_value", "enabled", "assigned_early"), [
    (0.10, True, True),  # dividend 560 x 0.013 / 4 = 1.82 > 0.10 of time value
    (3.00, True, False),  # time value above the dividend: nobody exercises
    (0.10, False, False),  # the option is off
])
def test_deep_short_call_is_assigned_before_the_ex_date(db_path, time_value, enabled,
                                                        assigned_early):
    market = deep_call_market(time_value)
    early = EarlyAssignment({"SPY": 0.013}) if enabled else None
    broker = broker_on(market, db_path, early_assignment=early)
    spread = bear_call_credit(C500_JULY, C510_JULY)
    broker.submit(order("bc", spread.legs, quantity=1, limit=9.90), ny(2025, 6, 16, 10, 0))
    broker.poll(ny(2025, 6, 18, 15, 55))  # before the eve's close: nothing yet
    assert len(broker.positions()) == 2

    broker.poll(ny(2025, 6, 20, 9, 35))

    held = {p.contract for p in broker.positions()}
    if assigned_early:
        assert held == {C510_JULY}  # the long call stays
        (s,) = broker.settlements()
        assert (s.kind, s.contract, s.shares, s.amount, s.time) == (
            "early_assignment", C500_JULY, -100, 50_000.0, EVE_CLOSE)
        assert broker.share_positions() == [SharePosition("SPY", -100, 500.0)]
    else:
        assert held == {C500_JULY, C510_JULY}
        assert broker.settlements() == []
    broker.poll(ny(2025, 6, 23, 9, 35))  # the same ex-date is never handled twice
    assert len(broker.settlements()) == (1 if assigned_early else 0)
