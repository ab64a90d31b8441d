"""Specifications of the baselines (thetadesk.backtest.baselines) on a hand-set market."""

from datetime import date

import pytest

from thetadesk.backtest.baselines import buy_and_hold, put_write
from thetadesk.chain import NEW_YORK, OptionChain, OptionQuote
from thetadesk.clock import MarketCalendar
from thetadesk.errors import DataError
from thetadesk.models import Contract, Quote, Right

CAL = MarketCalendar()
SESSIONS = CAL.sessions(date(2025, 3, 3), 40)  # 2025-03-03 .. 2025-04-25
EXPIRY = date(2025, 4, 4)  # 24 days after the first session


class HandMarket:
    """Spot 100 at every open; closes from ``closes``; puts 95/100/105 expiring EXPIRY at
    bid 2.00 / ask 2.20 for the 100 strike."""

    def __init__(self, closes):
        self.closes = dict(closes)

    def spot(self, symbol, now):
        d = now.astimezone(NEW_YORK).date()
        if now >= CAL.session_close(d):
            return self.closes.get(d, 100.0)
        return 100.0

    def chain(self, symbol, now, min_dte=None, max_dte=None):
        d = now.astimezone(NEW_YORK).date()
        dte = (EXPIRY - d).days
        rows = []
        if (min_dte is None or dte >= min_dte) and (max_dte is None or dte <= max_dte):
            for k in (95.0, 100.0, 105.0):
                c = Contract("SPY", EXPIRY, Right.PUT, k)
                rows.append(OptionQuote(c, Quote(2.0 if k == 100 else 1.0, 2.2 if k == 100
                                                 else 1.2)))
        return OptionChain("SPY", 100.0, now, rows)

    def quote(self, contract, now):
        if contract.expiry <= now.astimezone(NEW_YORK).date():
            raise DataError("expired")
        return Quote(1.0, 1.2)


def test_buy_and_hold_buys_whole_shares_at_the_first_open():
    closes = {SESSIONS[0]: 101.0, SESSIONS[1]: 99.5}
    equity = buy_and_hold(HandMarket(closes), "SPY", SESSIONS[:2], 10_050.0, CAL)
    # 100 shares at 100, $50 cash
    assert equity == pytest.approx([50 + 100 * 101.0, 50 + 100 * 99.5])


def test_put_write_sells_cash_secured_atm_puts_at_the_bid_and_settles_at_expiry():
    closes = {EXPIRY: 97.0}  # 3 in the money at expiry
    sessions = [d for d in SESSIONS if d <= EXPIRY] + [SESSIONS[-1]]
    equity, trades = put_write(HandMarket(closes), "SPY", sessions, 20_500.0,
                               commission=0.65, calendar=CAL)
    # 2 puts secured (2 x 100 x 100 = 20,000 <= 20,500), premium 2.00 x 100 x 2 = 400
    assert len(trades) == 1
    t = trades[0]
    assert (t.strike, t.contracts, t.premium, t.expiry) == (100.0, 2, 2.0, EXPIRY)
    assert t.pnl == pytest.approx(400 - 1.30 - 600)
    # costs of the sale: 2 x 0.65 commission, the bid 2.00 is 0.10 below the mid 2.10
    assert t.commission == pytest.approx(1.30)
    assert t.spread == pytest.approx(0.10 * 100 * 2)
    # first close: cash 20,500 + 400 - 1.30, less the put at mid 1.10 x 200
    assert equity[0] == pytest.approx(20_500 + 400 - 1.30 - 220)
    at_expiry = sessions.index(EXPIRY)
    assert equity[at_expiry] == pytest.approx(20_500 + 400 - 1.30 - 600)
    assert equity[-1] == pytest.approx(equity[at_expiry])  # no expiry listed after: cash


def test_put_write_with_too_little_cash_sells_nothing():
    equity, trades = put_write(HandMarket({}), "SPY", SESSIONS[:3], 5_000.0, calendar=CAL)
    assert trades == []
    assert equity == [5_000.0] * 3


def test_walk_forward_baselines_count_the_put_writes_of_the_out_of_sample_sessions():
    from thetadesk.backtest.results import add_walk_forward

    sessions = [d for d in SESSIONS if d <= EXPIRY]
    wf = {"equity": [{"session": d.isoformat(), "equity": 20_500.0} for d in sessions]}
    results = add_walk_forward({"capital": 20_500.0}, wf, HandMarket({EXPIRY: 97.0}), "SPY",
                               0.65)
    put = results["walk_forward"]["baselines"]["put_write"]
    assert (put["trades"], put["win_rate"]) == (1, 0.0)  # one put, assigned 3 in the money
    assert put["final_equity"] == pytest.approx(20_500 + 400 - 1.30 - 600)


# -- interest on cash (daily_rate) --------------------------------------------------------------

DAILY = 0.001  # a visible rate: 0.1% a calendar day


def test_baselines_without_a_daily_rate_earn_no_interest():
    closes = {d: 100.0 for d in SESSIONS[:6]}
    assert buy_and_hold(HandMarket(closes), "SPY", SESSIONS[:6], 10_050.0, CAL) == (
        pytest.approx([50 + 100 * 100.0] * 6))


def test_buy_and_hold_leftover_cash_earns_each_calendar_day_from_the_next_session_on():
    closes = {d: 100.0 for d in SESSIONS[:6]}  # Monday 3 March to Monday 10 March
    equity = buy_and_hold(HandMarket(closes), "SPY", SESSIONS[:6], 10_050.0, CAL,
                          daily_rate=lambda day: DAILY)
    cash = [e - 100 * 100.0 for e in equity]
    assert cash[0] == pytest.approx(50.0)  # the first day's interest comes the next session
    assert cash[1] == pytest.approx(50.0 * (1 + DAILY))
    assert cash[4] == pytest.approx(50.0 * (1 + DAILY) ** 4)  # Friday
    assert cash[5] == pytest.approx(50.0 * (1 + DAILY) ** 7)  # Monday: the weekend too


def test_put_write_collateral_and_premium_earn_the_daily_rate():
    sessions = SESSIONS[:2]
    plain, _ = put_write(HandMarket({}), "SPY", sessions, 20_500.0, calendar=CAL)
    earning, _ = put_write(HandMarket({}), "SPY", sessions, 20_500.0, calendar=CAL,
                           daily_rate=lambda day: DAILY)
    assert plain[0] == pytest.approx(20_500 + 400 - 1.30 - 220)  # two puts sold, at mid 1.10
    assert earning[0] == pytest.approx(plain[0])
    # Tuesday: Monday's interest on all the cash, the 20,000 securing the puts included
    assert earning[1] - plain[1] == pytest.approx((20_500 + 400 - 1.30) * DAILY)


def test_put_write_interest_uses_the_rate_of_each_day():
    rates = {SESSIONS[0]: 0.0, SESSIONS[1]: 0.002}
    equity, _ = put_write(HandMarket({}), "SPY", SESSIONS[:3], 5_000.0, calendar=CAL,
                          daily_rate=lambda day: rates.get(day, 0.0))
    assert equity == pytest.approx([5_000.0, 5_000.0, 5_010.0])


def test_put_write_run_counts_held_closes_and_the_costs_of_a_put_still_held():
    from thetadesk.backtest.baselines import put_write_run
    from thetadesk.backtest.results import _costs_of_puts

    sessions = [d for d in SESSIONS if d <= EXPIRY]
    settled = put_write_run(HandMarket({EXPIRY: 97.0}), "SPY", sessions, 20_500.0,
                            commission=0.65, calendar=CAL)
    assert settled.held_sessions == sessions.index(EXPIRY)  # every close but the expiry's
    assert (settled.sales, len(settled.trades)) == (1, 1)
    # still held at the end: its sale's costs count, it is no trade yet
    held = put_write_run(HandMarket({}), "SPY", SESSIONS[:3], 20_500.0, commission=0.65,
                         calendar=CAL)
    assert (held.trades, held.held_sessions, held.sales) == ([], 3, 1)
    costs = _costs_of_puts(held)
    assert costs["commissions"] == pytest.approx(1.30)
    assert costs["spread"] == pytest.approx(20.0)
    assert costs["total"] == pytest.approx(21.30)
    assert costs["per_trade"] is None
    assert _costs_of_puts(settled)["per_trade"] == pytest.approx(21.30)
