"""Specifications of the simulated market: determinism, hours, chain shape, surface, bad quotes."""

import itertools
import math
import pickle
from datetime import date, datetime, timedelta

import numpy as np
import pytest
from structlog.testing import capture_logs

from thetadesk.adapters.sim_market import SimMarket, SimSymbol
from thetadesk.chain import NEW_YORK, OptionChain, expiry_instant
from thetadesk.errors import DataError
from thetadesk.models import Contract, Quote, Right
from thetadesk.pricing import implied_vol

START = date(2025, 1, 2)  # a Thursday, the first session of 2025
SYMBOLS = {
    "SPY": SimSymbol(spot=450.0, vol=0.18, dividend_yield=0.013, strike_step=5.0),
    "QQQ": SimSymbol(spot=380.0, vol=0.22, dividend_yield=0.006, strike_step=5.0),
}
RATE = 0.04
NOW = datetime(2025, 3, 3, 10, 30, tzinfo=NEW_YORK)  # a Monday morning


def ny(*args):
    return datetime(*args, tzinfo=NEW_YORK)


def make_market(seed=7, symbols=None, **kwargs):
    return SimMarket(seed, SYMBOLS if symbols is None else symbols, RATE, START, **kwargs)


@pytest.fixture(scope="module")
def market():
    return make_market()


def all_rows(chain: OptionChain):
    return [row for expiry in chain.expiries() for row in chain.rows(expiry)]


def snapshot(chain: OptionChain):
    return (chain.spot, [(r.contract, r.quote, r.delta, r.iv) for r in all_rows(chain)])


# -- determinism -------------------------------------------------------------------------------


def test_sim_market_two_instances_same_arguments_identical_spots_and_chains():
    a, b = make_market(), make_market()
    times = [NOW, NOW + timedelta(days=9, hours=3, minutes=17), ny(2025, 6, 2, 15, 59)]

    for now in times:
        assert a.spot("SPY", now) == b.spot("SPY", now)
        assert snapshot(a.chain("SPY", now)) == snapshot(b.chain("SPY", now))
        assert a.atm_iv("QQQ", now) == b.atm_iv("QQQ", now)


def test_sim_market_out_of_order_queries_same_answers_as_walking_forward():
    walker, jumper = make_market(), make_market()
    closes = [ny(2025, 1, 2, 16, 0) + timedelta(days=d) for d in range(40)]
    walked = [walker.spot("SPY", t) for t in closes]
    walked_chain = snapshot(walker.chain("SPY", closes[-1] - timedelta(hours=2)))

    jumped_chain = snapshot(jumper.chain("SPY", closes[-1] - timedelta(hours=2)))
    jumped = [jumper.spot("SPY", t) for t in reversed(closes)][::-1]

    assert jumped == walked
    assert jumped_chain == walked_chain


def test_sim_market_other_symbols_do_not_change_a_symbols_path():
    alone = make_market(symbols={"SPY": SYMBOLS["SPY"]})
    together = make_market()
    together.spot("QQQ", NOW)

    assert alone.spot("SPY", NOW) == together.spot("SPY", NOW)


def test_sim_market_different_seed_different_path():
    assert make_market(seed=1).spot("SPY", NOW) != make_market(seed=2).spot("SPY", NOW)


def test_sim_market_pickled_copy_gives_the_same_answers(market):
    copy = pickle.loads(pickle.dumps(market))

    assert copy.spot("SPY", NOW) == market.spot("SPY", NOW)
    assert snapshot(copy.chain("QQQ", NOW)) == snapshot(market.chain("QQQ", NOW))


# -- the underlying and the hours ------------------------------------------------------------


def test_sim_market_first_session_opens_at_the_starting_spot(market):
    assert market.spot("SPY", ny(2025, 1, 1, 12, 0)) == 450.0  # New Year's Day, before start
    assert market.spot("SPY", ny(2025, 1, 2, 9, 30)) == 450.0


def test_sim_market_spot_within_a_minute_bar_is_constant(market):
    assert market.spot("SPY", NOW) == market.spot("SPY", NOW + timedelta(seconds=59))


def test_sim_market_spot_outside_hours_is_the_last_close(market):
    friday_close = market.spot("SPY", ny(2025, 2, 28, 16, 0))

    assert market.spot("SPY", ny(2025, 3, 1, 12, 0)) == friday_close  # Saturday
    assert market.spot("SPY", ny(2025, 3, 3, 9, 29, 59)) == friday_close  # Monday pre-market
    assert market.spot("SPY", ny(2025, 2, 28, 15, 59)) != friday_close


def test_sim_market_holidays_and_early_closes_follow_the_nyse_calendar(market):
    assert not market.is_open(ny(2025, 7, 4, 12, 0))  # Independence Day
    assert market.is_open(ny(2025, 7, 3, 12, 59))
    assert not market.is_open(ny(2025, 7, 3, 13, 0))  # early close
    assert not market.is_open(ny(2025, 3, 3, 9, 29))
    assert market.is_open(ny(2025, 3, 3, 9, 30))
    assert market.spot("SPY", ny(2025, 7, 4, 12, 0)) == market.spot("SPY", ny(2025, 7, 3, 13, 0))


def test_sim_market_path_moves_with_roughly_its_base_volatility(market):
    closes = [market.spot("SPY", ny(2025, 1, 2, 16, 0) + timedelta(days=d)) for d in range(365)]
    sessions = [c for c, prev in zip(closes, [None, *closes], strict=False) if c != prev]
    daily = np.diff(np.log(sessions))

    assert 0.08 < float(daily.std()) * math.sqrt(252) < 0.40
    ivs = {round(market.atm_iv("SPY", ny(2025, 1, 6, 12, 0) + timedelta(days=d)), 4)
           for d in range(0, 300, 10)}
    assert len(ivs) > 10  # the volatility level moves


@pytest.mark.parametrize("method", ["spot", "chain", "atm_iv"])
def test_sim_market_unknown_symbol_raises_data_error(market, method):
    with pytest.raises(DataError, match="unknown symbol 'IWM'"):
        getattr(market, method)("IWM", NOW)


def test_sim_market_naive_time_raises_data_error(market):
    with pytest.raises(DataError, match="timezone-aware"):
        market.spot("SPY", datetime(2025, 3, 3, 10, 30))  # noqa: DTZ001


def test_sim_market_before_the_start_raises_data_error(market):
    with pytest.raises(DataError, match="before the simulation starts"):
        market.spot("SPY", ny(2024, 12, 1, 12, 0))


@pytest.mark.parametrize(
    ("field", "value"),
    [("spot", 0.0), ("vol", -0.1), ("vol", math.nan), ("strike_step", 0.0001), ("spot", "450")],
)
def test_sim_symbol_bad_value_raises_data_error(field, value):
    kwargs = {"spot": 450.0, "vol": 0.18, "strike_step": 5.0} | {field: value}

    with pytest.raises(DataError, match=field):
        SimSymbol(**kwargs)


# -- the chain -------------------------------------------------------------------------------------


def test_sim_market_chain_lists_dailies_weeklies_and_monthlies(market):
    chain = market.chain("SPY", NOW)  # Monday 2025-03-03
    expiries = chain.expiries()
    sessions = [date(2025, 3, d) for d in (3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 17)]
    dailies = [e for e in expiries if chain.dte(e) <= 14]
    weeklies = [e for e in expiries if 14 < chain.dte(e) <= 70]
    monthlies = [e for e in expiries if chain.dte(e) > 70]

    assert dailies == sessions  # every session for two weeks, today's included
    fridays = [e + timedelta(days=1) if e == date(2025, 4, 17) else e for e in weeklies]
    assert all(f.weekday() == 4 for f in fridays)  # Good Friday 2025-04-18 expires Thursday
    assert all(b - a == timedelta(days=7) for a, b in itertools.pairwise(fridays))
    assert 63 < chain.dte(weeklies[-1]) <= 70
    assert monthlies == [date(2025, 5, 16), date(2025, 6, 20)]  # third Fridays to 120 days


def test_sim_market_chain_daily_expiries_only_for_configured_roots():
    market = make_market(daily_expiries=("SPY",))
    spy = market.chain("SPY", NOW).expiries()
    qqq = market.chain("QQQ", NOW).expiries()

    assert date(2025, 3, 4) in spy
    assert date(2025, 3, 4) not in qqq
    assert qqq[0] == date(2025, 3, 7)
    assert set(qqq) <= set(spy)


def test_sim_market_chain_holiday_friday_expires_the_session_before(market):
    expiries = market.chain("SPY", ny(2025, 4, 1, 11, 0)).expiries()

    assert date(2025, 4, 17) in expiries  # Good Friday 2025-04-18: NYSE closed
    assert date(2025, 4, 18) not in expiries


def test_sim_market_chain_strikes_on_the_grid_from_75_to_115_percent(market):
    chain = market.chain("SPY", NOW)
    for expiry in chain.expiries():
        puts = [r.contract.strike for r in chain.rows(expiry, Right.PUT)]
        calls = [r.contract.strike for r in chain.rows(expiry, Right.CALL)]

        assert puts == calls
        assert puts == sorted(puts)
        assert all(k % 5.0 == 0 for k in puts)
        assert all(b - a == 5.0 for a, b in itertools.pairwise(puts))
        assert 0.75 * chain.spot <= puts[0] < 0.75 * chain.spot + 5
        assert 1.15 * chain.spot - 5 < puts[-1] <= 1.15 * chain.spot


def test_sim_market_chain_puts_have_skew_lower_strikes_higher_iv(market):
    chain = market.chain("SPY", NOW)
    expiry = chain.nearest_expiry(35)
    puts = chain.rows(expiry, Right.PUT)
    ivs = [r.iv for r in puts]

    assert all(a > b for a, b in itertools.pairwise(ivs) if a < 2.0)
    otm_put = min(puts, key=lambda r: abs(r.contract.strike - 0.9 * chain.spot))
    otm_call = min(chain.rows(expiry, Right.CALL),
                   key=lambda r: abs(r.contract.strike - 1.1 * chain.spot))
    assert otm_put.iv > market.atm_iv("SPY", NOW) > otm_call.iv


def test_sim_market_chain_quotes_are_two_sided_on_the_penny_tick(market):
    rows = all_rows(market.chain("QQQ", NOW))

    for row in rows:
        q = row.quote
        assert 0.0 <= q.bid < q.ask
        assert round(q.bid * 100) == pytest.approx(q.bid * 100, abs=1e-9)
        assert round(q.ask * 100) == pytest.approx(q.ask * 100, abs=1e-9)
        assert (q.bid_size == 0) == (q.bid == 0.0)
        assert q.ask_size > 0
        assert q.ts <= NOW
    assert any(r.quote.bid == 0.0 for r in rows)  # far out of the money bids nothing


def test_sim_market_chain_mid_implies_the_model_iv_and_delta_sign(market):
    chain = market.chain("SPY", NOW)
    expiry = chain.nearest_expiry(30)
    T = chain.years_to_expiry(expiry)
    rows = [
        r for r in chain.rows(expiry)
        if r.quote.bid > 0.5 and (r.contract.strike > chain.spot) == r.contract.is_call
    ]  # out of the money, so that the mid is above intrinsic value
    mids = np.array([r.quote.mid for r in rows])
    strikes = np.array([r.contract.strike for r in rows])
    calls = np.array([r.contract.is_call for r in rows])

    ivs = implied_vol(mids, chain.spot, strikes, T, RATE, 0.013, calls)

    np.testing.assert_allclose(ivs, [r.iv for r in rows], atol=0.01)
    assert all((r.delta > 0) == r.contract.is_call for r in rows)


def test_sim_market_quote_matches_the_chain_row(market):
    chain = market.chain("SPY", NOW)
    row = chain.strike_by_delta(chain.nearest_expiry(35), -0.30, Right.PUT)

    assert market.quote(row.contract, NOW) == row.quote


def test_sim_market_pricing_only_what_is_quoted_gives_the_whole_expirys_bits():
    whole, alone = make_market(), make_market(whole_expiries=False)
    times = [NOW, NOW + timedelta(days=9, hours=3, minutes=17), ny(2025, 6, 2, 15, 59),
             ny(2025, 1, 2, 9, 30), ny(2025, 3, 1, 12, 0)]
    checked = 0
    for now in times:
        for symbol in SYMBOLS:
            chain = whole.chain(symbol, now)
            for expiry in chain.expiries()[::3]:
                for row in chain.rows(expiry)[::5]:
                    assert alone.quote(row.contract, now) == row.quote
                    checked += 1
            # Off the grid too, and a second ask of the same bar is the same answer.
            off = Contract(symbol, chain.expiries()[0], Right.PUT, round(chain.spot * 0.6))
            assert alone.quote(off, now) == whole.quote(off, now) == alone.quote(off, now)
    assert checked > 500
    # The market that prices one by one never priced a whole expiry.
    assert all(not s.groups for s in alone._surfaces._data.values())
    copy = pickle.loads(pickle.dumps(alone))
    assert copy._whole_expiries is False
    assert copy.quote(off, times[-1]) == alone.quote(off, times[-1])


def test_sim_market_whole_expiries_must_be_a_bool():
    with pytest.raises(DataError, match="whole_expiries must be True or False"):
        make_market(whole_expiries="no")


def test_sim_market_quote_off_grid_strike_is_priced_on_the_surface(market):
    expiry = market.chain("SPY", NOW).nearest_expiry(35)
    spot = market.spot("SPY", NOW)
    contract = Contract("SPY", expiry, Right.PUT, round(spot * 0.6))  # below the listed range

    quote = market.quote(contract, NOW)

    assert 0.0 <= quote.bid < quote.ask < 1.0


def test_sim_market_quote_expired_contract_raises_data_error(market):
    contract = Contract("SPY", date(2025, 2, 28), Right.PUT, 450.0)

    with pytest.raises(DataError, match="expired"):
        market.quote(contract, NOW)


def test_sim_market_chain_outside_hours_is_the_closing_chain(market):
    friday = market.chain("SPY", ny(2025, 2, 28, 16, 0))
    saturday = market.chain("SPY", ny(2025, 3, 1, 12, 0))

    assert snapshot(saturday)[0] == snapshot(friday)[0]
    assert [r.quote for r in all_rows(saturday)] == [
        r.quote for r in all_rows(friday) if r.contract.expiry != date(2025, 2, 28)
    ]


def test_sim_market_chain_window_is_the_whole_chain_cut_to_the_window(market):
    # How fast a snapshot is belongs to scripts/bench_system.py (chain_snapshots_per_s).
    at = NOW + timedelta(minutes=5)
    window = market.chain("SPY", at, min_dte=21, max_dte=70)
    whole = market.chain("SPY", at)
    today = at.astimezone(NEW_YORK).date()
    inside = [e for e in whole.expiries() if 21 <= (e - today).days <= 70]
    assert window.expiries() == inside
    for expiry in inside:
        assert [r.quote for r in window.rows(expiry)] == [r.quote for r in whole.rows(expiry)]


# -- bad quotes --------------------------------------------------------------------------------


def _corrupt_market():
    chain = make_market().chain("SPY", NOW)
    expiry = chain.nearest_expiry(35)
    nan_row = chain.strike_by_delta(expiry, -0.30, Right.PUT)
    crossed_row = chain.strike_by_delta(expiry, 0.30, Right.CALL)
    verdicts = {nan_row.contract: "nan", crossed_row.contract: "crossed"}
    market = make_market(corrupt=lambda contract, now: verdicts.get(contract))
    return market, nan_row.contract, crossed_row.contract, len(all_rows(chain))


def test_sim_market_corrupt_rows_left_out_of_the_chain_and_logged():
    market, nan_contract, crossed_contract, clean_count = _corrupt_market()

    with capture_logs() as logs:
        chain = market.chain("SPY", NOW)

    contracts = {r.contract for r in all_rows(chain)}
    assert nan_contract not in contracts
    assert crossed_contract not in contracts
    assert len(contracts) == clean_count - 2
    rejected = {e["contract"]: e for e in logs if e["event"] == "quote_rejected"}
    assert set(rejected) == {nan_contract.occ, crossed_contract.occ}
    assert all(e["log_level"] == "warning" for e in rejected.values())
    assert "finite" in rejected[nan_contract.occ]["reason"]
    assert "crossed" in rejected[crossed_contract.occ]["reason"]


@pytest.mark.parametrize(("which", "reason"), [(1, "finite"), (2, "crossed")])
def test_sim_market_corrupt_quote_raises_data_error(which, reason):
    corrupted = _corrupt_market()
    market, contract = corrupted[0], corrupted[which]

    with pytest.raises(DataError, match=reason):
        market.quote(contract, NOW)


def test_sim_market_corrupt_hook_sees_the_exact_time():
    seen = []

    def hook(contract, now):
        seen.append(now)
        return None

    market = make_market(corrupt=hook)
    later = NOW + timedelta(seconds=30)
    market.chain("SPY", later)

    assert set(seen) == {later}
    assert isinstance(market.quote(next(iter(all_rows(market.chain("SPY", NOW)))).contract,
                                   NOW), Quote)


def test_sim_market_expiry_instant_consistent_with_chain_filtering(market):
    chain = market.chain("SPY", ny(2025, 3, 7, 16, 0))

    assert all(expiry_instant(e) > chain.as_of for e in chain.expiries())
    assert date(2025, 3, 7) not in chain.expiries()


@pytest.mark.parametrize("window", [(None, None), (21, 70), (0, 0)])
def test_sim_columnar_chain_equals_the_row_built_chain(window):
    # Without the corrupt hook chains are columnar; with a hook that passes everything they
    # are built row by row: the two must hold the same rows, open interest and volume too.
    plain = make_market()
    rowwise = make_market(corrupt=lambda contract, now: None)
    for now in (NOW, NOW + timedelta(minutes=47)):
        a = plain.chain("SPY", now, *window)
        b = rowwise.chain("SPY", now, *window)
        assert a.expiries() == b.expiries()
        assert len(a) == len(b)
        for expiry in a.expiries():
            assert a.rows(expiry) == b.rows(expiry)
            assert a.rows(expiry)[0].open_interest is not None
