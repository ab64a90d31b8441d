"""Specifications of how the risk gate measures VIX options: on their expiry's VIX future,
priced by put-call parity from the quotes, negatively correlated with SPY (a long VIX call has
a negative beta-weighted delta), shocked in stress scenarios by the scenario's VIX change, and
refused, not waved through, when a quote it needs is unusable."""

from datetime import date

import pytest

from tests.unit.conftest import LIMITS, MORNING, make_market
from tests.unit.risk.test_gate import SYMBOLS, hold, request, spy_put_spread
from thetadesk.models import Contract, Leg, Right
from thetadesk.risk.engine import RiskEngine
from thetadesk.risk.gate import PortfolioLimits, SnapshotBuilder, exposure
from thetadesk.risk.scenarios import StressScenario, stress_table

EXPIRY = date(2025, 2, 19)


@pytest.fixture(scope="module")
def vix_market():
    return make_market(vix_options=True)


def vix_call(market, delta=0.30):
    return market.chain("VIX", MORNING).strike_by_delta(EXPIRY, delta, Right.CALL).contract


def test_vix_call_is_measured_on_its_future_at_the_parity_forward(vix_market):
    call = vix_call(vix_market)
    portfolio = SnapshotBuilder(vix_market, 0.04, SYMBOLS, 0.85).build({call: 2}, {}, MORNING)
    (holding,) = portfolio.holdings
    assert holding.underlying == "VIX.250219"
    future = portfolio.underlyings["VIX.250219"]
    assert future.spot == pytest.approx(vix_market.vix_forward(EXPIRY, MORNING), abs=0.15)
    assert future.dividend_yield == 0.04  # Black-76: the future carries at the rate
    assert portfolio.value() == pytest.approx(2 * 100 * vix_market.quote(call, MORNING).mid,
                                              rel=0.02)
    assert portfolio.correlation[frozenset(("VIX.250219", "SPY"))] == -0.70


def test_long_vix_call_has_a_negative_beta_weighted_delta(vix_market):
    call = vix_call(vix_market)
    builder = SnapshotBuilder(vix_market, 0.04, SYMBOLS, 0.85)
    measured = exposure(builder.build({call: 5}, {}, MORNING), 0.0, {})
    assert measured.delta["VIX.250219"] > 0  # long the future
    assert measured.beta_weighted_delta < 0  # short the market
    # A 30-delta call on a ~0.8 vol future: a few SPY shares short per contract.
    assert -20.0 < measured.beta_weighted_delta / 5 < -1.0


def test_vix_calls_gain_in_a_crash_scenario(vix_market):
    call = vix_call(vix_market)
    portfolio = SnapshotBuilder(vix_market, 0.04, SYMBOLS, 0.85).build({call: 1}, {}, MORNING)
    crash = StressScenario("crash", -0.10, 1.0)
    calm = StressScenario("calm", 0.03, -0.2)
    (_, gain), (_, loss) = stress_table(portfolio, (crash, calm))
    assert gain > 100.0
    assert loss < 0.0


def test_gate_approves_a_vix_call_that_lowers_var_and_refuses_an_unmeasurable_one(ledger):
    market = make_market(vix_options=True)
    hold(ledger, spy_put_spread(market), 5)
    call = vix_call(market)
    gate = RiskEngine(ledger, {"paper": LIMITS}, {"paper": PortfolioLimits(max_var99=1e9)},
                      SnapshotBuilder(market, 0.04, SYMBOLS, 0.85))
    req = request([Leg(call, 1)], quantity=3, symbol="VIX", max_loss=0.0)
    verdict = gate.check(req)
    assert verdict.approved
    bad_put = Contract("VIX", EXPIRY, Right.PUT, call.strike)
    broken = make_market(vix_options=True,
                         corrupt=lambda c, now: "nan" if c == bad_put else None)
    gate.snapshots = SnapshotBuilder(broken, 0.04, SYMBOLS, 0.85)
    refused = gate.check(request([Leg(call, 1)], quantity=3, symbol="VIX", max_loss=0.0,
                                 cid="c2"))
    assert not refused.approved
    assert refused.check == "risk_data"
    assert "cannot measure" in refused.reason
