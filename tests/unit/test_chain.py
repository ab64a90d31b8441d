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


# -- columnar chains -------------------------------------------------------------------------


def _columns(rows, *, delta=True, oi=False):
    """The rows as from_columns arguments (sides in ascending strike order)."""
    contracts = [r.contract for r in rows]
    sides: dict = {}
    for i, c in enumerate(contracts):
        sides.setdefault((c.expiry, c.right), []).append(i)
    n = len(rows)
    return {
        "contracts": contracts, "sides": sides,
        "bid": np.array([r.quote.bid for r in rows]),
        "ask": np.array([r.quote.ask for r in rows]),
        "bid_size": np.arange(n) % 7, "ask_size": np.arange(n) % 5 + 1, "ts": AS_OF,
        "delta": (np.array([np.nan if r.delta is None else r.delta for r in rows])
                  if delta else None),
        "iv": None,
        "open_interest": np.arange(n) * 10 if oi else None,
    }


def _both(expiries, vendor_delta: bool):
    rows = [row for e in expiries for row in _rows(e)]
    if vendor_delta:
        rows = [OptionQuote(r.contract, r.quote, delta=(0.4 if r.contract.is_call else -0.4)
                            * (i % 3) / 2) for i, r in enumerate(rows)]
    cols = _columns(rows)
    sizes = zip(cols["bid_size"].tolist(), cols["ask_size"].tolist(), strict=True)
    rows = [OptionQuote(r.contract, Quote(r.quote.bid, r.quote.ask, int(b), int(a), AS_OF),
                        delta=r.delta) for r, (b, a) in zip(rows, sizes, strict=True)]
    by_rows = OptionChain("SPY", SPOT, AS_OF, rows, rate=RATE, dividend_yield=DIV)
    by_cols = OptionChain.from_columns("SPY", SPOT, AS_OF, rate=RATE, dividend_yield=DIV,
                                       **cols)
    return by_rows, by_cols


@pytest.mark.parametrize("vendor_delta", [False, True])
def test_a_columnar_chain_answers_exactly_as_the_same_rows(vendor_delta):
    by_rows, by_cols = _both(EXPIRIES, vendor_delta)
    assert len(by_cols) == len(by_rows) == 2 * len(STRIKES) * len(EXPIRIES)
    assert by_cols.expiries() == by_rows.expiries()
    assert by_cols.nearest_expiry(38, 21) == by_rows.nearest_expiry(38, 21)
    for expiry in EXPIRIES:
        assert by_cols.rows(expiry) == by_rows.rows(expiry)
        for right in Right:
            assert by_cols.rows(expiry, right) == by_rows.rows(expiry, right)
            a, b = by_cols.deltas(expiry, right), by_rows.deltas(expiry, right)
            assert a[0] == b[0]
            np.testing.assert_array_equal(a[1], b[1])
            for target in (0.1, 0.25, 0.4):
                assert (by_cols.strike_by_delta(expiry, target, right)
                        == by_rows.strike_by_delta(expiry, target, right))
            for price in (401.0, 450.0, 452.5, 999.0):
                assert by_cols.nearest(expiry, right, price) == by_rows.nearest(expiry, right,
                                                                                 price)
            assert by_cols.find(expiry, right, 455.0) == by_rows.find(expiry, right, 455.0)
            assert by_cols.find(expiry, right, 456.0) is None
            assert by_rows.find(expiry, right, 456.0) is None


def test_nearest_breaks_ties_to_the_lower_strike():
    _, chain = _both(EXPIRIES[:1], vendor_delta=False)
    assert chain.nearest(EXPIRIES[0], Right.PUT, 452.5).contract.strike == 450.0


def test_a_columnar_chain_makes_rows_only_for_what_is_read():
    _, chain = _both(EXPIRIES, vendor_delta=False)
    expiry = chain.nearest_expiry(31)
    chain.strike_by_delta(expiry, -0.3, Right.PUT)
    made = [row for side in chain._made.values() for row in side if row is not None]
    assert len(made) == 1
    assert chain.find(expiry, Right.PUT, 450.0).quote.bid_size >= 0
    assert sum(row is not None for side in chain._made.values() for row in side) == 2


def test_a_columnar_chain_carries_open_interest_and_drops_expired_expiries():
    expired = date(2025, 11, 3)
    rows = [OptionQuote(Contract("SPY", expired, Right.PUT, 440.0), Quote(1.0, 1.1)),
            OptionQuote(Contract("SPY", EXPIRIES[0], Right.PUT, 440.0), Quote(1.0, 1.1))]
    after_close = datetime(2025, 11, 3, 16, 1, tzinfo=NEW_YORK)
    chain = OptionChain.from_columns("SPY", SPOT, after_close, **{
        **_columns(rows, oi=True), "ts": after_close})
    assert chain.expiries() == [EXPIRIES[0]]
    assert len(chain) == 1
    assert chain.rows(EXPIRIES[0])[0].open_interest == 10


@pytest.mark.parametrize(("change", "match"), [
    ({"bid": [1.2, 1.0]}, "crossed quote: bid 1.2 > ask 1.1"),
    ({"bid": [float("nan"), 1.0]}, "quote bid must be a finite number"),
    ({"ask": [1.1, -1.0], "bid": [1.0, -2.0]}, "quote bid must be a finite number >= 0"),
    ({"bid_size": [1.5, 2.0]}, "bid_size must be whole numbers"),
    ({"ask_size": [-1, 2]}, "ask_size must be >= 0"),
    ({"ask": [1.1]}, "ask has 1 values for 2 contracts"),
])
def test_a_columnar_chain_rejects_bad_columns(change, match):
    rows = [OptionQuote(Contract("SPY", EXPIRIES[0], Right.PUT, k), Quote(1.0, 1.1))
            for k in (440.0, 445.0)]
    cols = _columns(rows)
    cols.update({k: np.array(v) for k, v in change.items()})
    with pytest.raises(DataError, match=match):
        OptionChain.from_columns("SPY", SPOT, AS_OF, **cols)


def test_a_columnar_chain_refuses_a_contract_of_another_underlying_when_read():
    rows = [OptionQuote(Contract("QQQ", EXPIRIES[0], Right.PUT, 440.0), Quote(1.0, 1.1))]
    chain = OptionChain.from_columns("SPY", SPOT, AS_OF, **_columns(rows))
    with pytest.raises(DataError, match=r"QQQ\S* is on another underlying"):
        chain.rows(EXPIRIES[0], Right.PUT)
    with pytest.raises(DataError, match="is on another underlying"):
        chain.strike_by_delta(EXPIRIES[0], -0.3, Right.PUT)
