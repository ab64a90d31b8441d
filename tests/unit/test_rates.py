from datetime import date

import pytest

from thetadesk.errors import DataError
from thetadesk.rates import TBILL_3M, TBILL_3M_LAST, CashInterest, tbill_3m


def test_tbill_3m_reads_the_year_of_the_day():
    assert tbill_3m(date(2014, 6, 2)) == pytest.approx(0.0003)
    # 2007's twelve TB3MS months average 4.3533: 4.35 (the table once said 4.36)
    assert tbill_3m(date(2007, 1, 2)) == pytest.approx(0.0435)


def test_tbill_3m_table_matches_the_checked_annual_means():
    # Recomputed from the monthly H.15 TB3MS series (see the module docstring).
    assert {y: TBILL_3M[y] for y in (2001, 2002, 2021, 2023, 2024)} == pytest.approx(
        {2001: 0.0339, 2002: 0.0160, 2021: 0.0004, 2023: 0.0507, 2024: 0.0497})


def test_tbill_3m_after_the_table_carries_the_last_year_forward():
    assert tbill_3m(date(TBILL_3M_LAST + 3, 1, 5)) == tbill_3m(date(TBILL_3M_LAST, 12, 31))


def test_tbill_3m_before_the_table_is_refused():
    with pytest.raises(ValueError, match="no 3-month T-bill rate before"):
        tbill_3m(date(1990, 1, 2))


def test_cash_interest_fixed_rate_daily_is_the_rate_less_spread_over_the_day_count():
    assert CashInterest(0.05, 0.01).daily(date(2025, 3, 3)) == pytest.approx(0.04 / 360)
    assert CashInterest(0.05, day_count=365).daily(date(2025, 3, 3)) == pytest.approx(0.05 / 365)
    assert CashInterest(0.01, 0.02).annual(date(2025, 3, 3)) == 0.0  # floored at 0


def test_cash_interest_tbill_rate_follows_the_year():
    ci = CashInterest("tbill_3m")
    assert ci.annual(date(2023, 7, 1)) == pytest.approx(0.0507)
    assert ci.annual(date(2009, 7, 1)) == pytest.approx(0.0015)


def test_cash_interest_accrue_compounds_daily_on_a_positive_balance_only():
    ci = CashInterest(0.036)
    assert ci.accrue(100_000.0, date(2025, 3, 3), date(2025, 3, 3)) == pytest.approx(10.0)
    assert ci.accrue(100_000.0, date(2025, 3, 1), date(2025, 3, 3)) == pytest.approx(
        100_000.0 * ((1 + 0.0001) ** 3 - 1))
    assert ci.accrue(-500.0, date(2025, 3, 1), date(2025, 3, 3)) == 0.0
    assert ci.accrue(100.0, date(2025, 3, 3), date(2025, 3, 2)) == 0.0


def test_cash_interest_pays_only_above_the_spread():
    assert CashInterest("tbill_3m", 0.05).pays
    assert CashInterest(0.04).pays
    assert not CashInterest(0.0).pays
    assert not CashInterest(0.01, 0.01).pays


@pytest.mark.parametrize("kwargs", [{"rate": "fed_funds"}, {"rate": 4.0}, {"rate": -0.01},
                                    {"rate": True}, {"rate": float("nan")}, {"spread": 0.06},
                                    {"spread": -0.001}, {"day_count": 364},
                                    {"day_count": True}])
def test_cash_interest_bad_values_raise_data_error(kwargs):
    with pytest.raises(DataError, match="CashInterest"):
        CashInterest(**{"rate": 0.04, **kwargs})


def test_cash_interest_grow_is_the_same_whether_days_are_credited_one_by_one_or_together():
    ci = CashInterest("tbill_3m", 0.0013)
    together = ci.grow(123_456.789, date(2024, 12, 27), date(2025, 1, 6))
    one_by_one = 123_456.789
    for day in range(27, 32):
        one_by_one = ci.grow(one_by_one, date(2024, 12, day), date(2024, 12, day))
    for day in range(1, 7):
        one_by_one = ci.grow(one_by_one, date(2025, 1, day), date(2025, 1, day))
    assert together == one_by_one  # to the last bit
    assert together > 123_456.789
