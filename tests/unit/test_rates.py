from datetime import date

import pytest

from thetadesk.rates import TBILL_3M_LAST, tbill_3m


def test_tbill_3m_reads_the_year_of_the_day():
    assert tbill_3m(date(2014, 6, 2)) == pytest.approx(0.0003)
    assert tbill_3m(date(2007, 1, 2)) == pytest.approx(0.0436)


def test_tbill_3m_after_the_table_carries_the_last_year_forward():
    assert tbill_3m(date(TBILL_3M_LAST + 3, 1, 5)) == tbill_3m(date(TBILL_3M_LAST, 12, 31))


def test_tbill_3m_before_the_table_is_refused():
    with pytest.raises(ValueError, match="no 3-month T-bill rate before"):
        tbill_3m(date(1990, 1, 2))
