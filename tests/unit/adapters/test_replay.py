"""Specifications of the replayed market: real S&P 500/VIX data and users' own files."""

import itertools
import math
import pickle
import re
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from arch.data import nasdaq, sp500, vix

from thetadesk.adapters.replay import HistoricalReplay, UserDataReplay
from thetadesk.chain import NEW_YORK, OptionChain
from thetadesk.clock import CALENDAR_FIRST, MarketCalendar
from thetadesk.errors import DataError
from thetadesk.models import Contract, Right

DATES = [date(2008, 10, 15), date(2014, 6, 2), date(2018, 2, 5), date(1999, 3, 1),
         date(2012, 11, 23)]  # the last is an early close (13:00)
SCALE = 0.1


@pytest.fixture(scope="module")
def replay():
    return HistoricalReplay({"SPY": SCALE, "SPX": 1.0}, strike_step={"SPY": 1.0, "SPX": 5.0})


@pytest.fixture(scope="module")
def flat():
    """The day's volatility level without the intraday move (spot_vol_beta 0): the level tests
    read it at any minute; tests/unit/adapters/test_replay_realism.py tests the move."""
    return HistoricalReplay({"SPY": SCALE}, spot_vol_beta=0.0)


@pytest.fixture(scope="module")
def spx():
    return sp500.load()


@pytest.fixture(scope="module")
def vix_close():
    return vix.load()["vix"]


def ny(d: date, hour: int, minute: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=NEW_YORK)


def snapshot(chain: OptionChain):
    rows = [r for e in chain.expiries() for r in chain.rows(e)]
    return chain.spot, [(r.contract, r.quote, r.delta, r.iv) for r in rows]


# -- the data and the calendar ----------------------------------------------------------------


def test_replay_days_are_the_nyse_sessions_of_the_data_range(replay, spx):
    cal = MarketCalendar()
    assert replay.days == tuple(ts.date() for ts in spx.index)
    later = [d for d in replay.days if d >= CALENDAR_FIRST]
    assert all(cal.is_session(d) for d in later)
    assert cal.sessions(later[0], len(later)) == later  # no session is missing either


def test_replay_session_hours_follow_the_calendar_including_early_closes(replay):
    cal = MarketCalendar()
    day = date(2012, 11, 23)  # the day after Thanksgiving closes at 13:00
    path = replay.day_path("SPY", day)
    assert len(path) - 1 == (cal.session_close(day) - cal.session_open(day)) // timedelta(
        minutes=1) == 210
    assert replay.spot("SPY", cal.session_close(day)) == path[-1]


# -- the intraday path ------------------------------------------------------------------------


@pytest.mark.parametrize("day", DATES)
def test_intraday_path_runs_open_to_close_through_exactly_high_and_low(replay, spx, day):
    row = spx.loc[day.isoformat()]
    for symbol, scale in (("SPY", SCALE), ("SPX", 1.0)):
        path = replay.day_path(symbol, day)
        assert path[0] == round(row["Open"] * scale, 2)
        assert path[-1] == round(row["Close"] * scale, 2)
        assert path.max() == round(row["High"] * scale, 2)
        assert path.min() == round(row["Low"] * scale, 2)


def test_every_day_of_the_history_keeps_its_ohlc_exactly(replay, spx):
    rows = spx.iloc[::97]
    for ts, row in rows.iterrows():
        path = replay.day_path("SPX", ts.date())
        assert (path[0], path[-1], path.max(), path.min()) == tuple(
            round(row[c], 2) for c in ("Open", "Close", "High", "Low")
        )
        assert np.mean((path == path.max()) | (path == path.min())) < 0.05  # no flat runs


def test_spot_is_the_minute_bar_at_or_before_now_and_the_last_close_between_sessions(
    replay, spx
):
    day = date(2014, 6, 2)
    path = replay.day_path("SPY", day)
    assert replay.spot("SPY", ny(day, 9, 30)) == path[0]
    assert replay.spot("SPY", ny(day, 10, 15, ) + timedelta(seconds=59)) == path[45]
    assert replay.spot("SPY", ny(day, 16, 0)) == path[-1]
    assert replay.spot("SPY", ny(day, 20, 0)) == path[-1]
    # before the open of the next day, and over a weekend: the previous close
    assert replay.spot("SPY", ny(date(2014, 6, 3), 8, 0)) == path[-1]
    friday_close = round(spx.loc["2014-05-30", "Close"] * SCALE, 2)
    assert replay.spot("SPY", ny(date(2014, 6, 1), 12, 0)) == friday_close
    assert replay.spot("SPY", ny(day, 9, 29)) == friday_close


def test_spot_outside_the_data_range_raises_data_error_naming_the_range(replay):
    for now in (ny(date(1999, 1, 4), 9, 29), ny(date(1998, 6, 1), 12),
                ny(date(2019, 1, 2), 10), datetime(2030, 1, 1, tzinfo=UTC)):
        with pytest.raises(DataError, match=r"1999-01-04 09:30 to 2018-12-31"):
            replay.spot("SPY", now)
    with pytest.raises(DataError, match="outside the replayed data"):
        replay.chain("SPY", ny(date(2019, 1, 2), 10))
    with pytest.raises(DataError, match="not a trading day"):
        replay.iv_source(date(2019, 1, 2))
    assert replay.spot("SPY", ny(date(2018, 12, 31), 23, 59)) > 0


def test_replay_rejects_naive_times_and_unknown_symbols(replay):
    with pytest.raises(DataError, match="timezone-aware"):
        replay.spot("SPY", datetime(2014, 6, 2, 12))  # noqa: DTZ001
    with pytest.raises(DataError, match="unknown symbol 'QQQ'"):
        replay.chain("QQQ", ny(date(2014, 6, 2), 12))


# -- implied volatility -----------------------------------------------------------------------


def atm_chain_iv(chain: OptionChain, target_dte: int = 30) -> tuple[float, int]:
    """The model IV of the call nearest the forward at the expiry nearest ``target_dte``."""
    expiry = chain.nearest_expiry(target_dte)
    T = chain.years_to_expiry(expiry)
    forward = chain.spot * math.exp((chain.rate - chain.dividend_yield) * T)
    row = min(chain.rows(expiry, Right.CALL), key=lambda r: abs(r.contract.strike - forward))
    return row.iv, chain.dte(expiry)


@pytest.mark.parametrize("day", [date(2014, 6, 2), date(2016, 2, 11), date(2018, 2, 5)])
def test_chain_atm_iv_is_the_ratio_times_the_previous_sessions_vix_over_100(flat, vix_close,
                                                                            day):
    # Point in time: during a day only the VIX closes before it are known. ATM sits below the
    # VIX by the documented 0.90 (the VIX prices the skew too).
    assert flat.iv_source(day) == "vix"
    previous = vix_close.loc[: day.isoformat()].iloc[-2] / 100.0
    assert previous != vix_close.loc[day.isoformat()] / 100.0
    expected = 0.90 * previous
    assert flat.atm_iv("SPY", ny(day, 12)) == pytest.approx(expected)
    iv, dte = atm_chain_iv(flat.chain("SPY", ny(day, 12)))
    assert 27 <= dte <= 33
    assert iv == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("day", [date(1999, 6, 1), date(2008, 10, 15), date(2013, 12, 31)])
def test_chain_atm_iv_is_the_realised_proxy_before_2014(flat, spx, day):
    # The proxy is an at-the-money level already: no VIX ratio on it.
    assert flat.iv_source(day) == "realised_proxy"
    closes = spx["Close"].loc[: day.isoformat()].to_numpy()[:-1]  # up to the previous close
    returns = np.diff(np.log(closes))[-21:]
    expected = max(returns.std(ddof=1) * math.sqrt(252.0) * 1.15, 0.08)
    assert flat.atm_iv("SPY", ny(day, 12)) == pytest.approx(expected)
    iv, _ = atm_chain_iv(flat.chain("SPY", ny(day, 12)))
    assert iv == pytest.approx(expected, rel=0.05)


def test_the_first_vix_day_still_uses_the_proxy_its_own_close_is_not_known(replay):
    assert replay.iv_source(date(2014, 1, 3)) == "realised_proxy"
    assert replay.iv_source(date(2014, 1, 6)) == "vix"


def test_the_first_days_of_1999_use_the_documented_fallback_level(flat):
    assert flat.iv_source(date(1999, 1, 4)) == "realised_proxy"
    assert flat.atm_iv("SPY", ny(date(1999, 1, 4), 10)) == 0.25
    assert flat.atm_iv("SPY", ny(date(1999, 2, 1), 10)) != 0.25


def test_term_structure_inverts_when_vix_is_high_and_slopes_up_when_low(replay):
    high = replay.chain("SPY", ny(date(2018, 2, 6), 12))  # the VIX close before: 37
    low = replay.chain("SPY", ny(date(2017, 11, 3), 12))  # VIX 9
    assert atm_chain_iv(high, 7)[0] > atm_chain_iv(high, 30)[0] > atm_chain_iv(high, 60)[0]
    assert atm_chain_iv(low, 7)[0] < atm_chain_iv(low, 30)[0] < atm_chain_iv(low, 45)[0]


@pytest.mark.parametrize("day", DATES)
def test_chain_has_put_skew(replay, day):
    chain = replay.chain("SPY", ny(day, 12))
    expiry = chain.nearest_expiry(30)
    puts = chain.rows(expiry, Right.PUT)
    atm_iv, _ = atm_chain_iv(chain)
    otm = min(puts, key=lambda r: abs(r.contract.strike - 0.9 * chain.spot))
    itm_call_side = min(chain.rows(expiry, Right.CALL),
                        key=lambda r: abs(r.contract.strike - 1.05 * chain.spot))
    assert otm.iv > 1.1 * atm_iv > itm_call_side.iv
    ivs = [r.iv for r in puts if r.contract.strike <= chain.spot]
    assert ivs == sorted(ivs, reverse=True)


# -- chain shape and no-arbitrage -------------------------------------------------------------


@pytest.mark.parametrize("day", DATES)
def test_chain_is_free_of_static_arbitrage_within_the_quoted_spreads(replay, day):
    chain = replay.chain("SPY", ny(day, 11, 7))
    r, q = chain.rate, chain.dividend_yield
    assert len(chain.expiries()) >= 6
    for expiry in chain.expiries():
        calls = chain.rows(expiry, Right.CALL)
        puts = chain.rows(expiry, Right.PUT)
        strikes = [c.contract.strike for c in calls]
        assert strikes == sorted(strikes) == [p.contract.strike for p in puts]
        for lo, hi in itertools.pairwise(calls):  # non-increasing in strike
            assert hi.quote.mid <= lo.quote.mid + max(hi.quote.spread, lo.quote.spread)
        for lo, hi in itertools.pairwise(puts):  # non-decreasing in strike
            assert hi.quote.mid >= lo.quote.mid - max(hi.quote.spread, lo.quote.spread)
        for rows in (calls, puts):  # convex in strike (butterflies cost >= 0)
            for a, b, c in zip(rows, rows[1:], rows[2:], strict=False):
                slack = a.quote.spread / 2 + b.quote.spread + c.quote.spread / 2
                assert a.quote.mid - 2 * b.quote.mid + c.quote.mid >= -slack - 1e-9
        T = chain.years_to_expiry(expiry)
        for c, p in zip(calls, puts, strict=True):
            parity = chain.spot * math.exp(-q * T) - c.contract.strike * math.exp(-r * T)
            assert c.quote.bid - p.quote.ask - 1e-9 <= parity <= c.quote.ask - p.quote.bid + 1e-9
            assert 0.0 <= c.delta <= 1.0
            assert -1.0 <= p.delta <= 0.0


def test_chain_lists_weeklies_and_third_friday_monthlies_moving_holiday_expiries(replay):
    chain = replay.chain("SPY", ny(date(2008, 3, 3), 12))
    expiries = chain.expiries()
    # Good Friday 2008-03-21 was a holiday: that week's (and month's) expiry is Thursday
    assert date(2008, 3, 20) in expiries
    assert date(2008, 3, 21) not in expiries
    assert all(e.weekday() == 4 or e == date(2008, 3, 20) for e in expiries)
    assert max(chain.dte(e) for e in expiries) <= 70
    later = replay.chain("SPY", ny(date(2008, 3, 24), 12))
    beyond_weeklies = [e for e in later.expiries() if later.dte(e) > 49]
    assert beyond_weeklies == [date(2008, 5, 16)]  # the May monthly (third Friday)
    # strikes: 75% to 115% of the previous close, listed before the open and kept all day
    previous = round(sp500.load()["Close"].loc[:"2008-02-29"].iloc[-1] * SCALE, 2)
    strikes = [r.contract.strike for r in chain.rows(expiries[0], Right.PUT)]
    assert strikes[0] >= 0.75 * previous
    assert strikes[-1] <= 1.15 * previous
    assert strikes[0] - 1 < 0.75 * previous
    assert strikes[-1] + 1 > 1.15 * previous
    late = replay.chain("SPY", ny(date(2008, 3, 3), 15, 45))
    assert late.spot != chain.spot
    assert [r.contract for r in late.rows(expiries[0])] == [
        r.contract for r in chain.rows(expiries[0])]


def test_chain_spreads_widen_for_cheap_and_far_from_the_money_options(replay):
    chain = replay.chain("SPY", ny(date(2014, 6, 2), 12))
    expiry = chain.nearest_expiry(30)
    puts = chain.rows(expiry, Right.PUT)
    atm = min(puts, key=lambda r: abs(r.contract.strike - chain.spot))
    wing = next(r for r in puts if r.quote.bid > 0)
    assert wing.quote.spread / wing.quote.mid > 3 * atm.quote.spread / atm.quote.mid


def test_chain_honours_the_dte_window(replay):
    now = ny(date(2014, 6, 2), 12)
    full = replay.chain("SPY", now)
    window = replay.chain("SPY", now, min_dte=20, max_dte=40)
    assert window.expiries() == [e for e in full.expiries() if 20 <= full.dte(e) <= 40]
    assert replay.chain("SPY", now, min_dte=71).expiries() == []


def test_quote_matches_the_chain_row_and_prices_off_grid_contracts(replay):
    now = ny(date(2014, 6, 2), 12, 3)
    chain = replay.chain("SPY", now)
    for expiry in chain.expiries()[:3]:
        for row in chain.rows(expiry)[::17]:
            assert replay.quote(row.contract, now) == row.quote
    expiry = chain.expiries()[2]
    off = replay.quote(Contract("SPY", expiry, Right.PUT, 190.5), now)
    near = [r.quote for r in chain.rows(expiry, Right.PUT) if r.contract.strike in (190, 191)]
    assert near[0].mid <= off.mid <= near[1].mid
    with pytest.raises(DataError, match="expired"):
        replay.quote(Contract("SPY", date(2014, 5, 30), Right.PUT, 190.0), now)


def test_a_quote_before_any_chain_of_its_minute_equals_the_later_chain_row():
    fresh = HistoricalReplay({"SPY": SCALE}, strike_step={"SPY": 1.0})
    now = ny(date(2015, 8, 24), 10, 7)  # a wild day
    contracts = [r.contract for r in HistoricalReplay({"SPY": SCALE}, strike_step={"SPY": 1.0})
                 .chain("SPY", now).rows(date(2015, 9, 18))[::9]]
    first = [fresh.quote(c, now) for c in contracts]  # priced one by one, no surface yet
    chain = fresh.chain("SPY", now)
    rows = {r.contract: r.quote for r in chain.rows(date(2015, 9, 18))}
    assert first == [rows[c] for c in contracts]
    assert [fresh.quote(c, now) for c in contracts] == first  # and from the surface after
    # The next minute prices the contracts asked before in one batch: still the chain's rows.
    later = ny(date(2015, 8, 24), 10, 8)
    batched = [fresh.quote(c, later) for c in reversed(contracts)]
    rows = {r.contract: r.quote for r in fresh.chain("SPY", later).rows(date(2015, 9, 18))}
    assert batched == [rows[c] for c in reversed(contracts)]
    assert batched != list(reversed(first))  # the market moved: these are new prices


# -- determinism and speed --------------------------------------------------------------------


def test_two_instances_with_the_same_arguments_give_identical_answers(replay):
    other = HistoricalReplay({"SPY": SCALE, "SPX": 1.0}, strike_step={"SPY": 1.0, "SPX": 5.0})
    revived = pickle.loads(pickle.dumps(replay))
    for now in (ny(date(2008, 10, 15), 14, 31), ny(date(2001, 9, 17), 9, 45)):
        expected = snapshot(replay.chain("SPY", now))
        assert snapshot(other.chain("SPY", now)) == expected
        assert snapshot(revived.chain("SPY", now)) == expected
        assert other.spot("SPX", now) == replay.spot("SPX", now)


def test_the_seed_changes_the_intraday_path_but_not_the_daily_bars(replay):
    day = date(2008, 10, 15)
    a = replay.day_path("SPY", day)
    b = HistoricalReplay(seed=1).day_path("SPY", day)
    assert not np.array_equal(a, b)
    assert (a[0], a[-1], a.max(), a.min()) == (b[0], b[-1], b.max(), b.min())


def test_a_chain_snapshot_is_reused_within_its_minute_and_repriced_at_the_next(replay):
    # How fast a snapshot is belongs to scripts/bench_system.py (replay_chain_snapshots_per_s);
    # here only what the cache must do: the same minute answers the same, a new one reprices.
    day = date(2016, 3, 1)
    first = snapshot(replay.chain("SPY", ny(day, 10, 1)))
    assert snapshot(replay.chain("SPY", ny(day, 10, 1))) == first
    assert snapshot(replay.chain("SPY", ny(day, 10, 2))) != first



# -- the NASDAQ as QQQ ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def two():
    return HistoricalReplay({"SPY": SCALE, "QQQ": 1 / 43}, indices={"QQQ": "nasdaq"},
                            dividend_yield={"SPY": 0.018, "QQQ": 0.006})


@pytest.fixture(scope="module")
def two_flat():
    return HistoricalReplay({"SPY": SCALE, "QQQ": 1 / 43}, indices={"QQQ": "nasdaq"},
                            dividend_yield={"SPY": 0.018, "QQQ": 0.006}, spot_vol_beta=0.0)


@pytest.mark.parametrize("day", [date(2015, 8, 24), date(2018, 2, 5), date(2003, 5, 1)])
def test_qqq_follows_the_nasdaq_bars_of_the_day(two, day):
    ndq = nasdaq.load().loc[str(day)]
    path = two.day_path("QQQ", day)
    scale = 1 / 43
    assert path[0] == round(ndq["Open"] * scale, 2)
    assert path[-1] == round(ndq["Close"] * scale, 2)
    assert path.max() == round(ndq["High"] * scale, 2)
    assert path.min() == round(ndq["Low"] * scale, 2)
    # ... while SPY still follows the S&P 500
    spx_close = sp500.load().loc[str(day), "Close"]
    assert two.day_path("SPY", day)[-1] == round(spx_close * SCALE, 2)


def test_qqq_and_spy_move_together_within_the_day(two):
    day = date(2016, 6, 2)
    a = np.diff(np.log(two.day_path("SPY", day)))
    b = np.diff(np.log(two.day_path("QQQ", day)))
    assert np.corrcoef(a, b)[0, 1] > 0.5


# 2015-08-24: the NASDAQ fell 3.8% and the VIX closed at 40.7; that day's level must not
# know it (the ratio and the VIX end at the previous close), the next day's must.
@pytest.mark.parametrize("day", [date(2016, 6, 2), date(2015, 8, 24), date(2015, 8, 25)])
def test_qqq_volatility_is_the_previous_vix_close_times_the_realised_ratio(two_flat, vix_close,
                                                                          day):
    closes_s = sp500.load()["Close"]
    closes_n = nasdaq.load()["Close"]
    upto = closes_s.index < str(day)  # returns up to the previous close only
    rs = np.diff(np.log(closes_s[upto].to_numpy()))[-63:].std(ddof=1)
    rn = np.diff(np.log(closes_n[upto].to_numpy()))[-63:].std(ddof=1)
    previous = 0.90 * vix_close[vix_close.index < str(day)].iloc[-1] / 100
    expected = previous * min(max(rn / rs, 0.8), 2.5)
    assert two_flat.atm_iv("QQQ", ny(day, 11)) == pytest.approx(expected, rel=1e-9)
    assert two_flat.atm_iv("SPY", ny(day, 11)) == pytest.approx(previous, rel=1e-12)
    assert two_flat.iv_source(day, "QQQ") == "vix"


def test_qqq_volatility_before_the_vix_data_is_its_own_realised_proxy(two_flat):
    day = date(2010, 3, 1)
    closes = nasdaq.load()["Close"]
    r = np.diff(np.log(closes[closes.index < str(day)].to_numpy()))[-21:]
    assert two_flat.iv_source(day, "QQQ") == "realised_proxy"
    assert two_flat.atm_iv("QQQ", ny(day, 11)) == pytest.approx(
        max(r.std(ddof=1) * math.sqrt(252) * 1.15, 0.08), rel=1e-9)


def test_qqq_chains_use_their_own_dividend_yield(two):
    chain = two.chain("QQQ", ny(date(2016, 6, 2), 11))
    assert chain.dividend_yield == 0.006
    assert two.chain("SPY", ny(date(2016, 6, 2), 11)).dividend_yield == 0.018
    revived = pickle.loads(pickle.dumps(two))
    assert snapshot(revived.chain("QQQ", ny(date(2016, 6, 2), 11))) == snapshot(chain)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"indices": {"QQQ": "dow"}}, "index of QQQ must be one of ('sp500', 'nasdaq')"),
    ({"indices": {"IWM": "nasdaq"}}, "'IWM' is not one of the symbols"),
    ({"dividend_yield": {"SPY": 0.01}}, "no dividend_yield for QQQ"),
    ({"dividend_yield": {"SPY": 0.01, "QQQ": float("nan")}},
     "dividend_yield of QQQ must be a finite number"),
])
def test_replay_refuses_unknown_indices_and_missing_yields(kwargs, message):
    with pytest.raises(DataError, match=re.escape(message)):
        HistoricalReplay({"SPY": SCALE, "QQQ": 1 / 43}, **kwargs)


# -- users' own files -------------------------------------------------------------------------

BARS = """timestamp,symbol,open,high,low,close,volume
2024-01-02T09:31:00-05:00,SPY,470.0,471.0,469.5,470.5,1000
2024-01-02T09:32:00-05:00,SPY,470.5,470.9,470.1,470.2,800
2024-01-02T14:33:00Z,SPY,470.2,470.4,469.8,469.9,900
2024-01-02T09:31:00-05:00,QQQ,400.0,401.0,399.0,400.5,500
"""
QUOTES = """timestamp,occ_symbol,bid,ask,bid_size,ask_size,iv,delta
2024-01-02T09:31:00-05:00,SPY240119P00460000,1.10,1.15,10,12,0.14,-0.22
2024-01-02T09:31:00-05:00,SPY240119C00480000,0.50,0.53,5,7,,
2024-01-02T09:33:00-05:00,SPY240119P00460000,1.20,1.24,3,4,0.145,-0.24
2024-01-02T09:31:00-05:00,SPY240216P00450000,2.00,2.10,1,1,,
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_user_csv_replays_spot_quote_and_chain(tmp_path):
    data = UserDataReplay.from_files(write(tmp_path, "bars.csv", BARS),
                                     write(tmp_path, "quotes.csv", QUOTES), rate=0.05)
    t = datetime(2024, 1, 2, 14, 32, 30, tzinfo=UTC)
    assert data.symbols == ["QQQ", "SPY"]
    assert data.spot("SPY", t) == 470.2
    assert data.spot("SPY", t + timedelta(hours=3)) == 469.9
    assert data.spot("QQQ", t) == 400.5
    put = Contract("SPY", date(2024, 1, 19), Right.PUT, 460.0)
    assert data.quote(put, t).bid == 1.10
    later = data.quote(put, t + timedelta(minutes=1))
    assert (later.bid, later.ask, later.bid_size, later.ask_size) == (1.20, 1.24, 3, 4)
    chain = data.chain("SPY", t + timedelta(minutes=1), max_dte=30)
    assert chain.spot == 469.9
    assert chain.expiries() == [date(2024, 1, 19)]
    rows = {r.contract.occ: r for r in chain.rows(date(2024, 1, 19))}
    assert rows["SPY240119P00460000"].delta == -0.24
    assert rows["SPY240119P00460000"].iv == 0.145
    assert rows["SPY240119C00480000"].delta is None
    assert len(data.chain("SPY", t).expiries()) == 2


def test_user_data_rejects_out_of_range_stale_and_unknown_requests(tmp_path):
    data = UserDataReplay.from_files(write(tmp_path, "bars.csv", BARS),
                                     write(tmp_path, "quotes.csv", QUOTES))
    with pytest.raises(DataError, match="outside the bars of SPY"):
        data.spot("SPY", datetime(2024, 1, 2, 14, 30, tzinfo=UTC))
    with pytest.raises(DataError, match="unknown symbol 'IWM'"):
        data.spot("IWM", datetime(2024, 1, 2, 15, tzinfo=UTC))
    put = Contract("SPY", date(2024, 1, 19), Right.PUT, 460.0)
    with pytest.raises(DataError, match="stale quote"):
        data.quote(put, datetime(2024, 1, 2, 16, 0, tzinfo=UTC))
    with pytest.raises(DataError, match="no quotes for SPY240119P00470000"):
        data.quote(Contract("SPY", date(2024, 1, 19), Right.PUT, 470.0),
                   datetime(2024, 1, 2, 15, tzinfo=UTC))
    assert data.chain("SPY", datetime(2024, 1, 2, 16, 0, tzinfo=UTC)).expiries() == []


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bars.csv", BARS.replace(",volume", ",vol"),
         r"bars.csv: missing column\(s\) \['volume'\]"),
        ("bars.csv", BARS.replace("2024-01-02T09:32:00-05:00", "2024-01-02T09:30:30-05:00"),
         r"bars.csv: row 2 \(line 3\), column 'timestamp': timestamps not sorted for SPY"),
        ("bars.csv", BARS.replace("470.5,470.9", "nan,470.9"),
         r"bars.csv: row 2 \(line 3\), column 'open': missing value"),
        ("bars.csv", BARS.replace(",469.8,", ",,"),
         r"bars.csv: row 3 \(line 4\), column 'low': missing value"),
        ("bars.csv", BARS.replace("2024-01-02T14:33:00Z", "2024-01-02T14:32:00Z"),
         r"bars.csv: row 3 \(line 4\), column 'timestamp': duplicated row: symbol SPY"),
        ("bars.csv", BARS.replace("2024-01-02T09:32:00-05:00", "2024-01-02T09:32:00"),
         r"bars.csv: row 2 \(line 3\), column 'timestamp': naive timestamp"),
        ("bars.csv", BARS.replace("470.5,470.9,470.1", "470.5,470.0,470.9"),
         r"bars.csv: row 2 \(line 3\), column 'high': high 470.0 < low 470.9"),
        ("bars.csv", BARS.replace("2024-01-02T09:32:00-05:00", "yesterday-05:00"),
         r"row 2 \(line 3\), column 'timestamp': not an ISO-8601 timestamp"),
        ("bars.csv", BARS.replace("470.2,470.4", "472.0,470.4"),
         r"row 3 \(line 4\), column 'open': open 472.0 outside"),
        ("bars.csv", BARS.replace(",500\n", ",abc\n"),
         r"row 4 \(line 5\), column 'volume': not a finite number: 'abc'"),
        ("quotes.csv", QUOTES.replace("1.20,1.24", "1.30,1.24"),
         r"quotes.csv: row 3 \(line 4\), column 'bid': crossed quote for SPY240119P00460000"),
        ("quotes.csv", QUOTES.replace(",bid_size", ",bidsize"),
         r"quotes.csv: missing column\(s\) \['bid_size'\]"),
        ("quotes.csv", QUOTES.replace("SPY240216P00450000", "SPY24216P450"),
         r"quotes.csv: row 4 \(line 5\), column 'occ_symbol': malformed OCC"),
        ("quotes.csv", QUOTES.replace("09:33:00-05:00", "09:31:00-05:00"),
         r"row 3 \(line 4\), column 'timestamp': duplicated row: occ_symbol SPY240119P00460000"),
        ("quotes.csv", QUOTES.replace("2024-01-02T09:33:00-05:00", "2024-01-02T09:30:00-05:00"),
         r"row 3 \(line 4\), column 'timestamp': timestamps not sorted for SPY240119P00460000"),
        ("quotes.csv", QUOTES.replace("0.50,0.53,5,7", "0.50,,5,7"),
         r"row 2 \(line 3\), column 'ask': missing value"),
        ("quotes.csv", QUOTES.replace("2024-01-02T09:31:00-05:00,SPY240216",
                                      "2024-01-02 09:31:00,SPY240216"),
         r"row 4 \(line 5\), column 'timestamp': naive timestamp"),
        ("quotes.csv", QUOTES.replace("5,7", "5.5,7"),
         r"row 2 \(line 3\), column 'bid_size': must be an integer >= 0"),
    ],
)
def test_user_files_with_bad_data_raise_data_error_naming_file_row_and_column(
    tmp_path, name, text, message
):
    bars = write(tmp_path, "bars.csv", text if name == "bars.csv" else BARS)
    quotes = write(tmp_path, "quotes.csv", text if name == "quotes.csv" else QUOTES)
    with pytest.raises(DataError, match=message):
        UserDataReplay.from_files(bars, quotes)


def test_user_parquet_without_pyarrow_says_which_package_to_install(tmp_path, monkeypatch):
    import pandas as pd

    def no_engine(*args, **kwargs):
        raise ImportError("Unable to find a usable engine; tried using: 'pyarrow'")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    path = tmp_path / "bars.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"bars.parquet: reading Parquet needs the 'pyarrow'"):
        UserDataReplay.from_files(path)


def test_user_parquet_frames_with_timezone_aware_timestamps_are_accepted(tmp_path, monkeypatch):
    import pandas as pd

    frame = pd.DataFrame({
        "timestamp": pd.to_datetime(["2024-01-02T14:31:00Z", "2024-01-02T14:32:00Z"]),
        "symbol": ["SPY", "SPY"], "open": [1.0, 1.0], "high": [1.0, 1.2],
        "low": [1.0, 0.9], "close": [1.0, 1.1], "volume": [1, 2],
    })
    monkeypatch.setattr(pd, "read_parquet", lambda path: frame)
    data = UserDataReplay.from_files(tmp_path / "bars.parquet")
    assert data.spot("SPY", datetime(2024, 1, 2, 14, 32, tzinfo=UTC)) == 1.1
    naive = frame.assign(timestamp=frame["timestamp"].dt.tz_localize(None))
    monkeypatch.setattr(pd, "read_parquet", lambda path: naive)
    with pytest.raises(DataError, match=r"bars.parquet: row 1, column 'timestamp': naive"):
        UserDataReplay.from_files(tmp_path / "bars.parquet")


def test_user_files_of_unknown_type_or_missing_raise_data_error(tmp_path):
    with pytest.raises(DataError, match=r"unknown file type '\.txt'"):
        UserDataReplay.from_files(write(tmp_path, "bars.txt", BARS))
    with pytest.raises(DataError, match="no such file"):
        UserDataReplay.from_files(tmp_path / "absent.csv")


def test_a_corrupt_parquet_file_raises_data_error(tmp_path, monkeypatch):
    import pandas as pd

    def corrupt(*args, **kwargs):
        raise OSError("Parquet magic bytes not found in footer")

    monkeypatch.setattr(pd, "read_parquet", corrupt)
    with pytest.raises(DataError, match=r"bars\.parquet: unreadable Parquet file"):
        UserDataReplay.from_files(tmp_path / "bars.parquet")
