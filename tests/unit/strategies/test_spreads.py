"""Specifications of the spread structures against hand-computed numbers.

Money amounts are dollars per spread (multiplier 100); premiums are per share, > 0 a credit.
"""

import math
from datetime import date

import numpy as np
import pytest
from scipy.stats import norm

from thetadesk.errors import DataError
from thetadesk.models import Contract, Quote
from thetadesk.strategies.spreads import (
    SpreadKind,
    bear_call_credit,
    bear_put_debit,
    bull_call_debit,
    bull_put_credit,
    iron_condor,
)

EXPIRY = date(2025, 12, 19)


def put(strike):
    return Contract("SPY", EXPIRY, "P", strike)


def call(strike):
    return Contract("SPY", EXPIRY, "C", strike)


QUOTES = {
    put(440): Quote(0.90, 1.00),
    put(445): Quote(1.40, 1.50),
    put(450): Quote(4.00, 4.20),
    call(450): Quote(5.00, 5.20),
    call(455): Quote(2.80, 3.00),
    call(460): Quote(1.50, 1.60),
    call(465): Quote(0.70, 0.80),
    call(470): Quote(0.40, 0.50),
}
BULL_PUT_QUOTES = {put(450): Quote(2.00, 2.10), put(445): Quote(1.20, 1.30)}
BEAR_PUT_QUOTES = {put(450): Quote(4.00, 4.20), put(445): Quote(2.40, 2.60)}


def test_bull_put_credit_prices_risk_and_breakeven():
    spread = bull_put_credit(short_put=put(450), long_put=put(445))

    mid = spread.net_premium(BULL_PUT_QUOTES, at="mid")
    natural = spread.net_premium(BULL_PUT_QUOTES, at="natural")

    assert spread.kind is SpreadKind.BULL_PUT_CREDIT
    assert spread.kind.is_credit
    assert [(leg.contract.strike, leg.ratio) for leg in spread.legs] == [(450, -1), (445, 1)]
    assert mid == pytest.approx(0.80)  # 2.05 - 1.25
    assert natural == pytest.approx(0.70)  # sell at 2.00, buy at 1.30
    assert spread.max_profit(0.80) == pytest.approx(80.0)
    assert spread.max_loss(0.80) == pytest.approx(420.0)  # (5 - 0.80) x 100
    assert spread.breakevens(0.80) == pytest.approx((449.20,))
    assert spread.margin() == pytest.approx(500.0)
    assert spread.buying_power_reduction(0.80) == pytest.approx(420.0)


def test_bull_put_credit_payoff_table():
    spread = bull_put_credit(put(450), put(445))
    prices = np.array([400.0, 445.0, 447.0, 449.2, 450.0, 460.0])

    payoff = spread.payoff_at_expiry(prices, 0.80)

    np.testing.assert_allclose(payoff, [-420, -420, -220, 0, 80, 80], atol=1e-9)


def test_bear_call_credit_prices_risk_and_breakeven():
    spread = bear_call_credit(short_call=call(460), long_call=call(465))

    assert spread.net_premium(QUOTES) == pytest.approx(0.80)  # 1.55 - 0.75
    assert spread.net_premium(QUOTES, at="natural") == pytest.approx(0.70)  # 1.50 - 0.80
    assert spread.max_profit(0.80) == pytest.approx(80.0)
    assert spread.max_loss(0.80) == pytest.approx(420.0)
    assert spread.breakevens(0.80) == pytest.approx((460.80,))
    assert spread.margin() == pytest.approx(500.0)
    np.testing.assert_allclose(
        spread.payoff_at_expiry([450, 460, 462, 465, 500], 0.80), [80, 80, -120, -420, -420],
        atol=1e-9,
    )


def test_iron_condor_unequal_wings_risk_is_the_wider_side():
    spread = iron_condor(put(440), put(445), call(460), call(470))

    credit = spread.net_premium(QUOTES)

    assert credit == pytest.approx(1.60)  # 1.45 + 1.55 - 0.95 - 0.45
    assert spread.net_premium(QUOTES, at="natural") == pytest.approx(1.40)
    assert spread.max_profit(credit) == pytest.approx(160.0)
    assert spread.max_loss(credit) == pytest.approx(840.0)  # (10 - 1.60) x 100
    assert spread.breakevens(credit) == pytest.approx((443.40, 461.60))
    assert spread.margin() == pytest.approx(1000.0)  # only one side can finish in the money
    assert spread.buying_power_reduction(credit) == pytest.approx(840.0)
    np.testing.assert_allclose(
        spread.payoff_at_expiry([430, 443.4, 450, 461.6, 465, 480], credit),
        [-340, 0, 160, 0, -340, -840],
        atol=1e-9,
    )


def test_bull_call_debit_prices_risk_and_breakeven():
    spread = bull_call_debit(long_call=call(450), short_call=call(455))

    premium = spread.net_premium(QUOTES)

    assert not spread.kind.is_credit
    assert premium == pytest.approx(-2.20)  # pay 5.10, receive 2.90
    assert spread.net_premium(QUOTES, at="natural") == pytest.approx(-2.40)
    assert spread.max_profit(premium) == pytest.approx(280.0)
    assert spread.max_loss(premium) == pytest.approx(220.0)
    assert spread.breakevens(premium) == pytest.approx((452.20,))
    assert spread.margin() == 0.0  # paid in full
    assert spread.buying_power_reduction(premium) == pytest.approx(220.0)
    np.testing.assert_allclose(
        spread.payoff_at_expiry([440, 450, 452.2, 455, 470], premium), [-220, -220, 0, 280, 280],
        atol=1e-9,
    )


def test_bear_put_debit_prices_risk_and_breakeven():
    spread = bear_put_debit(long_put=put(450), short_put=put(445))

    premium = spread.net_premium(BEAR_PUT_QUOTES)

    assert premium == pytest.approx(-1.60)  # pay 4.10, receive 2.50
    assert spread.net_premium(BEAR_PUT_QUOTES, at="natural") == pytest.approx(-1.80)
    assert spread.max_profit(premium) == pytest.approx(340.0)
    assert spread.max_loss(premium) == pytest.approx(160.0)
    assert spread.breakevens(premium) == pytest.approx((448.40,))
    assert spread.margin() == 0.0
    np.testing.assert_allclose(
        spread.payoff_at_expiry([430, 445, 448.4, 450, 470], premium), [340, 340, 0, -160, -160],
        atol=1e-9,
    )


def test_net_premium_missing_leg_quote_raises_data_error():
    spread = bull_put_credit(put(450), put(445))
    with pytest.raises(DataError, match="no quote for leg SPY251219P00445000"):
        spread.net_premium({put(450): Quote(2.0, 2.1)})


def _pop_closed_form(spot, T, r, sigma, q, lo, hi):
    def above(a):
        d2 = (math.log(spot / a) + (r - q - 0.5 * sigma**2) * T) / (sigma * math.sqrt(T))
        return norm.cdf(d2)

    return above(lo) - (0.0 if math.isinf(hi) else above(hi))


def test_probability_of_profit_bull_put_is_probability_above_breakeven():
    spread = bull_put_credit(put(450), put(445))

    pop = spread.probability_of_profit(spot=455.0, T=30 / 365, r=0.04, sigma=0.18, premium=0.80,
                                       q=0.013)

    expected = _pop_closed_form(455.0, 30 / 365, 0.04, 0.18, 0.013, 449.20, math.inf)
    assert pop == pytest.approx(expected, abs=1e-12)


def test_probability_of_profit_iron_condor_matches_lognormal_monte_carlo():
    spread = iron_condor(put(440), put(445), call(460), call(470))
    spot, T, r, q, sigma, credit = 452.0, 45 / 365, 0.04, 0.013, 0.16, 1.60
    rng = np.random.default_rng(7)
    z = rng.standard_normal(2_000_000)
    s_t = spot * np.exp((r - q - 0.5 * sigma**2) * T + sigma * math.sqrt(T) * z)

    pop = spread.probability_of_profit(spot, T, r, sigma, credit, q)

    assert pop == pytest.approx(_pop_closed_form(spot, T, r, sigma, q, 443.40, 461.60), abs=1e-12)
    assert pop == pytest.approx(np.mean(spread.payoff_at_expiry(s_t, credit) > 0), abs=2e-3)


def test_probability_of_profit_debit_spread_and_bad_inputs():
    spread = bull_call_debit(call(450), call(455))
    pop = spread.probability_of_profit(450.0, 0.1, 0.03, 0.2, premium=-2.20)
    assert pop == pytest.approx(_pop_closed_form(450.0, 0.1, 0.03, 0.2, 0.0, 452.2, math.inf))
    with pytest.raises(DataError, match="sigma > 0"):
        spread.probability_of_profit(450.0, 0.1, 0.03, float("nan"), premium=-2.20)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: bull_put_credit(put(445), put(450)), "long put < short put"),
        (lambda: bull_put_credit(call(450), put(445)), "short_put must be a put"),
        (lambda: bear_call_credit(call(465), call(460)), "short call < long call"),
        (lambda: bull_call_debit(call(455), call(450)), "long call < short call"),
        (lambda: bear_put_debit(put(445), put(450)), "short put < long put"),
        (lambda: iron_condor(put(445), put(440), call(460), call(470)), "long put < short put"),
        (lambda: iron_condor(put(440), put(462), call(460), call(470)), "<= short call"),
        (
            lambda: bull_put_credit(put(450), Contract("SPY", date(2026, 1, 16), "P", 445)),
            "share underlying, expiry",
        ),
        (lambda: bull_put_credit(put(450), Contract("QQQ", EXPIRY, "P", 445)), "share underlying"),
    ],
)
def test_builders_reject_legs_that_do_not_form_the_structure(build, match):
    with pytest.raises(DataError, match=match):
        build()
