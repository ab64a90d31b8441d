"""Specifications of the paper broker's price modes (``FillModel.mode``) and its open-interest
cap, the knobs behind the backtester's named fill models.

The hand spread of test_sim_broker_lifecycle: a 10-wide bull put, sell P450 (3.00 / 3.10), buy
P440 (1.50 / 1.60): natural credit 1.40, mid credit 1.50.
"""

from datetime import timedelta

import pytest

from tests.unit.adapters.test_sim_broker import FakeMarket, order, reversed_legs
from tests.unit.adapters.test_sim_broker_lifecycle import (
    LEGS,
    MONDAY,
    P440,
    P450,
    broker_on,
    market_order,
    quotes,
)
from thetadesk.adapters.sim_broker import FillModel
from thetadesk.chain import OptionChain, OptionQuote
from thetadesk.errors import DataError
from thetadesk.models import OrderStatus


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "broker.sqlite"


class ChainMarket(FakeMarket):
    """FakeMarket whose chain gives each leg an open interest."""

    def __init__(self, quotes, open_interest):
        super().__init__(quotes)
        self.open_interest = dict(open_interest)

    def chain(self, symbol, now, min_dte=None, max_dte=None):
        rows = [OptionQuote(c, q, open_interest=self.open_interest.get(c))
                for c, q in self.quotes.items()]
        return OptionChain(symbol, self.spots[symbol], now, rows)


def test_mid_mode_fills_a_marketable_limit_at_the_mid(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path, fill_model=FillModel(mode="mid"))

    done = broker.submit(order("m-1", LEGS, limit=1.40), MONDAY)

    assert (done.status, done.avg_fill_price) == (OrderStatus.FILLED, 1.50)


def test_mid_mode_less_slippage_ticks(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path,
                       fill_model=FillModel(mode="mid", slippage_ticks=3))

    done = broker.submit(order("m-2", LEGS, limit=1.40), MONDAY)

    assert done.avg_fill_price == pytest.approx(1.47)


def test_mid_mode_waits_when_the_limit_is_above_mid_less_slippage(db_path):
    fake = FakeMarket(quotes())
    broker = broker_on(fake, db_path, fill_model=FillModel(mode="mid", slippage_ticks=2))

    first = broker.submit(order("m-3", LEGS, limit=1.49), MONDAY)  # 1.48 achievable
    fake.quotes = quotes(short_bid=3.02)  # P450 3.02 / 3.12: mid 1.52, less 2 ticks: 1.50
    broker.poll(MONDAY + timedelta(minutes=1))

    assert first.status is OrderStatus.NEW
    assert broker.get_order_by_client_id("m-3").avg_fill_price == pytest.approx(1.50)


def test_mid_mode_closing_debit_pays_the_mid_plus_slippage(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path,
                       fill_model=FillModel(mode="mid", slippage_ticks=1))
    broker.submit(order("open-1", LEGS, limit=1.40), MONDAY)

    close = broker.submit(market_order("close-1", legs=reversed_legs(LEGS), opening=False),
                          MONDAY + timedelta(minutes=1))

    assert close.avg_fill_price == pytest.approx(-1.51)  # debit: mid 1.50 plus one tick
    assert broker.positions() == []


def test_limit_mode_is_unchanged_at_its_limit(db_path):
    broker = broker_on(FakeMarket(quotes()), db_path, fill_model=FillModel())

    done = broker.submit(order("l-1", LEGS, limit=1.40), MONDAY)

    assert done.avg_fill_price == 1.40


def test_open_interest_caps_the_order_in_total(db_path):
    market = ChainMarket(quotes(), {P450: 50, P440: 80})
    broker = broker_on(market, db_path,
                       fill_model=FillModel(max_open_interest_share=0.1))  # 5 of 50

    first = broker.submit(order("oi-1", LEGS, quantity=8, limit=1.40), MONDAY)
    broker.poll(MONDAY + timedelta(minutes=1))

    assert (first.status, first.filled_quantity) == (OrderStatus.PARTIALLY_FILLED, 5)
    assert broker.get_order_by_client_id("oi-1").filled_quantity == 5  # no more, ever
    assert {p.contract: p.quantity for p in broker.positions()} == {P450: -5, P440: 5}


def test_open_interest_too_small_means_no_fill(db_path):
    broker = broker_on(ChainMarket(quotes(), {P450: 5, P440: 5}), db_path,
                       fill_model=FillModel(max_open_interest_share=0.1))

    accepted = broker.submit(order("oi-2", LEGS, quantity=1, limit=1.40), MONDAY)

    assert (accepted.status, accepted.filled_quantity) == (OrderStatus.NEW, 0)


def test_open_interest_unknown_does_not_limit(db_path):
    broker = broker_on(ChainMarket(quotes(), {}), db_path,
                       fill_model=FillModel(max_open_interest_share=0.1))

    done = broker.submit(order("oi-3", LEGS, quantity=4, limit=1.40), MONDAY)

    assert (done.status, done.filled_quantity) == (OrderStatus.FILLED, 4)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "natural"}, "FillModel mode must be one of limit, mid, got 'natural'"),
    ({"max_open_interest_share": 0.0}, "max_open_interest_share must be in (0, 1]"),
    ({"max_open_interest_share": 1.5}, "max_open_interest_share must be in (0, 1]"),
])
def test_fill_model_refuses_bad_values(kwargs, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        FillModel(**kwargs)
