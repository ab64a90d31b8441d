"""Specifications of the VIX option rules (``thetadesk.vix``): Cboe's expiry rule with its
holiday cases, the strike grid and ticks, the mean-reverting forward, the vol of vol, put-call
parity, and the AM expiry instant."""

from datetime import UTC, date, datetime

import numpy as np
import pytest

from thetadesk.adapters.sim_market import _nyse_sessions
from thetadesk.chain import NEW_YORK, expiry_instant
from thetadesk.vix import (
    KAPPA,
    atm_vol,
    forward,
    forward_shock,
    forward_symbol,
    forward_symbol_expiry,
    is_forward_symbol,
    parity_forward,
    strike_grid,
    tick,
    vix_expiries,
    vix_expiry,
)

SESSIONS = _nyse_sessions(date(2023, 1, 1), date(2027, 12, 31)).session_set


def is_session(d):
    return d in SESSIONS


@pytest.mark.parametrize(("year", "month", "expiry"), [
    (2025, 1, date(2025, 1, 22)),  # 30 days before Friday 2025-02-21
    (2025, 2, date(2025, 2, 19)),
    (2025, 3, date(2025, 3, 18)),  # Good Friday 2025-04-18: 30 days before Thursday the 17th
    (2024, 6, date(2024, 6, 18)),  # 2024-06-19 is Juneteenth: the session before
    (2024, 12, date(2024, 12, 18)),  # December: the third Friday of next year's January
])
def test_vix_expiry_wednesday_30_days_before_next_third_friday_with_holidays(year, month,
                                                                              expiry):
    assert vix_expiry(year, month, is_session) == expiry


def test_vix_expiries_lists_the_next_six_monthlies_from_today():
    listed = vix_expiries(date(2025, 1, 23), is_session)
    assert listed == (date(2025, 2, 19), date(2025, 3, 18), date(2025, 4, 16),
                      date(2025, 5, 21), date(2025, 6, 18), date(2025, 7, 16))
    assert vix_expiries(date(2025, 1, 22), is_session)[0] == date(2025, 1, 22)  # on the day


def test_expiry_instant_vix_is_the_opening_etf_options_the_close():
    assert expiry_instant(date(2025, 2, 19), "VIX") == datetime(2025, 2, 19, 9, 30,
                                                                tzinfo=NEW_YORK)
    assert expiry_instant(date(2025, 2, 19), "SPY") == datetime(2025, 2, 19, 16, 0,
                                                                tzinfo=NEW_YORK)
    assert expiry_instant(date(2025, 2, 19)) == expiry_instant(date(2025, 2, 19), "SPY")


def test_strike_grid_steps_by_cboe_intervals():
    assert strike_grid(13.0, 17.0) == [13.0, 13.5, 14.0, 14.5, 15.0, 16.0, 17.0]
    assert strike_grid(28.0, 56.0) == [28.0, 29.0, 30.0, 32.5, 35.0, 37.5, 40.0, 42.5, 45.0,
                                       47.5, 50.0, 55.0]


def test_tick_is_five_cents_below_three_dollars_ten_cents_above():
    assert tick(np.array([0.4, 2.99, 3.0, 12.0])).tolist() == [0.05, 0.05, 0.10, 0.10]


def test_forward_reverts_from_spot_to_the_long_run_with_maturity():
    years = np.array([0.0, 30 / 365, 1.0, 10.0])
    calm = forward(15.0, 20.0, years)  # contango
    stressed = forward(40.0, 20.0, years)  # backwardation
    assert calm[0] == pytest.approx(15.0)
    assert stressed[0] == pytest.approx(40.0)
    assert np.all(np.diff(calm) > 0)
    assert np.all(np.diff(stressed) < 0)
    assert calm[-1] == pytest.approx(20.0, abs=1e-6)
    assert calm[1] == pytest.approx(20.0 - 5.0 * np.exp(-KAPPA * 30 / 365))


def test_atm_vol_is_vvix_like_and_falls_with_maturity_rises_with_the_vix():
    at_rest = float(atm_vol(20.0, 20.0, 30 / 365))
    assert at_rest == pytest.approx(0.90)
    assert float(atm_vol(20.0, 20.0, 180 / 365)) < 0.5 < at_rest
    assert float(atm_vol(60.0, 20.0, 30 / 365)) > at_rest > float(atm_vol(12.0, 20.0, 30 / 365))


def test_parity_forward_recovers_the_forward_of_black_prices():
    from thetadesk.pricing import bsm_greeks

    F, K, T, r = 22.0, 25.0, 50 / 365, 0.04
    call = float(bsm_greeks(F, K, T, r, 0.9, r, True).price)
    put = float(bsm_greeks(F, K, T, r, 0.9, r, False).price)
    assert parity_forward(call, put, K, r, T) == pytest.approx(F)


def test_forward_symbol_round_trips_and_damps_the_vix_shock():
    name = forward_symbol("VIX", date(2025, 3, 18))
    assert name == "VIX.250318"
    assert is_forward_symbol(name)
    assert not is_forward_symbol("SPY")
    assert not is_forward_symbol("VIX")
    assert forward_symbol_expiry(name) == date(2025, 3, 18)
    near = forward_shock(1.0, name, datetime(2025, 3, 17, 20, 0, tzinfo=UTC))
    far = forward_shock(1.0, name, datetime(2025, 1, 17, 20, 0, tzinfo=UTC))
    assert 0.95 < near <= 1.0
    assert 0.3 < far < 0.5
