"""Sanity of the backtester (thetadesk.backtest.engine) on the simulator: no trades means no
P&L, twice the size means twice the P&L before fees, and no decision can see the future."""

import copy
import json
from datetime import date, datetime

import pytest

from tests.unit.backtest.conftest import START, sim_data
from thetadesk.backtest.engine import Backtest, backtest_config
from thetadesk.backtest.results import build_results
from thetadesk.clock import MarketCalendar
from thetadesk.errors import ConfigError, DataError
from thetadesk.rates import TBILL_3M, tbill_3m
from thetadesk.wiring import build_market

pytestmark = pytest.mark.usefixtures("quiet_logs")
END = date(2025, 1, 17)  # ten sessions


def run(tmp_path, data, name="a", end=END, market=None, **kw):
    config, _, end, notes = backtest_config(data, source="sim", start=START, end=end, **kw)
    bt = Backtest(config, tmp_path / name, end=end, market=market, data="sim", notes=notes)
    return bt, bt.run()


def test_a_strategy_that_never_trades_has_zero_pnl(tmp_path):
    # Without the shipped config's interest on idle cash: the strategy's own P&L only.
    bt, result = run(tmp_path, sim_data(**{"strategy.min_credit_fraction": 0.99,
                                           "accounts.0.cash_interest": None}))
    results = build_results(result, bt.market)

    assert result.fills == 0
    assert result.trades == []
    assert [row.equity for row in result.sessions] == [100_000.0] * len(result.sessions)
    assert (results["total_return"], results["max_drawdown"], results["trades"]) == (0.0, 0.0, 0)
    assert results["win_rate"] is None
    assert results["sharpe"] is None
    assert results["sharpe_rf"] is None  # cash earns nothing here: undefined, not negative
    assert results["exposure"] == 0.0
    assert results["costs"]["total"] == 0.0
    assert results["costs"]["per_trade"] is None
    assert results["run"]["risk_free_rate"]["by_year"] == {"2025": TBILL_3M[2025]}


def test_a_strategy_that_never_trades_earns_the_tbill_rate_on_its_idle_cash(tmp_path):
    # The shipped config: cash earns the 3-month T-bill rate of 2025, actual/360, each calendar
    # day from the first session on credited at the next day's first tick.
    _, result = run(tmp_path, sim_data(**{"strategy.min_credit_fraction": 0.99}))
    daily = tbill_3m(START) / 360
    first = result.sessions[0].session

    assert result.fills == 0
    assert [row.equity for row in result.sessions] == pytest.approx(
        [100_000.0 * (1 + daily) ** (row.session - first).days for row in result.sessions],
        rel=1e-12)
    assert result.sessions[-1].equity > 100_000.0


GENEROUS = {
    "accounts.0.commission_per_contract": 0.0,
    "accounts.0.cash_interest": None,  # interest on the whole cash does not double with size
    "exits.ladder": [], "exits.take_profit": 0.5, "exits.hold_to_expiry": False,
    # A 5-wide spread at delta 0.25 sent at natural (the sizes below buy one and two of it).
    "strategy.width_pct": None, "strategy.short_delta": 0.25, "strategy.ladder.enabled": False,
    "strategy.min_credit_fraction": 0.15, "strategy.min_iv": 0.12,
    "accounts.0.fill_model.mid_fill_probability": False,  # no draws that differ with size
    "sizing.risk_per_trade_pct": None, "sizing.max_total_risk_pct": None,  # the dollar budget
    "sizing.max_bucket_risk_pct": None, "sizing.vol_target_iv": None,
    "accounts.0.risk": {"max_loss_per_trade": 100_000, "max_open_positions": 10,
                        "min_buying_power": 1000, "daily_loss_limit": 100_000},
    "accounts.0.breakers": {"reducing_at": None, "drawdown": {"limit": 100_000},
                            "consecutive_losses": {"limit": 100}},
}


def test_doubling_size_doubles_pnl_before_fees(tmp_path):
    # 430 buys one 5-wide spread whose max loss is 287..430 (credit 0.70..2.13), 860 two.
    _, one = run(tmp_path, sim_data(**GENEROUS, **{"accounts.0.max_risk_per_trade": 430}), "a")
    _, two = run(tmp_path, sim_data(**GENEROUS, **{"accounts.0.max_risk_per_trade": 860}), "b")

    def key(t):
        return (t.symbol, t.opened_at, t.entry_price)

    assert one.trades, "the window should close trades"
    assert [key(t) for t in one.trades] == [key(t) for t in two.trades]
    assert [2 * t.quantity for t in one.trades] == [t.quantity for t in two.trades]
    assert [2 * t.pnl for t in one.trades] == pytest.approx([t.pnl for t in two.trades])
    for a, b in zip(one.sessions, two.sessions, strict=True):
        assert b.equity - 100_000 == pytest.approx(2 * (a.equity - 100_000), abs=1e-6)


class Diverging:
    """One market until ``switch``, another after: the same past, a different future."""

    def __init__(self, before, after, switch):
        self.before, self.after, self.switch = before, after, switch

    def _at(self, now):
        return self.before if now < self.switch else self.after

    def spot(self, symbol, now):
        return self._at(now).spot(symbol, now)

    def quote(self, contract, now):
        return self._at(now).quote(contract, now)

    def chain(self, symbol, now, min_dte=None, max_dte=None):
        return self._at(now).chain(symbol, now, min_dte=min_dte, max_dte=max_dte)

    def __getattr__(self, name):
        return getattr(self.before, name)


def test_no_decision_sees_the_future(tmp_path):
    data = sim_data()
    config, _, _, _ = backtest_config(data, source="sim", start=START, end=END)
    other, _, _, _ = backtest_config(sim_data(seed=99), source="sim", start=START, end=END)
    switch = MarketCalendar().session_open(date(2025, 1, 13))
    plain = build_market(config)
    diverged = Diverging(build_market(config), build_market(other), switch)

    _, a = run(tmp_path, data, "a", market=plain)
    _bt_b, b = run(tmp_path, data, "b", market=diverged)

    def before(ledger_rows, column):
        return [r for r in ledger_rows if datetime.fromisoformat(r[column]) < switch]

    la, lb = _ledger(tmp_path / "a"), _ledger(tmp_path / "b")
    assert before(la.intents(), "decided_at"), "the past should hold intents"
    assert before(la.intents(), "decided_at") == before(lb.intents(), "decided_at")
    assert before(la.fills(), "time") == before(lb.fills(), "time")
    assert before(la.decisions(), "decided_at") == before(lb.decisions(), "decided_at")
    past = [s for s in a.sessions if s.session < switch.date()]
    assert past == [s for s in b.sessions if s.session < switch.date()]
    # ... and the future did differ, so the test could have failed
    assert [s.equity for s in a.sessions] != [s.equity for s in b.sessions]


def _ledger(state):
    from thetadesk.store import LEDGER_FILE, Ledger

    return Ledger(state / LEDGER_FILE)


def test_an_end_before_the_start_is_refused():
    with pytest.raises(ConfigError, match="--end 2025-01-02 is before the first session "
                                          "2025-01-06"):
        backtest_config(sim_data(), source="sim", start=START, end=date(2025, 1, 2))


def test_replay_keeps_spy_and_qqq_and_leaves_out_symbols_it_does_not_have():
    data = sim_data()
    data["market"]["symbols"]["IWM"] = dict(data["market"]["symbols"]["SPY"])
    data["accounts"][0]["symbols"] = [*data["accounts"][0]["symbols"], "IWM"]
    config, _, end, notes = backtest_config(data, source="replay", start=date(2015, 3, 2),
                                            end=date(2015, 3, 6))
    assert list(config.market.symbols) == ["SPY", "QQQ"]
    assert config.accounts[0].symbols == ("SPY", "QQQ")
    assert notes == ["IWM left out: the replay has SPY (S&P 500) and QQQ (NASDAQ)"]
    assert end == date(2015, 3, 6)


def test_a_used_state_dir_is_refused(tmp_path):
    run(tmp_path, sim_data(), "a", end=START)
    config, _, end, _ = backtest_config(sim_data(), source="sim", start=START, end=START)
    with pytest.raises(ConfigError, match="already holds a backtest's ledger"):
        Backtest(config, tmp_path / "a", end=end)


@pytest.mark.parametrize(("name", "mode", "extra"), [
    ("natural", "limit", {}),
    ("mid", "mid", {}),
    ("mid_slippage", "mid", {"slippage_ticks": 3}),
    ("volume_share", "limit", {"max_display_share": 0.1, "max_open_interest_share": 0.05}),
])
def test_named_fill_models_reach_the_accounts(name, mode, extra):
    config, _, _, _ = backtest_config(sim_data(), source="sim", start=START, end=END,
                                      fill_model=name, slippage_ticks=3)
    fm = config.accounts[0].fill_model
    assert fm.mode == mode
    for key, value in extra.items():
        assert getattr(fm, key) == value


def test_fill_at_mid_gets_a_better_price_than_at_natural(tmp_path):
    # Same orders on the first day; later the paths part (exits trigger at other times).
    one_order = sim_data(**{"strategy.ladder.enabled": False})  # no steps that part the runs
    _, natural = run(tmp_path, one_order, "n", end=START, fill_model="natural")
    _, mid = run(tmp_path, copy.deepcopy(one_order), "m", end=START, fill_model="mid")
    n_orders = {o["client_order_id"]: o for o in _ledger(tmp_path / "n").orders()}
    m_orders = {o["client_order_id"]: o for o in _ledger(tmp_path / "m").orders()}

    assert n_orders
    assert n_orders.keys() == m_orders.keys()
    for cid, order in n_orders.items():
        assert order["avg_fill_price"] == order["limit_price"]  # natural: at the limit
        assert m_orders[cid]["avg_fill_price"] > order["avg_fill_price"]  # mid: a better credit
    assert mid.sessions[0].equity > natural.sessions[0].equity
    # costs: the natural pays the spread, the mid (almost) none; the fees are the ledger's
    fills = _ledger(tmp_path / "n").fills()
    assert natural.costs["fills"] == len(fills) > 0
    assert natural.costs["commissions"] == pytest.approx(sum(f["commission"] for f in fills))
    assert natural.costs["spread_unknown_fills"] == 0
    assert natural.costs["spread"] > 0.01 * len(fills)
    assert abs(mid.costs["spread"]) < 0.01 * len(fills)
    assert natural.costs["total"] == pytest.approx(natural.costs["commissions"]
                                                   + natural.costs["spread"])


class QuoteBook:
    """Quotes by (OCC, time) and one spot; anything else has no quote."""

    def __init__(self, quotes, spot):
        self.quotes, self._spot = quotes, spot

    def quote(self, contract, now):
        try:
            return self.quotes[(contract.occ, now.isoformat())]
        except KeyError:
            raise DataError(f"no quote for {contract.occ}") from None

    def spot(self, symbol, now):
        return self._spot


def test_fill_costs_by_hand():
    from thetadesk.backtest.engine import fill_costs
    from thetadesk.models import Quote

    short, long_ = "SPY250221P00500000", "SPY250221P00495000"
    t0, t1 = "2025-01-06T15:00:00+00:00", "2025-01-10T15:00:00+00:00"
    market = QuoteBook({(short, t0): Quote(1.90, 2.10), (long_, t0): Quote(0.95, 1.05),
                        (short, t1): Quote(0.45, 0.55), (long_, t1): Quote(0.15, 0.25)},
                       spot=500.0)
    legs = json.dumps([{"occ": short, "ratio": -1}, {"occ": long_, "ratio": 1}])
    closing = json.dumps([{"occ": short, "ratio": 1}, {"occ": long_, "ratio": -1}])
    orders = {
        "open": {"position_id": "p1", "legs": legs, "instrument": "options", "symbol": "SPY"},
        "close": {"position_id": "p1", "legs": closing, "instrument": "options",
                  "symbol": "SPY"},
        "hedge": {"position_id": "h1", "legs": "[]", "instrument": "shares", "side": "sell",
                  "symbol": "SPY"},
        "late": {"position_id": "p2", "legs": legs, "instrument": "options", "symbol": "SPY"},
    }
    fills = [
        # mid credit 2.00 - 1.00 = 1.00, sold at the natural 1.90 - 1.05 = 0.85: 0.15 x 100 x 3
        {"client_order_id": "open", "price": 0.85, "quantity": 3, "commission": 1.95,
         "time": t0},
        # closing (ratios reversed): mid -0.50 + 0.20 = -0.30 a debit, paid at the natural
        # -0.55 + 0.15 = -0.40: 0.10 x 100 x 3
        {"client_order_id": "close", "price": -0.40, "quantity": 3, "commission": 1.95,
         "time": t1},
        # 100 shares sold at 499.99 against a spot of 500: 1.00
        {"client_order_id": "hedge", "price": 499.99, "quantity": 100, "commission": 0.0,
         "time": t1},
        # no quote at this time: unknown, not guessed
        {"client_order_id": "late", "price": 0.80, "quantity": 1, "commission": 0.65,
         "time": "2025-01-07T15:00:00+00:00"},
    ]
    costs = fill_costs(fills, orders, market, ["p1"])
    assert costs["commissions"] == pytest.approx(4.55)
    assert costs["spread"] == pytest.approx(45.0 + 30.0 + 1.0)
    assert costs["total"] == pytest.approx(4.55 + 76.0)
    assert costs["spread_unknown_fills"] == 1
    assert costs["per_trade"] == pytest.approx(45.0 + 30.0 + 3.90)
    # a closed trade with an unquoted fill has no per-trade cost
    assert fill_costs(fills, orders, market, ["p1", "p2"])["per_trade"] is None


def test_users_bars_drive_a_backtest_and_its_baseline(tmp_path):
    # Bars only (no option quotes): nothing to trade, but the run and buy-and-hold work.
    cal = MarketCalendar()
    days = cal.sessions(START, 3)
    lines = ["timestamp,symbol,open,high,low,close,volume"]
    price = 500.0
    for d in days:
        for now in cal.ticks(d, 900):
            price *= 1.0005
            lines.append(f"{now.isoformat()},SPY,{price:.2f},{price:.2f},{price:.2f},"
                         f"{price:.2f},1000")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "bars.csv").write_text("\n".join(lines) + "\n")

    config, market, end, notes = backtest_config(sim_data(), source=folder, start=START,
                                                 end=days[-1])
    assert notes == ["QQQ left out: the bars in " f"{folder / 'bars.csv'} have SPY"]
    bt = Backtest(config, tmp_path / "state", end=end, market=market, data=str(folder))
    result = bt.run()
    results = build_results(result, bt.market)

    assert result.fills == 0
    assert len(result.sessions) == 3
    assert results["baselines"]["buy_and_hold"]["total_return"] > 0  # the bars only rise


def test_users_data_needs_a_start_and_existing_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file or directory"):
        backtest_config(sim_data(), source=tmp_path / "none", start=START)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"holds no bars\.csv or bars\.parquet"):
        backtest_config(sim_data(), source=tmp_path / "empty", start=START)


def test_a_scratch_ledger_does_not_wait_for_the_disk_and_a_kept_one_does(tmp_path):
    from thetadesk.store import Ledger

    assert Ledger(tmp_path / "a.db").db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    scratch = Ledger(tmp_path / "b.db", durable=False)
    assert scratch.db.execute("PRAGMA synchronous").fetchone()[0] == 0  # OFF


NO_POLICY = {"backtest.reset_after_sessions": None}  # the shipped config resets after 5 sessions
TRIPS_AT_ONCE = {  # a drawdown breaker that the first entry's costs trip (a person resets it)
    "accounts.0.breakers": {"reducing_at": None, "drawdown": {"limit": 1, "auto_reset": "manual"},
                            "consecutive_losses": {"limit": 100}},
}


def _breaker_events(result, kind):
    return [e for e in result.breaker_events
            if (e["account"], e["name"], e["kind"]) == ("paper", "drawdown", kind)]


def test_a_manual_breaker_halts_a_backtest_for_good_without_the_reset_policy(tmp_path):
    from thetadesk.store import Ledger

    _, result = run(tmp_path, sim_data(**TRIPS_AT_ONCE, **NO_POLICY))
    (trip,) = _breaker_events(result, "tripped")
    assert _breaker_events(result, "reset") == []
    assert trip["session"] < END.isoformat()  # sessions followed the trip ...
    ledger = Ledger(tmp_path / "a" / "thetadesk.db")
    opened = [p["opened_at"] for p in ledger.positions("paper", status=None)]
    ledger.close()
    assert opened
    assert max(opened) <= trip["at"]  # ... and none of them entered a trade


def test_the_reset_policy_resets_a_manual_breaker_sessions_after_its_trip(tmp_path):
    cal = MarketCalendar()
    _, result = run(tmp_path, sim_data(**TRIPS_AT_ONCE, **{"backtest.reset_after_sessions": 2}))
    trips = _breaker_events(result, "tripped")
    resets = _breaker_events(result, "reset")
    assert resets, "the policy should have reset the breaker"
    for trip, reset in zip(trips, resets, strict=False):
        assert reset["by"] == "backtest policy"
        assert "backtest.reset_after_sessions: 2 session(s) after the trip" in reset["reason"]
        gap = cal.sessions(date.fromisoformat(trip["session"]), 10)
        assert reset["session"] == gap[2].isoformat()  # two sessions after the trip's
    assert len(trips) >= 2  # entries resumed after the reset, and tripped it again


STREAK_WARNS = {  # one losing trade puts the losing-streak breaker at its warning level
    "exits.stop_multiple": 0.05, "exits.ladder": [], "exits.take_profit": 0.9,
    "sizing.min_days_between_entries": 0,  # a new entry as soon as the last one closed
    "accounts.0.breakers": {"reducing_at": 0.25, "drawdown": {"limit": 100_000},
                            "consecutive_losses": {"limit": 40, "auto_reset": "manual"}},
}


def test_a_warning_level_no_entry_can_clear_holds_entries_back_without_the_policy(tmp_path):
    _, result = run(tmp_path, sim_data(**STREAK_WARNS, **NO_POLICY))
    warned = sorted({e["session"] for e in result.breaker_events
                     if (e["name"], e["kind"]) == ("consecutive_losses", "reducing")})
    assert len(warned) >= 3  # warned again every session: the streak cannot end by itself
    assert not [e for e in result.breaker_events if e["kind"] == "reset"]


def test_the_reset_policy_clears_a_warning_level_stuck_for_its_sessions(tmp_path):
    _, result = run(tmp_path, sim_data(**STREAK_WARNS, **{"backtest.reset_after_sessions": 2}))
    resets = [e for e in result.breaker_events
              if (e["name"], e["kind"]) == ("consecutive_losses", "reset")]
    assert resets
    assert all(r["by"] == "backtest policy" for r in resets)
    assert "REDUCING in each of the 2 session(s) before" in resets[0]["reason"]
    _, without = run(tmp_path, sim_data(**STREAK_WARNS, **NO_POLICY), "b")
    assert len(result.trades) > len(without.trades)
