"""Specifications of the VIX-style index computed from an option chain (Cboe method)."""

import math
import re
from datetime import date, datetime

import numpy as np
import pytest

from thetadesk.chain import NEW_YORK, OptionChain, OptionQuote, expiry_instant
from thetadesk.errors import DataError
from thetadesk.models import Contract, Quote, Right
from thetadesk.pricing import bsm_price
from thetadesk.volatility_index import term_variance, volatility_index

NOW = datetime(2016, 3, 1, 10, 0, tzinfo=NEW_YORK)
NEAR, NEXT = date(2016, 3, 24), date(2016, 4, 8)  # 23 and 38 days out
SPOT, RATE = 100.0, 0.02


STRIKES = np.arange(40.0, 161.0, 1.0)


def chain(vol=lambda k: 0.20, strikes=STRIKES, expiries=(NEAR, NEXT), bid=None):
    rows = []
    for expiry in expiries:
        T = (expiry_instant(expiry) - NOW).total_seconds() / (365 * 86400)
        for right in (Right.PUT, Right.CALL):
            for k in strikes:
                price = float(bsm_price(SPOT, k, T, RATE, vol(k), 0.0, right is Right.CALL))
                b = price if bid is None else bid(k, right, price)
                rows.append(OptionQuote(Contract("SPY", expiry, right, float(k)),
                                        Quote(b, max(price, b), 10, 10, NOW)))
    return OptionChain("SPY", SPOT, NOW, rows, rate=RATE)


def test_a_flat_smile_gives_back_its_volatility():
    # $1 strikes at 100: the white paper's discretisation adds about 0.05 points
    assert volatility_index(chain()) == pytest.approx(20.0, abs=0.1)


def test_a_put_skew_puts_the_index_above_the_at_the_money_volatility():
    # the same 20% at the money: the dearer puts raise the variance-swap level
    skewed = chain(vol=lambda k: 0.20 * (1.0 - 1.5 * math.log(k / SPOT)))
    assert volatility_index(skewed) > volatility_index(chain()) + 0.2


def test_strikes_beyond_two_zero_bids_are_left_out():
    # Absurd prices far out (both rights, so put-call parity still finds the forward), behind
    # two zero bids on each side, do not count; without the zero bids they would.
    def absurd(k, price):
        return price + 5.0 if k < 60.0 or k > 141.0 else price

    def bid(k, right, price):
        return 0.0 if k in (60.0, 61.0, 140.0, 141.0) else absurd(k, price)

    assert volatility_index(chain(bid=bid)) == pytest.approx(20.0, abs=0.1)
    assert volatility_index(chain(bid=lambda k, right, p: absurd(k, p))) > 40.0


def test_term_variance_of_one_expiry_is_the_flat_variance():
    strikes = np.arange(40.0, 161.0, 1.0)
    T = 30 / 365
    put = bsm_price(SPOT, strikes, T, RATE, 0.25, 0.0, False)
    call = bsm_price(SPOT, strikes, T, RATE, 0.25, 0.0, True)
    assert term_variance(strikes, put, put, call, call, T, RATE) == pytest.approx(0.0625,
                                                                                  rel=5e-3)


def test_a_chain_without_expiries_either_side_of_30_days_raises_data_error():
    with pytest.raises(DataError, match="no expiries either side of 30 days"):
        volatility_index(chain(expiries=(NEAR,)))
    with pytest.raises(DataError, match=re.escape("days must be a whole number in [1, 365]")):
        volatility_index(chain(), days=0)
    with pytest.raises(DataError, match="at least 3 strikes"):
        term_variance(np.array([100.0]), *([np.array([1.0])] * 4), 0.1, RATE)
