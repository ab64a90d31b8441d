"""Specifications of chain selection: expiry nearest a DTE, strike nearest a delta."""

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from thetadesk.chain import NEW_YORK, OptionChain, OptionQuote, expiry_instant
from thetadesk.errors import DataError
from thetadesk.models import Contract, Quote, Right
from thetadesk.pricing import bsm_greeks, bsm_price

AS_OF = datetime(2025, 11, 3, 10, 30, tzinfo=NEW_YORK)  # a Monday morning
SPOT, RATE, DIV, VOL = 450.0, 0.04, 0.013, 0.18
STRIKES = np.arange(380.0, 521.0, 5.0)


def _rows(expiry, vol=VOL, half_spread=0.02):
    T = (expiry_instant(expiry) - AS_OF) / timedelta(days=365)
    rows = []
    for right in Right:
        prices = bsm_price(SPOT, STRIKES, T, RATE, vol, DIV, right is Right.CALL)
        for strike, price in zip(STRIKES, prices, strict=True):
            bid = max(round(price - half_spread, 2), 0.0)
            quote = Quote(bid, max(round(price + half_spread, 2), bid))
            rows.append(OptionQuote(Contract("SPY", expiry, right, float(strike)), quote))
    return rows


def _chain(expiries, **kwargs):
    rows = [row for e in expiries for row in _rows(e)]
    return OptionChain("SPY", SPOT, AS_OF, rows, rate=RATE, dividend_yield=DIV, **kwargs)


EXPIRIES = [AS_OF.date() + timedelta(days=d) for d in (10, 31, 45, 59)]


def test_chain_dte_and_years_to_expiry_use_the_new_york_close():
    chain = _chain(EXPIRIES[:1])
    expiry = EXPIRIES[0]

    assert chain.dte(expiry) == 10
    # 10 days from 10:30 to 16:00 New York: 10 days + 5.5 hours.
    assert chain.years_to_expiry(expiry) == pytest.approx((10 + 5.5 / 24) / 365)


@pytest.mark.parametrize(
    ("target", "min_dte", "expected_dte"),
    [(45, 0, 45), (44, 0, 45), (38, 0, 31), (0, 0, 10), (100, 0, 59), (5, 21, 31)],
)
def test_chain_nearest_expiry_picks_closest_dte_ties_to_earlier(target, min_dte, expected_dte):
    chain = _chain(EXPIRIES)

    expiry = chain.nearest_expiry(target, min_dte=min_dte)

    assert chain.dte(expiry) == expected_dte


def test_chain_nearest_expiry_none_far_enough_raises_data_error():
    with pytest.raises(DataError, match="no expiry at least 90 days out"):
        _chain(EXPIRIES).nearest_expiry(45, min_dte=90)


@pytest.mark.parametrize(("right", "target"), [(Right.PUT, -0.30), (Right.PUT, 0.16),
                                              (Right.CALL, 0.30), (Right.CALL, 0.16)])
def test_chain_strike_by_delta_matches_model_delta_nearest_target(right, target):
    expiry = EXPIRIES[2]
    chain = _chain(EXPIRIES)
    T = chain.years_to_expiry(expiry)
    model = bsm_greeks(SPOT, STRIKES, T, RATE, VOL, DIV, right is Right.CALL).delta
    expected = STRIKES[np.argmin(np.abs(np.abs(model) - abs(target)))]

    row = chain.strike_by_delta(expiry, target, right)

    assert row.contract.right is right
    assert row.contract.strike == expected
    rows, deltas = chain.deltas(expiry, right)
    got = deltas[[r.contract.strike for r in rows].index(expected)]
    assert got == pytest.approx(model[STRIKES == expected][0], abs=2e-3)  # from the quoted mid


def test_chain_strike_by_delta_prefers_vendor_delta_when_supplied():
    expiry = EXPIRIES[0]
    contract = Contract("SPY", expiry, Right.PUT, 400.0)
    rows = [OptionQuote(contract, Quote(0.05, 0.07), delta=-0.30),
            OptionQuote(Contract("SPY", expiry, Right.PUT, 450.0), Quote(6.0, 6.2), delta=-0.5)]
    chain = OptionChain("SPY", SPOT, AS_OF, rows)

    assert chain.strike_by_delta(expiry, -0.30, Right.PUT).contract == contract


def test_chain_strike_by_delta_never_selects_one_sided_quotes():
    expiry = EXPIRIES[2]
    good = _rows(expiry)
    pick = _chain([expiry]).strike_by_delta(expiry, -0.30, Right.PUT).contract
    # Take the bid away from the contract that would have been picked: its mid means nothing.
    damaged = [
        OptionQuote(r.contract, Quote(0.0, r.quote.ask)) if r.contract == pick else r for r in good
    ]
    chain = OptionChain("SPY", SPOT, AS_OF, damaged, rate=RATE, dividend_yield=DIV)

    picked = chain.strike_by_delta(expiry, -0.30, Right.PUT)

    assert picked.contract != pick
    assert abs(picked.contract.strike - pick.strike) == 5.0  # the next best neighbour
    rows, deltas = chain.deltas(expiry, Right.PUT)
    assert np.isnan(deltas[[r.contract for r in rows].index(pick)])


def test_chain_without_any_usable_delta_raises_data_error():
    expiry = EXPIRIES[0]
    rows = [OptionQuote(Contract("SPY", expiry, Right.CALL, 460.0), Quote(0.0, 0.05))]
    chain = OptionChain("SPY", SPOT, AS_OF, rows)
    with pytest.raises(DataError, match="no contract with a usable delta"):
        chain.strike_by_delta(expiry, 0.3, Right.CALL)


def test_chain_drops_expired_contracts():
    expired = date(2025, 11, 3)  # expires today at 16:00; as_of is after the close
    after_close = datetime(2025, 11, 3, 16, 1, tzinfo=NEW_YORK)
    rows = [OptionQuote(Contract("SPY", expired, Right.PUT, 440.0), Quote(1.0, 1.1))]
    assert OptionChain("SPY", SPOT, after_close, rows).expiries() == []
    assert OptionChain("SPY", SPOT, AS_OF, rows).expiries() == [expired]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"as_of": datetime(2025, 11, 3, 10, 30)}, "timezone-aware"),  # noqa: DTZ001
        ({"spot": float("nan")}, "spot"),
        ({"spot": -1.0}, "spot"),
        ({"rate": float("inf")}, "rate"),
        ({"underlying": "QQQ"}, "another underlying"),
    ],
)
def test_chain_bad_inputs_raise_data_error(kwargs, match):
    args = {"underlying": "SPY", "spot": SPOT, "as_of": AS_OF.astimezone(UTC),
            "rows": _rows(EXPIRIES[0])[:2]}
    with pytest.raises(DataError, match=match):
        OptionChain(**{**args, **kwargs})


def test_chain_target_delta_out_of_range_raises_data_error():
    chain = _chain(EXPIRIES[:1])
    with pytest.raises(DataError, match="target delta"):
        chain.strike_by_delta(EXPIRIES[0], 1.2, Right.CALL)
