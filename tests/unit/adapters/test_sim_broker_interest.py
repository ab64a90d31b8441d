"""Specifications of the paper broker's interest on idle cash (``cash_interest``).

Interest of a New York calendar day is credited at the first poll after the day has ended, on
the cash balance then, in the poll's own transaction; the book's cursor makes it once per day
across restarts. Rates are annual decimals; 0.036 / 360 on $100,000 is $10.00 a day.
"""

import os
import sqlite3
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.unit.adapters.test_sim_broker import FakeMarket, ny
from tests.unit.adapters.test_sim_broker_lifecycle import LEGS, P440, P450, quotes
from thetadesk.adapters.sim_broker import SimBroker
from thetadesk.backtest.baselines import put_write
from thetadesk.clock import MarketCalendar
from thetadesk.models import OrderRequest
from thetadesk.rates import CashInterest, tbill_3m

ACCOUNT = "paper-1"
MONDAY = ny(2025, 3, 3, 10, 30)
TUESDAY = ny(2025, 3, 4, 10, 30)
NEXT_MONDAY = ny(2025, 3, 10, 9, 0)
TEN_A_DAY = CashInterest(rate=0.036)  # $10.00 a day on $100,000, actual/360


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "broker.sqlite"


def broker_on(db_path, interest=TEN_A_DAY, cash=100_000.0, market=None):
    return SimBroker(ACCOUNT, market or FakeMarket(quotes()), db_path, cash, 0.0,
                     cash_interest=interest)


class Recorder:
    """A connection wrapper that records the statements that write."""

    def __init__(self, db):
        self.db, self.writes = db, []

    def execute(self, sql, *args):
        if sql.lstrip().split()[0].upper() in ("UPDATE", "INSERT", "DELETE"):
            self.writes.append(sql)
        return self.db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.db, name)


def test_interest_absent_pays_nothing(db_path):
    broker = broker_on(db_path, interest=None)

    for when in (MONDAY, TUESDAY, NEXT_MONDAY):
        broker.poll(when)

    assert broker.account().cash == 100_000.0
    assert broker.interest_paid() == 0.0


def test_interest_first_poll_starts_the_count_and_the_next_day_credits_that_day(db_path):
    broker = broker_on(db_path)

    broker.poll(MONDAY)
    assert broker.account().cash == 100_000.0  # nothing before the first poll's day
    broker.poll(MONDAY + timedelta(hours=5))
    assert broker.interest_paid() == 0.0  # Monday has not ended
    broker.poll(TUESDAY)

    assert broker.interest_paid() == pytest.approx(10.00)
    assert broker.account().cash == pytest.approx(100_010.00)
    assert broker.account().equity == pytest.approx(100_010.00)  # equity includes it


def test_interest_weekend_days_are_credited_at_mondays_first_poll_compounding(db_path):
    broker = broker_on(db_path)
    broker.poll(MONDAY)
    broker.poll(ny(2025, 3, 7, 15, 0))  # Friday: Monday to Thursday credited
    before = broker.account().cash

    broker.poll(NEXT_MONDAY)  # Friday, Saturday, Sunday

    daily = 0.036 / 360
    assert broker.account().cash == pytest.approx(before * (1 + daily) ** 3)
    assert broker.interest_paid() == pytest.approx(100_000.0 * ((1 + daily) ** 7 - 1))


def test_interest_later_polls_of_the_same_day_write_nothing(db_path):
    broker = broker_on(db_path)
    broker.poll(MONDAY)
    broker.poll(TUESDAY)
    recorder = Recorder(broker._db)
    broker._db = recorder

    for minutes in range(5, 60, 5):
        broker.poll(TUESDAY + timedelta(minutes=minutes))

    assert recorder.writes == []
    assert broker.interest_paid() == pytest.approx(10.00)
    broker.poll(ny(2025, 3, 5, 10, 0))  # the next day: one credit, seen by the recorder
    assert sum("INSERT INTO interest" in w for w in recorder.writes) == 1


def test_interest_restart_never_credits_a_day_twice_or_skips_one(db_path):
    first = broker_on(db_path)
    first.poll(MONDAY)
    first.poll(TUESDAY)
    first.close()

    again = broker_on(db_path)
    again.poll(TUESDAY + timedelta(hours=1))
    assert again.interest_paid() == pytest.approx(10.00)
    again.poll(ny(2025, 3, 5, 9, 0))  # Tuesday's, on the new balance

    assert again.interest_paid() == pytest.approx(10.00 + 100_010.00 * 0.036 / 360)


def test_interest_rolled_back_poll_credits_nothing_and_the_next_poll_credits_once(db_path):
    market = FakeMarket(quotes(short_bid=2.50))  # natural 0.90: a 1.40 limit rests
    broker = broker_on(db_path, market=market)
    broker.poll(MONDAY)
    broker.submit(OrderRequest("rest", ACCOUNT, LEGS, 1, 1.40, True), MONDAY)

    def broken(now):
        raise RuntimeError("the market went away mid-poll")

    market.is_open = broken  # asked after the interest is credited, in the same transaction
    with pytest.raises(RuntimeError):
        broker.poll(TUESDAY)
    assert broker.interest_paid() == 0.0
    assert broker.account().cash == 100_000.0
    del market.is_open

    broker.poll(TUESDAY)
    broker.poll(TUESDAY + timedelta(minutes=5))
    assert broker.interest_paid() == pytest.approx(10.00)


def test_interest_is_credited_after_the_expiry_settlement_of_the_last_close(db_path):
    # A bull put expiring on Friday 2025-08-15 settles in cash 10 in the money (-1,000 x 2):
    # Friday's interest is on the balance after it, as the settlement belongs to the close.
    market = FakeMarket({P450: quotes()[P450], P440: quotes()[P440]}, {"SPY": 430.0})
    broker = SimBroker(ACCOUNT, market, db_path, 100_000.0, 0.0, settlement="cash",
                       cash_interest=TEN_A_DAY)
    friday = ny(2025, 8, 15, 10, 0)
    broker.poll(friday)
    broker.submit(OrderRequest("bp", ACCOUNT, LEGS, 2, 1.40, True), friday)
    after_fill = broker.account().cash  # 100,000 + 280

    broker.poll(ny(2025, 8, 16, 9, 0))  # Saturday: settles at Friday's close, credits Friday

    settled = after_fill - 2_000.0
    assert broker.interest_paid() == pytest.approx(settled * 0.036 / 360)


def test_interest_negative_cash_earns_nothing(db_path):
    broker = broker_on(db_path)
    broker.poll(MONDAY)
    db = sqlite3.connect(db_path)
    db.execute("UPDATE book SET cash = -5000 WHERE id = 1")
    db.commit()
    db.close()

    broker.poll(TUESDAY)

    assert broker.account().cash == -5000.0
    assert broker.interest_paid() == 0.0


def test_interest_tbill_rate_uses_each_days_year_less_the_spread(db_path):
    interest = CashInterest(rate="tbill_3m", spread=0.005)
    broker = broker_on(db_path, interest=interest)
    broker.poll(ny(2024, 12, 31, 10, 0))

    broker.poll(ny(2025, 1, 2, 10, 0))  # 2024-12-31 and 2025-01-01

    d24 = (tbill_3m(date(2024, 12, 31)) - 0.005) / 360
    d25 = (tbill_3m(date(2025, 1, 1)) - 0.005) / 360
    assert d24 != d25
    assert broker.interest_paid() == pytest.approx(100_000 * ((1 + d24) * (1 + d25) - 1))


def test_interest_paid_since_counts_the_credits_booked_from_then(db_path):
    broker = broker_on(db_path)
    broker.poll(MONDAY)
    broker.poll(TUESDAY)
    broker.poll(ny(2025, 3, 5, 10, 0))

    assert broker.interest_paid(since=ny(2025, 3, 5, 0, 0)) == pytest.approx(
        100_010.00 * 0.036 / 360)
    assert broker.interest_paid(since=MONDAY) == pytest.approx(broker.interest_paid())


def test_interest_version_3_file_is_migrated_and_starts_earning(db_path):
    broker_on(db_path, interest=None).close()
    db = sqlite3.connect(db_path)
    db.executescript("""
        ALTER TABLE book DROP COLUMN interest_through;
        ALTER TABLE book DROP COLUMN interest_paid;
        DROP TABLE interest;
        PRAGMA user_version = 3;
    """)
    db.close()

    migrated = broker_on(db_path)
    migrated.poll(MONDAY)
    migrated.poll(TUESDAY)

    assert migrated.interest_paid() == pytest.approx(10.00)
    version = sqlite3.connect(db_path).execute("PRAGMA user_version").fetchone()[0]
    assert version == 4


_KILLED_CHILD = """
import os, signal, sys
from datetime import datetime
from pathlib import Path
from tests.unit.adapters.test_sim_broker import FakeMarket
from tests.unit.adapters.test_sim_broker_lifecycle import quotes
from thetadesk.adapters.sim_broker import SimBroker
from thetadesk.chain import NEW_YORK
from thetadesk.rates import CashInterest

broker = SimBroker("paper-1", FakeMarket(quotes()), Path(sys.argv[1]), 100_000.0, 0.0,
                   cash_interest=CashInterest(rate=0.036))
broker.poll(datetime(2025, 3, 3, 10, 30, tzinfo=NEW_YORK))
broker.poll(datetime(2025, 3, 4, 10, 30, tzinfo=NEW_YORK))
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_interest_credit_survives_sigkill_right_after_the_poll(db_path):
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", _KILLED_CHILD, str(db_path)], env=env,
                          cwd=root, capture_output=True, timeout=60, check=False)
    assert done.returncode == -9, done.stderr.decode()

    broker = broker_on(db_path)
    broker.poll(TUESDAY + timedelta(minutes=5))

    assert broker.interest_paid() == pytest.approx(10.00)
    assert broker.account().cash == pytest.approx(100_010.00)


def test_interest_baseline_and_broker_earn_the_same_on_the_same_days(db_path):
    """A put-write with too little cash to sell a put holds cash only: with the broker's own
    rate its equity is the paper broker's, polled at each open and close, session by session."""
    from tests.unit.backtest.test_baselines import HandMarket

    calendar = MarketCalendar()
    sessions = calendar.sessions(date(2025, 3, 3), 15)  # two weekends
    interest = CashInterest(rate=0.05, spread=0.01)
    broker = broker_on(db_path, interest=interest, cash=5_000.0)
    closes = []
    for d in sessions:
        broker.poll(calendar.session_open(d))
        broker.poll(calendar.session_close(d))
        closes.append(broker.account().equity)

    equity, trades = put_write(HandMarket({}), "SPY", sessions, 5_000.0, calendar=calendar,
                               daily_rate=interest.daily)

    assert trades == []
    assert equity == pytest.approx(closes, rel=1e-12)
    assert equity[-1] > equity[0] > 0


def test_interest_same_cash_to_the_bit_whether_polled_every_night_or_only_in_sessions(tmp_path):
    # Backtest-live parity: the supervisor may tick through nights and weekends, the backtest
    # only in sessions; the days credited together or one by one book the same balance.
    calendar = MarketCalendar()
    sessions = calendar.sessions(date(2025, 3, 3), 10)
    nightly = broker_on(tmp_path / "nightly.db", CashInterest("tbill_3m", 0.0013), 98_765.43)
    daily = broker_on(tmp_path / "daily.db", CashInterest("tbill_3m", 0.0013), 98_765.43)
    day = sessions[0]
    while day <= sessions[-1]:
        nightly.poll(ny(day.year, day.month, day.day, 0, 5))
        day += timedelta(days=1)
    for d in sessions:
        daily.poll(calendar.session_open(d))
        nightly.poll(calendar.session_open(d))

    assert daily.account().cash == nightly.account().cash
    assert daily.account().cash > 98_765.43
