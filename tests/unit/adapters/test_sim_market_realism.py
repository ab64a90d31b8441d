"""Realism of the simulated market: correlated paths, regimes, the VIX-like index, the implied
volatility surface, the listed calendar, spreads, open interest and volume, trade prints, and a
static no-arbitrage check on chains. The statistics come from ~3 seeded years of daily closes."""

import dataclasses
import itertools
import math
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from thetadesk.adapters.sim_market import REGIMES, OptionTrade, SimMarket, SimSymbol
from thetadesk.chain import NEW_YORK
from thetadesk.errors import DataError
from thetadesk.models import Right

START = date(2025, 1, 2)
RATE = 0.04
SPY = SimSymbol(spot=450.0, vol=0.18, dividend_yield=0.013, strike_step=5.0)
QQQ = SimSymbol(spot=380.0, vol=0.22, dividend_yield=0.006, strike_step=5.0)
IWM = SimSymbol(spot=210.0, vol=0.24, dividend_yield=0.012, strike_step=1.0)
SYMBOLS = {"SPY": SPY, "QQQ": QQQ}
SESSIONS = 756  # three years of sessions
STATS_SEED = 2


def ny(*args):
    return datetime(*args, tzinfo=NEW_YORK)


def make_market(seed=7, symbols=None, **kwargs):
    return SimMarket(seed, SYMBOLS if symbols is None else symbols, RATE, START, **kwargs)


def session_closes(market, count):
    cal, first = market._cal, market._first
    return [datetime.fromtimestamp(int(cal.closes[first + d]) / 1e9, tz=NEW_YORK)
            for d in range(count)]


@dataclasses.dataclass
class Run:
    market: SimMarket
    closes: list[datetime]
    spy: np.ndarray
    qqq: np.ndarray
    atm_iv: np.ndarray
    vix: np.ndarray
    regimes: list[str]

    @property
    def spy_returns(self):
        return np.diff(np.log(self.spy))


@pytest.fixture(scope="module")
def run():
    market = make_market(seed=STATS_SEED)
    closes = session_closes(market, SESSIONS)
    return Run(
        market=market,
        closes=closes,
        spy=np.array([market.spot("SPY", t) for t in closes]),
        qqq=np.array([market.spot("QQQ", t) for t in closes]),
        atm_iv=np.array([market.atm_iv("SPY", t) for t in closes]),
        vix=np.array([market.vix(t) for t in closes]),
        regimes=[market.regime(t) for t in closes],
    )


def forward_realised(returns, days=21):
    """Realised annualised volatility over the ``days`` sessions after each close."""
    return np.array([returns[i:i + days].std() * math.sqrt(252)
                     for i in range(len(returns) - days)])


# -- correlated underlyings, determinism ----------------------------------------------------------


def test_realism_a_symbols_path_does_not_depend_on_the_other_symbols():
    times = [ny(2025, 3, 3, 10, 30), ny(2025, 6, 2, 15, 59), ny(2025, 9, 9, 16, 0)]
    alone = make_market(symbols={"SPY": SPY})
    three = make_market(symbols={"IWM": IWM, "QQQ": QQQ, "SPY": SPY})
    three.spot("IWM", times[-1])

    assert [alone.spot("SPY", t) for t in times] == [three.spot("SPY", t) for t in times]
    assert [alone.regime(t) for t in times] == [three.regime(t) for t in times]
    assert alone.atm_iv("SPY", times[1]) == three.atm_iv("SPY", times[1])


def test_realism_correlation_is_configurable():
    closes = session_closes(make_market(), 300)

    def corr(rho):
        market = make_market(seed=3, correlation=rho)
        spy = np.diff(np.log([market.spot("SPY", t) for t in closes]))
        qqq = np.diff(np.log([market.spot("QQQ", t) for t in closes]))
        return float(np.corrcoef(spy, qqq)[0, 1])

    # Market jumps hit every symbol, so even a zero factor loading leaves some correlation.
    assert corr(0.0) < 0.35 < 0.75 < corr(0.85) < corr(1.0)


@pytest.mark.parametrize("value", [-0.1, 1.5, "0.8", True])
def test_realism_bad_correlation_raises_data_error(value):
    with pytest.raises(DataError, match="correlation"):
        make_market(correlation=value)


def test_realism_pickled_market_keeps_its_keyword_arguments():
    import pickle

    market = make_market(correlation=0.5, daily_expiries=("QQQ",))
    copy = pickle.loads(pickle.dumps(market))
    now = ny(2025, 3, 3, 10, 30)

    assert copy.correlation == 0.5
    assert copy.spot("SPY", now) == market.spot("SPY", now)
    assert copy.chain("SPY", now).expiries() == market.chain("SPY", now).expiries()


# -- statistics of a long seeded run ------------------------------------------------------------


def test_realism_spy_annualised_volatility_is_index_like(run):
    vol = float(run.spy_returns.std() * math.sqrt(252))

    assert 0.13 < vol < 0.22


def test_realism_daily_returns_have_negative_skew_and_fat_tails(run):
    r = run.spy_returns
    z = (r - r.mean()) / r.std()

    assert float(np.mean(z**3)) < 0.0
    assert float(np.mean(z**4)) - 3.0 > 1.0


def test_realism_volatility_clusters(run):
    sq = run.spy_returns**2

    assert float(np.corrcoef(sq[:-1], sq[1:])[0, 1]) > 0.0


def test_realism_spy_and_qqq_daily_returns_are_correlated(run):
    rho = float(np.corrcoef(np.diff(np.log(run.spy)), np.diff(np.log(run.qqq)))[0, 1])

    assert 0.75 < rho < 0.95


def test_realism_implied_volatility_carries_a_risk_premium(run):
    realised = forward_realised(run.spy_returns)
    premium = run.atm_iv[:len(realised)] - realised

    assert float(premium.mean()) > 0.0
    assert float(np.median(premium)) > 0.0


def test_realism_implied_volatility_lags_realised_right_after_shocks(run):
    r = run.spy_returns
    realised = forward_realised(r, days=10)
    premium = run.atm_iv[1:len(realised) + 1] - realised[: len(realised)]
    # premium[i]: IV at close i+1 against the 10 sessions after it; shock: return into close i+1
    z = (r - r.mean()) / r.std()
    shocks = np.where(z[:len(premium)] < -2.5)[0]

    assert len(shocks) >= 5
    assert float(premium[shocks].mean()) < float(premium.mean())
    assert float(premium[shocks].mean()) < 0.0


def test_realism_regimes_all_occur_and_persist(run):
    counts = {name: run.regimes.count(name) for name in REGIMES}
    switches = sum(a != b for a, b in itertools.pairwise(run.regimes))

    assert all(counts[name] > 20 for name in REGIMES)
    assert switches < len(run.regimes) / 10  # a Markov chain with sticky states


def test_realism_stressed_sessions_are_more_volatile_with_a_higher_vix(run):
    r = run.spy_returns
    stressed = np.array([g == "stressed" for g in run.regimes[1:]])
    calm = np.array([g == "calm" for g in run.regimes[1:]])
    vix = run.vix[1:]

    assert r[stressed].std() > 1.5 * r[calm].std()
    assert vix[stressed].mean() > vix[calm].mean() + 3.0


def test_realism_vix_tracks_30_day_atm_iv_above_it_for_the_skew(run):
    ratio = run.vix / (100.0 * run.atm_iv)

    assert 8.0 < run.vix.min()
    assert run.vix.max() < 90.0
    assert np.all(ratio > 1.0)  # the put wing lifts the variance swap above ATM
    assert np.all(ratio < 1.3)
    assert float(np.corrcoef(run.vix, run.atm_iv)[0, 1]) > 0.95


# -- the surface in calm and stress ------------------------------------------------------------


def _day_in(run, regime, after=30):
    for t, g in zip(run.closes[after:], run.regimes[after:], strict=True):
        if g == regime:
            return t.replace(hour=12, minute=0)
    raise AssertionError(f"no {regime} session")


def _atm_row_iv(chain, expiry):
    forward = chain.spot * math.exp((RATE - 0.013) * chain.years_to_expiry(expiry))
    row = min(chain.rows(expiry, Right.CALL), key=lambda r: abs(r.contract.strike - forward))
    return row.iv


def _put_skew(chain, expiry):
    """IV of the 25-delta put minus the ATM IV, per unit of ATM IV."""
    put = chain.strike_by_delta(expiry, -0.25, Right.PUT)
    atm = _atm_row_iv(chain, expiry)
    return (put.iv - atm) / atm


def test_realism_put_skew_steeper_and_term_structure_inverted_in_stress(run):
    market = run.market
    calm = market.chain("SPY", _day_in(run, "calm"))
    stressed = market.chain("SPY", _day_in(run, "stressed"))

    def term(chain):
        return _atm_row_iv(chain, chain.nearest_expiry(60)) - _atm_row_iv(
            chain, chain.nearest_expiry(7))

    assert _put_skew(stressed, stressed.nearest_expiry(30)) > _put_skew(
        calm, calm.nearest_expiry(30))
    assert term(calm) > 0.0  # upward sloping
    assert term(stressed) < 0.0  # inverted


# -- listing, spreads, open interest and volume -------------------------------------------------


def test_realism_monthly_third_friday_is_listed_beyond_the_weeklies():
    chain = make_market().chain("SPY", ny(2025, 3, 3, 10, 30))
    far = [e for e in chain.expiries() if chain.dte(e) > 70]

    assert far
    assert all(e.weekday() == 4 and 15 <= e.day <= 21 for e in far)
    assert max(chain.dte(e) for e in far) <= 120


def _half_spreads(rows):
    return np.array([(r.quote.ask - r.quote.bid) / 2.0 for r in rows])


def test_realism_spreads_widen_away_from_the_money_for_cheap_options_and_in_stress(run):
    market = run.market
    calm_t, stressed_t = _day_in(run, "calm"), _day_in(run, "stressed")
    for when in (calm_t, stressed_t):
        chain = market.chain("SPY", when)
        expiry = chain.nearest_expiry(35)
        puts = [r for r in chain.rows(expiry, Right.PUT) if r.quote.bid > 0.0]
        atm = min(puts, key=lambda r: abs(r.contract.strike - chain.spot))
        far = min(puts, key=lambda r: abs(r.contract.strike - 0.85 * chain.spot))
        relative = [(r.quote.ask - r.quote.bid) / r.quote.mid for r in (atm, far)]
        assert relative[1] > relative[0]  # cheaper, further out: wider relative to price

    def atm_relative_spread(when):
        chain = market.chain("SPY", when)
        expiry = chain.nearest_expiry(35)
        row = min(chain.rows(expiry, Right.CALL), key=lambda r: abs(r.contract.strike - chain.spot))
        return (row.quote.ask - row.quote.bid) / row.quote.mid

    assert atm_relative_spread(stressed_t) > 1.5 * atm_relative_spread(calm_t)


def test_realism_open_interest_and_volume_concentrate_near_the_money_and_round_strikes():
    market = make_market(symbols={"IWM": IWM})  # $1 strikes: round strikes stand out
    chain = market.chain("IWM", ny(2025, 3, 3, 14, 0))
    every = [r for e in chain.expiries() for r in chain.rows(e)]
    rows = chain.rows(chain.nearest_expiry(35))

    assert all(isinstance(r.open_interest, int) and r.open_interest >= 0 for r in every)
    assert all(isinstance(r.volume, int) and r.volume >= 0 for r in every)
    near = [r for r in rows if abs(math.log(r.contract.strike / chain.spot)) < 0.03]
    far = [r for r in rows if abs(math.log(r.contract.strike / chain.spot)) > 0.15]
    assert np.mean([r.open_interest for r in near]) > 4 * np.mean([r.open_interest for r in far])
    assert np.mean([r.volume for r in near]) > 4 * np.mean([r.volume for r in far])
    tens = [r.open_interest for r in near if r.contract.strike % 10 == 0]
    fives = [r.open_interest for r in near if r.contract.strike % 5 == 0
             and r.contract.strike % 10 != 0]
    others = [r.open_interest for r in near if r.contract.strike % 5 != 0]
    assert np.mean(tens) > np.mean(fives) > np.mean(others)


def test_realism_volume_accumulates_through_the_session_open_interest_does_not():
    market = make_market()
    contract_rows = {}
    for hour in (9, 12, 15):
        chain = market.chain("SPY", ny(2025, 3, 3, hour, 45))
        expiry = date(2025, 3, 21)
        contract_rows[hour] = {r.contract: r for r in chain.rows(expiry)}
    common = set.intersection(*(set(rows) for rows in contract_rows.values()))
    volume = [sum(contract_rows[h][c].volume for c in common) for h in (9, 12, 15)]
    oi = [sum(contract_rows[h][c].open_interest for c in common) for h in (9, 12, 15)]

    assert volume[0] < volume[1] < volume[2]
    assert oi[0] == oi[1] == oi[2]


# -- trade prints --------------------------------------------------------------------------------


def test_realism_trades_are_deterministic_and_windows_nest():
    start, end = ny(2025, 3, 3, 9, 30), ny(2025, 3, 3, 11, 0)
    a = make_market().trades("SPY", start, end)
    b = make_market().trades("SPY", start, end)
    inner = make_market().trades("SPY", ny(2025, 3, 3, 10, 7), ny(2025, 3, 3, 10, 41))

    assert a == b
    assert len(a) > 100
    assert inner == [t for t in a if ny(2025, 3, 3, 10, 7) <= t.time < ny(2025, 3, 3, 10, 41)]
    assert [t.time for t in a] == sorted(t.time for t in a)
    assert all(start <= t.time < end for t in a)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a[0].size = 1


def test_realism_trades_print_at_the_quote_with_valid_fields():
    market = make_market()
    start = ny(2025, 3, 3, 13, 0)
    trades = market.trades("SPY", start, start + timedelta(minutes=30))

    assert all(isinstance(t, OptionTrade) for t in trades)
    assert {t.aggressor for t in trades} == {"buy", "sell"}
    assert all(t.size >= 1 and t.price > 0.0 for t in trades)
    assert len({t.exchange for t in trades}) > 3
    for t in trades[:200]:
        q = market.quote(t.contract, start)  # the bucket's quote
        assert q.bid <= t.price <= q.ask
        if t.aggressor == "buy" and t.price not in (q.bid, q.ask):
            assert t.price == pytest.approx((q.bid + q.ask) / 2, abs=0.006)


def test_realism_trade_intensity_follows_volume():
    market = make_market()
    day_open, day_close = ny(2025, 3, 3, 9, 30), ny(2025, 3, 3, 16, 0)
    trades = market.trades("SPY", day_open, day_close)
    closing = market.chain("SPY", day_close - timedelta(minutes=1))
    prints: dict = {}
    for t in trades:
        prints[t.contract] = prints.get(t.contract, 0) + t.size
    rows = [r for e in closing.expiries() for r in closing.rows(e) if r.contract in prints]
    volumes = np.array([r.volume for r in rows], dtype=float)
    traded = np.array([prints[r.contract] for r in rows], dtype=float)

    assert float(np.corrcoef(volumes, traded)[0, 1]) > 0.7
    assert 0.5 < traded.sum() / volumes.sum() < 2.0


def test_realism_no_trades_outside_sessions_or_in_empty_windows():
    market = make_market()

    assert market.trades("SPY", ny(2025, 3, 1, 0, 0), ny(2025, 3, 3, 9, 30)) == []  # weekend
    assert market.trades("SPY", ny(2025, 3, 3, 12, 0), ny(2025, 3, 3, 12, 0)) == []
    with pytest.raises(DataError, match="unknown symbol"):
        market.trades("IWM", ny(2025, 3, 3, 12, 0), ny(2025, 3, 3, 13, 0))


# -- static no-arbitrage -------------------------------------------------------------------------


def _arbitrage_times(run):
    stressed = [t for t, g in zip(run.closes, run.regimes, strict=True) if g == "stressed"]
    picks = [ny(2025, 3, 3, 10, 30), _day_in(run, "calm"), stressed[0].replace(hour=10),
             stressed[len(stressed) // 2].replace(hour=15, minute=30),
             stressed[-1].replace(hour=11)]
    return picks


def test_realism_chains_are_free_of_static_arbitrage_within_the_spread(run):
    market = run.market
    checked = 0
    for when in _arbitrage_times(run):
        for symbol, spec in SYMBOLS.items():
            chain = market.chain(symbol, when)
            S = chain.spot
            for expiry in chain.expiries():
                T = chain.years_to_expiry(expiry)
                calls = chain.rows(expiry, Right.CALL)
                puts = chain.rows(expiry, Right.PUT)
                c_mid = np.array([r.quote.mid for r in calls])
                p_mid = np.array([r.quote.mid for r in puts])
                c_half, p_half = _half_spreads(calls), _half_spreads(puts)
                K = np.array([r.contract.strike for r in calls])
                # Calls: non-increasing in strike, within the two quotes' half spreads.
                assert np.all(c_mid[1:] - c_mid[:-1] <= c_half[1:] + c_half[:-1] + 1e-9), (
                    symbol, when, expiry)
                # Calls: convex in strike (equal spacing), within the three half spreads.
                fly = c_mid[:-2] - 2 * c_mid[1:-1] + c_mid[2:]
                slack = c_half[:-2] + 2 * c_half[1:-1] + c_half[2:]
                assert np.all(fly >= -slack - 1e-9), (symbol, when, expiry)
                # Put-call parity within the half spreads plus a cent.
                parity = c_mid - p_mid - (S * math.exp(-spec.dividend_yield * T)
                                          - K * math.exp(-RATE * T))
                assert np.all(np.abs(parity) <= c_half + p_half + 0.01 + 1e-9), (
                    symbol, when, expiry)
                checked += len(calls)
    assert checked > 5000
