"""Scheduled shocks in the simulated market: a crash scenario on a chosen session."""

import pickle
from datetime import date, datetime

import pytest

from thetadesk.adapters.sim_market import SimMarket, SimShock, SimSymbol
from thetadesk.chain import NEW_YORK
from thetadesk.errors import DataError

START = date(2025, 1, 2)
SYMBOLS = {
    "SPY": SimSymbol(spot=450.0, vol=0.18, dividend_yield=0.013, strike_step=5.0),
    "QQQ": SimSymbol(spot=380.0, vol=0.22, dividend_yield=0.006, strike_step=5.0),
}
SHOCK_DAY = date(2025, 3, 3)  # a Monday; the session before is Friday 2025-02-28


def ny(*args):
    return datetime(*args, tzinfo=NEW_YORK)


def market(*shocks, seed=11):
    return SimMarket(seed, SYMBOLS, 0.04, START, shocks=shocks)


PLAIN = market()
CRASH = market(SimShock(SHOCK_DAY, -0.10, 2.0))
FLAT = market(SimShock(SHOCK_DAY, 0.0, 2.0))  # the same shocked day without the gap


def test_sessions_before_the_shock_are_unchanged():
    for when in (ny(2025, 1, 2, 9, 30), ny(2025, 2, 3, 11, 0), ny(2025, 2, 28, 16, 0),
                 ny(2025, 3, 2, 12, 0)):
        for symbol in SYMBOLS:
            assert CRASH.spot(symbol, when) == PLAIN.spot(symbol, when)
            assert CRASH.atm_iv(symbol, when) == PLAIN.atm_iv(symbol, when)
        assert CRASH.regime(when) == PLAIN.regime(when)


def test_the_shock_day_opens_gap_times_the_usual_overnight_move():
    for symbol in SYMBOLS:
        prev_close = CRASH.spot(symbol, ny(2025, 2, 28, 16, 0))
        crash_open = CRASH.spot(symbol, ny(2025, 3, 3, 9, 30))
        flat_open = FLAT.spot(symbol, ny(2025, 3, 3, 9, 30))
        # The gap is exact against the same shocked day without it (prices round to $0.01).
        assert crash_open / flat_open == pytest.approx(0.90, abs=1e-4)
        # And it is a crash: 10% plus a usual overnight move of well under 3%.
        assert 0.87 < crash_open / prev_close < 0.93


def test_the_shock_day_is_stressed_with_implied_vol_spiked():
    at = ny(2025, 3, 3, 9, 45)
    assert CRASH.regime(at) == "stressed"
    for symbol in SYMBOLS:
        assert CRASH.atm_iv(symbol, at) > 1.8 * PLAIN.atm_iv(symbol, at)
    assert CRASH.vix(at) > 1.8 * PLAIN.vix(at)
    # The spike decays afterwards rather than sticking.
    later = ny(2025, 4, 15, 12, 0)
    assert CRASH.atm_iv("SPY", later) < CRASH.atm_iv("SPY", at)


def test_no_shock_market_is_bit_identical_to_the_default():
    plain = SimMarket(11, SYMBOLS, 0.04, START)
    when = ny(2025, 6, 2, 14, 0)
    assert plain.spot("SPY", when) == PLAIN.spot("SPY", when)
    assert plain.atm_iv("QQQ", when) == PLAIN.atm_iv("QQQ", when)


def test_shocks_survive_pickling():
    clone = pickle.loads(pickle.dumps(CRASH))
    at = ny(2025, 3, 3, 10, 0)
    assert clone.spot("SPY", at) == CRASH.spot("SPY", at)
    assert clone.atm_iv("SPY", at) == CRASH.atm_iv("SPY", at)


@pytest.mark.parametrize(("shock", "message"), [
    (lambda: SimShock(date(2025, 3, 1), -0.1), "not an NYSE session"),
    (lambda: SimShock(START, -0.1), "after the first session"),
    (lambda: SimShock(date(2024, 12, 31), -0.1), "after the first session"),
    (lambda: SimShock(SHOCK_DAY, -0.6), "gap must be in"),
    (lambda: SimShock(SHOCK_DAY, -0.1, 0.5), "vol_multiplier must be in"),
    (lambda: SimShock(SHOCK_DAY, float("nan")), "finite number"),
    (lambda: SimShock(ny(2025, 3, 3, 9, 30), -0.1), "must be a date"),
])
def test_bad_shocks_are_refused(shock, message):
    with pytest.raises(DataError, match=message):
        market(shock())


def test_two_shocks_on_one_session_and_non_shocks_are_refused():
    with pytest.raises(DataError, match="two shocks"):
        market(SimShock(SHOCK_DAY, -0.1), SimShock(SHOCK_DAY, 0.05))
    with pytest.raises(DataError, match="SimShock values"):
        SimMarket(1, SYMBOLS, 0.04, START, shocks=[{"session": SHOCK_DAY, "gap": -0.1}])
