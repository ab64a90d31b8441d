"""Specifications of the simulated VIX option chain (``SimMarket(vix_options=True)``) and its
settlement by the paper broker: listed by Cboe's rules, Black-76 on a mean-reverting forward,
deterministic, quoted on Cboe's ticks, AM- and cash-settled against the VIX of the expiry
date's opening whatever the account's settlement."""

import ast
import pickle
import subprocess
import sys
from datetime import UTC, date, datetime

import numpy as np
import pytest

from tests.unit.conftest import MORNING, make_market
from thetadesk.adapters.sim_broker import Fees, SimBroker
from thetadesk.adapters.sim_market import SimMarket, SimShock, SimSymbol
from thetadesk.chain import NEW_YORK
from thetadesk.errors import DataError
from thetadesk.models import Contract, Leg, OrderRequest, OrderStatus, Right
from thetadesk.vix import parity_forward, strike_grid

SHOCK = date(2025, 1, 27)
ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def vix_market():
    return make_market(vix_options=True, shocks=(SimShock(SHOCK, -0.20, 3.0),))


def test_vix_is_unknown_without_vix_options(market):
    with pytest.raises(DataError, match="unknown symbol 'VIX'"):
        market.chain("VIX", MORNING)
    with pytest.raises(DataError, match="unknown symbol 'VIX'"):
        market.spot("VIX", MORNING)


def test_vix_options_refuse_a_simulated_vix_underlying():
    with pytest.raises(DataError, match="volatility index"):
        SimMarket(1, {"VIX": SimSymbol(20.0, 0.9)}, 0.04, date(2025, 1, 6), vix_options=True)


def test_vix_spot_is_the_markets_vix_to_the_cent(vix_market):
    assert vix_market.spot("VIX", MORNING) == round(vix_market.vix(MORNING), 2)
    assert 10.0 < vix_market.spot("VIX", MORNING) < 30.0


def test_vix_chain_lists_six_monthlies_on_the_grid_with_ticks(vix_market):
    chain = vix_market.chain("VIX", MORNING)
    assert chain.expiries() == [date(2025, 1, 22), date(2025, 2, 19), date(2025, 3, 18),
                                date(2025, 4, 16), date(2025, 5, 21), date(2025, 6, 18)]
    for expiry in chain.expiries():
        F = vix_market.vix_forward(expiry, MORNING)
        strikes = [r.contract.strike for r in chain.rows(expiry, Right.CALL)]
        assert strikes == strike_grid(0.5 * F, 3.0 * F)
        for row in chain.rows(expiry):
            q = row.quote
            assert 0 <= q.bid < q.ask
            assert row.contract.multiplier == 100
            for price in (q.bid, q.ask):
                step = 0.05 if price < 3.0 else 0.10
                assert abs(price / step - round(price / step)) < 1e-6
        calls = chain.deltas(expiry, Right.CALL)[1]
        assert np.all(np.diff(calls) < 0)
        assert np.all((calls > 0) & (calls < 1))


def test_vix_chain_prices_off_the_forward_by_put_call_parity(vix_market):
    chain = vix_market.chain("VIX", MORNING)
    for expiry in chain.expiries():
        F = vix_market.vix_forward(expiry, MORNING)
        call = chain.nearest(expiry, Right.CALL, F)
        put = chain.find(expiry, Right.PUT, call.contract.strike)
        implied = parity_forward(call.quote.mid, put.quote.mid, call.contract.strike, 0.04,
                                 chain.years_to_expiry(expiry))
        assert implied == pytest.approx(F, abs=0.15)


def test_vix_term_structure_contango_when_calm_backwardation_after_the_crash(vix_market):
    calm, crash = MORNING, datetime(2025, 1, 27, 16, 0, tzinfo=UTC)
    assert vix_market.spot("VIX", calm) < vix_market.vix_long_run()
    assert vix_market.spot("VIX", crash) > 2.0 * vix_market.spot("VIX", calm)
    fwd_calm = [vix_market.vix_forward(e, calm) for e in vix_market.chain("VIX", calm).expiries()]
    fwd_crash = [vix_market.vix_forward(e, crash)
                 for e in vix_market.chain("VIX", crash).expiries()]
    assert np.all(np.diff(fwd_calm) > 0)
    assert np.all(np.diff(fwd_crash) < 0)


def test_vix_quote_is_its_chain_row_and_prices_off_grid_strikes(vix_market):
    chain = vix_market.chain("VIX", MORNING)
    row = chain.strike_by_delta(date(2025, 2, 19), 0.30, Right.CALL)
    assert vix_market.quote(row.contract, MORNING) == row.quote
    off = Contract("VIX", date(2025, 2, 19), Right.CALL, 21.25)
    lo = vix_market.quote(Contract("VIX", date(2025, 2, 19), Right.CALL, 21.0), MORNING)
    hi = vix_market.quote(Contract("VIX", date(2025, 2, 19), Right.CALL, 22.0), MORNING)
    assert hi.ask <= vix_market.quote(off, MORNING).ask <= lo.ask


def test_vix_chain_is_a_function_of_seed_and_time_and_survives_pickling(vix_market):
    again = pickle.loads(pickle.dumps(vix_market))
    a, b = vix_market.chain("VIX", MORNING), again.chain("VIX", MORNING)
    for expiry in a.expiries():
        assert [r.quote for r in a.rows(expiry)] == [r.quote for r in b.rows(expiry)]


def test_vix_option_trades_to_the_close_before_expiry_then_is_expired(vix_market):
    contract = Contract("VIX", date(2025, 2, 19), Right.CALL, 20.0)
    tuesday_close = datetime(2025, 2, 18, 15, 59, tzinfo=NEW_YORK)
    assert vix_market.quote(contract, tuesday_close).ask > 0
    wednesday = datetime(2025, 2, 19, 9, 30, tzinfo=NEW_YORK)
    with pytest.raises(DataError, match="expired"):
        vix_market.quote(contract, wednesday)
    assert date(2025, 2, 19) not in vix_market.chain("VIX", wednesday).expiries()


def test_vix_call_is_cash_settled_at_the_opening_vix_in_a_physical_account(vix_market,
                                                                            tmp_path):
    expiry = date(2025, 1, 22)
    contract = Contract("VIX", expiry, Right.CALL, 15.0)
    broker = SimBroker("paper", vix_market, tmp_path / "b.db", 100_000.0,
                       fees=Fees(0.0, 0.0, 0.0, 0.0, taf_per_share_sold=0.0))
    try:
        at = datetime(2025, 1, 17, 15, 0, tzinfo=NEW_YORK)
        ask = vix_market.quote(contract, at).ask
        result = broker.submit(OrderRequest("v1", "paper", (Leg(contract, 1),), 2, -ask, True),
                               at)
        assert result.status is OrderStatus.FILLED
        settle_at = datetime(2025, 1, 22, 9, 30, tzinfo=NEW_YORK)
        broker.poll(datetime(2025, 1, 22, 9, 45, tzinfo=NEW_YORK))
        (settlement,) = broker.settlements()
        vix_open = vix_market.spot("VIX", settle_at)
        assert settlement.kind == "cash_settled"
        assert settlement.shares == 0
        assert settlement.underlying_price == vix_open
        assert settlement.amount == pytest.approx(2 * 100 * max(vix_open - 15.0, 0.0))
        assert broker.positions() == []
        assert broker.share_positions() == []
    finally:
        broker.close()


def test_vix_in_a_market_that_prices_only_what_it_quotes_has_the_same_bits_without_numba():
    code = (
        "import sys, datetime\n"
        "from tests.unit.conftest import MORNING, make_market\n"
        "from thetadesk.models import Contract, Right\n"
        "m = make_market(vix_options=True, whole_expiries=False)\n"
        "c = Contract('VIX', datetime.date(2025, 2, 19), Right.CALL, 21.0)\n"
        "q = m.quote(c, MORNING)\n"
        "print(repr((m.spot('VIX', MORNING), q.bid, q.ask, 'numba' in sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    spot, bid, ask, numba = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    whole = make_market(vix_options=True)
    quote = whole.quote(Contract("VIX", date(2025, 2, 19), Right.CALL, 21.0), MORNING)
    assert (spot, bid, ask) == (whole.spot("VIX", MORNING), quote.bid, quote.ask)
    assert whole.vix(MORNING) == make_market(vix_options=True, whole_expiries=False).vix(MORNING)
    assert numba is False
