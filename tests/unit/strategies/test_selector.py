"""The selector's table of regime x IV rank -> structure, candidates on a known chain, their
expected value, and the ranking with the reasons for what was not chosen."""

import math

import pytest

from tests.unit.conftest import MORNING, make_market
from thetadesk.signals.regime import Regime, Trend, Volatility
from thetadesk.strategies.selector import (
    SelectorRules,
    candidates,
    expected_value,
    rank,
    structure_for,
)
from thetadesk.strategies.spreads import SpreadKind

K = SpreadKind


@pytest.mark.parametrize(("trend", "rank_", "want"), [
    (Trend.UP, 80.0, K.BULL_PUT_CREDIT),
    (Trend.DOWN, 80.0, K.BEAR_CALL_CREDIT),
    (Trend.RANGE, 80.0, K.IRON_CONDOR),
    (Trend.UP, 10.0, K.BULL_CALL_DEBIT),
    (Trend.DOWN, 10.0, K.BEAR_PUT_DEBIT),
    (Trend.RANGE, 10.0, None),
    (Trend.UP, 40.0, K.BULL_PUT_CREDIT),  # between the thresholds: credit
    (Trend.RANGE, float("nan"), K.IRON_CONDOR),  # unknown rank: credit, said so
])
def test_the_structure_table(trend, rank_, want):
    kind, why = structure_for(Regime(trend, Volatility.NORMAL), rank_)
    assert kind is want
    assert why.startswith(f"{trend.value}/normal: ")
    if math.isnan(rank_):
        assert "unknown" in why
    if want is None:
        assert "no trade" in why


def test_a_structure_the_regime_does_not_allow_is_no_trade():
    kind, why = structure_for(Regime(Trend.UP, Volatility.HIGH), 80.0,
                              allowed=frozenset({K.IRON_CONDOR}))
    assert kind is None
    assert "not allowed in this regime" in why
    with pytest.raises(ValueError, match="debit_max_rank"):
        SelectorRules(credit_min_rank=20.0, debit_max_rank=30.0)


def test_expected_value_follows_implied_against_realised():
    chain = make_market().chain("SPY", MORNING, min_dte=20, max_dte=60)
    found, _ = candidates(chain, K.BULL_PUT_CREDIT, target_dte=35, min_dte=21, delta=0.25,
                          width=5.0, atm_iv=0.16, real_vol=0.16)
    c = found[0]
    T = chain.years_to_expiry(c.expiry)
    calm = expected_value(c.spread, c.limit, chain.spot, T, chain.rate, 0.08,
                          chain.dividend_yield)
    wild = expected_value(c.spread, c.limit, chain.spot, T, chain.rate, 0.40,
                          chain.dividend_yield)
    assert calm > 0 > wild  # a seller gains when less happens than was priced
    assert calm <= c.max_profit
    assert wild >= -c.max_loss


def test_candidates_on_a_known_chain_and_their_ranking():
    chain = make_market().chain("SPY", MORNING, min_dte=20, max_dte=60)
    for kind in K:
        found, failed = candidates(chain, kind, target_dte=35, min_dte=21,
                                   delta=0.5 if not kind.is_credit else 0.25, width=5.0,
                                   atm_iv=0.16, real_vol=0.14)
        assert found, failed
        for c in found:
            assert c.spread.kind is kind
            assert c.dte >= 21
            assert (c.limit > 0) == kind.is_credit
            assert 0 < c.pop < 1
            assert c.max_loss > 0
            assert c.ev_per_risk == pytest.approx(c.expected_value / c.max_loss)
            # The leg at the target delta: a short put or long put is negative, a call
            # positive (the iron condor reports its short put).
            on_puts = kind in (K.BULL_PUT_CREDIT, K.BEAR_PUT_DEBIT, K.IRON_CONDOR)
            assert (c.leg_delta < 0) == on_puts
        assert len({c.expiry for c in found}) == 2  # the two expiries nearest 35 DTE
        best, rejected = rank(found)
        assert best is not None
        assert all(best.ev_per_risk >= c.ev_per_risk for c, _ in rejected)
        assert len(rejected) == len(found) - 1
        assert all("behind the chosen" in why for _, why in rejected)
    best, rejected = rank(found, min_pop=0.99)
    assert best is None
    assert all("below the 99% minimum" in why for _, why in rejected)


def test_a_leg_the_chain_does_not_list_is_a_reason_not_a_crash():
    chain = make_market().chain("SPY", MORNING, min_dte=20, max_dte=60)
    found, failed = candidates(chain, K.BULL_PUT_CREDIT, target_dte=35, min_dte=21,
                               delta=0.25, width=2.5, atm_iv=0.16, real_vol=0.14)
    assert not found  # SPY lists 5-dollar strikes here
    assert failed
    assert all("wide leg" in why for _, why in failed)
