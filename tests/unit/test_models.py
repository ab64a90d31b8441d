"""Specifications of the shared value types: OCC contracts, quotes, legs and Greeks."""

from datetime import UTC, date, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from thetadesk.errors import DataError
from thetadesk.models import Contract, Greeks, Leg, Quote, Right


def test_contract_from_occ_compact_parses_every_field():
    c = Contract.from_occ("SPY251219P00450000")
    assert (c.underlying, c.expiry, c.right, c.strike, c.multiplier) == (
        "SPY", date(2025, 12, 19), Right.PUT, 450.0, 100,
    )
    assert not c.is_call


def test_contract_from_occ_padded_root_equals_compact():
    padded = Contract.from_occ("SPY   251219P00450000")
    assert padded == Contract.from_occ("SPY251219P00450000")
    assert padded.occ_padded == "SPY   251219P00450000"
    assert len(padded.occ_padded) == 21


def test_contract_from_occ_fractional_strike_and_digit_root():
    c = Contract.from_occ("AAPL1260116C00152500")
    assert (c.underlying, c.strike, c.right) == ("AAPL1", 152.5, Right.CALL)
    assert c.occ == "AAPL1260116C00152500"


@pytest.mark.parametrize(
    ("symbol", "reason"),
    [
        ("SPY251219X00450000", "malformed"),  # right must be C or P
        ("SPY251219P0045000", "malformed"),  # 7-digit strike
        ("SPY251319P00450000", "invalid date"),  # month 13
        ("SPY250230P00450000", "invalid date"),  # February 30th
        ("SPY251219P00000000", "zero strike"),
        ("TOOLONGX251219P00450000", "malformed"),  # root longer than 6
        ("spy251219P00450000", "malformed"),  # lower case
        ("SPY  251219P00450000", "malformed"),  # padded but not 21 characters
        ("", "malformed"),
    ],
)
def test_contract_from_occ_malformed_raises_data_error_naming_the_problem(symbol, reason):
    with pytest.raises(DataError, match=reason):
        Contract.from_occ(symbol)


def test_contract_from_occ_non_string_raises_data_error():
    with pytest.raises(DataError, match="must be a string"):
        Contract.from_occ(None)


@given(
    root=st.from_regex(r"\A[A-Z][A-Z0-9]{0,5}\Z"),
    expiry=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
    right=st.sampled_from(list(Right)),
    milli=st.integers(min_value=1, max_value=99_999_999),
)
def test_contract_occ_round_trip_any_valid_contract(root, expiry, right, milli):
    c = Contract(root, expiry, right, milli / 1000)
    assert Contract.from_occ(c.occ) == c
    assert Contract.from_occ(c.occ_padded) == c
    assert str(c) == c.occ


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strike": 0.0}, "strike"),
        ({"strike": -5.0}, "strike"),
        ({"strike": float("nan")}, "strike"),
        ({"strike": 450.0001}, "multiple of 0.001"),
        ({"right": "X"}, "right"),
        ({"underlying": "spy"}, "root"),
        ({"expiry": datetime(2025, 12, 19, tzinfo=UTC)}, "date"),
        ({"multiplier": 0}, "multiplier"),
    ],
)
def test_contract_invalid_fields_raise_data_error(kwargs, match):
    fields = {"underlying": "SPY", "expiry": date(2025, 12, 19), "right": "P", "strike": 450.0}
    with pytest.raises(DataError, match=match):
        Contract(**{**fields, **kwargs})


def test_contract_right_given_as_letter_is_normalised_to_enum():
    assert Contract("SPY", date(2025, 12, 19), "C", 450).right is Right.CALL


def test_quote_mid_and_spread():
    q = Quote(bid=1.10, ask=1.30, bid_size=5, ask_size=7)
    assert q.mid == pytest.approx(1.20)
    assert q.spread == pytest.approx(0.20)


@pytest.mark.parametrize(
    ("bid", "ask", "match"),
    [
        (1.3, 1.1, "crossed"),
        (float("nan"), 1.0, "bid"),
        (1.0, float("inf"), "ask"),
        (-0.05, 1.0, "bid"),
    ],
)
def test_quote_bad_values_raise_data_error(bid, ask, match):
    with pytest.raises(DataError, match=match):
        Quote(bid=bid, ask=ask)


def test_quote_naive_timestamp_raises_data_error():
    with pytest.raises(DataError, match="timezone-aware"):
        Quote(1.0, 1.1, ts=datetime(2025, 1, 2, 15, 0))  # noqa: DTZ001 - the point of the test


def test_leg_zero_ratio_raises_data_error():
    c = Contract.from_occ("SPY251219P00450000")
    with pytest.raises(DataError, match="ratio"):
        Leg(c, 0)
    assert Leg(c, -1).is_long is False


def test_greeks_sum_of_scaled_positions_is_the_portfolio():
    short_put = Greeks(delta=0.30, gamma=0.02, vega=0.5, theta=-7.3, rho=0.1)
    long_put = Greeks(delta=0.20, gamma=0.015, vega=0.4, theta=-5.0, rho=0.07)
    book = [(-2, short_put), (2, long_put)]

    total = sum(qty * g for qty, g in book)

    assert total == Greeks(*(2 * (b - a) for a, b in zip(
        (0.30, 0.02, 0.5, -7.3, 0.1), (0.20, 0.015, 0.4, -5.0, 0.07), strict=True)))
    assert total.delta == pytest.approx(-0.2)


def test_greeks_arithmetic_with_numpy_scalars_and_subtraction():
    g = Greeks(1.0, 2.0, 3.0, 4.0, 5.0)
    assert np.float64(2.0) * g == Greeks(2.0, 4.0, 6.0, 8.0, 10.0)
    assert g * np.int64(3) == Greeks(3.0, 6.0, 9.0, 12.0, 15.0)
    assert g - g == Greeks.zero()
    assert -g + g == Greeks.zero()


def test_greeks_refuses_non_numeric_operands():
    g = Greeks(1.0)
    with pytest.raises(TypeError):
        g * "2"
    with pytest.raises(TypeError):
        g + 1.5
