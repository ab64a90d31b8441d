import json
import re
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from thetadesk.models import Contract, Leg, Right
from thetadesk.notify.desk import (
    day_pnl,
    period_pnl,
    pnl_reply,
    positions_reply,
    risk_reply,
    status_reply,
)
from thetadesk.risk.breakers import State
from thetadesk.risk.gate import PortfolioLimits
from thetadesk.store import Ledger

# Wednesday 2025-01-15, 11:00 New York. 02:00 UTC on the 16th is still the 15th in New York.
NOW = datetime(2025, 1, 15, 16, 0, tzinfo=UTC)
LATE = datetime(2025, 1, 16, 2, 0, tzinfo=UTC)
EXPIRY = date(2025, 2, 21)


def lines(reply):
    """The reply's lines with the <pre> tags taken off (text stays escaped)."""
    return re.sub(r"</?pre>", "", reply).splitlines()


def spread(short=570.0, long=565.0, symbol="SPY"):
    return (Leg(Contract(symbol, EXPIRY, Right.PUT, short), -1),
            Leg(Contract(symbol, EXPIRY, Right.PUT, long), 1))


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "desk.db")
    yield led
    led.close()


@pytest.fixture
def book(ledger):
    """paper: two open SPY/QQQ spreads, one closed winner, sessions across two months."""
    ledger.open_position(position_id="p1", account="paper", symbol="SPY",
                         strategy="bull_put_credit", legs=spread(), quantity=2, entry_price=1.25,
                         max_loss_per_spread=375.0, max_profit_per_spread=125.0, commission=0.0,
                         now=NOW)
    ledger.open_position(position_id="p2", account="paper", symbol="QQQ",
                         strategy="bull_put_credit", legs=spread(480.0, 475.0, "QQQ"),
                         quantity=1, entry_price=1.0, max_loss_per_spread=400.0,
                         max_profit_per_spread=100.0, commission=0.0, now=NOW)
    ledger.open_position(position_id="p3", account="paper", symbol="SPY",
                         strategy="iron_<condor>", legs=spread(560.0, 555.0), quantity=1,
                         entry_price=2.0, max_loss_per_spread=300.0, max_profit_per_spread=200.0,
                         commission=0.0, now=NOW)
    # Closing debit of 0.50 per share: (2.00 - 0.50) * 100 = +150.
    ledger.close_position("p3", quantity=1, exit_price=-0.5, commission=0.0, reason="target",
                          multiplier=100, now=NOW)
    ledger.apply_shares(account="paper", symbol="SPY", change=100, price=500.0, commission=0.0,
                        now=NOW)
    ledger.apply_shares(account="paper", symbol="SPY", change=-100, price=499.0, commission=0.0,
                        now=NOW)  # -100 realised
    for session, start, end in ((date(2024, 12, 31), 99_000.0, 100_000.0),   # last month
                                (date(2025, 1, 10), 100_000.0, 100_400.0),   # last week
                                (date(2025, 1, 13), 100_400.0, 100_300.0),   # Monday
                                (date(2025, 1, 15), 100_300.0, 100_550.0)):  # today
        ledger.start_day(account="paper", session=session, equity=start)
        ledger.end_day(account="paper", session=session, equity=end, cash=end, open_positions=2)
    figures = {"at": "2025-01-15T16:00:00+00:00", "delta": {"QQQ": 8.5, "SPY": 12.25},
               "gamma": {"SPY": -1.5}, "beta_weighted_delta": 20.0,
               "vega_per_vol_point": -45.5, "theta_per_day": 18.75, "var95": 600.0,
               "var99": 900.0, "es95": 750.0, "es99": 1100.0, "total_max_loss": 1150.0,
               "positions": {"QQQ": 1, "SPY": 1}}
    ledger.set_state("risk_figures:paper", json.dumps(figures))
    return ledger


def test_period_pnl_sums_the_sessions_of_the_period(book):
    assert day_pnl(book, "paper", date(2025, 1, 15)) == 250.0
    assert period_pnl(book, "paper", date(2025, 1, 13), date(2025, 1, 15)) == 150.0
    assert period_pnl(book, "paper", date(2025, 1, 1), date(2025, 1, 15)) == 550.0
    assert period_pnl(book, "paper", date(2025, 1, 14), date(2025, 1, 14)) is None
    assert day_pnl(book, "paper", date(2025, 1, 14)) is None


def test_status_shows_run_state_equity_todays_pnl_and_tripped_breakers(book):
    book.set_state("sim_now", "2025-01-15T16:00:00+00:00")
    book.set_state("sim_last_tick", "2025-01-15T15:59:00+00:00")
    book.record_actor_event(actor="supervisor", kind="started", now=NOW)
    breakers = {"paper": {
        "daily_loss": SimpleNamespace(state=State.HALTED, reason="loss > $2,000 & <more>"),
        "drawdown": SimpleNamespace(state=State.ACTIVE, reason=None)}}
    reply = status_reply(book, ["paper"], LATE, breakers)
    assert "supervisor: running" in reply
    assert "last finished tick: 2025-01-15T15:59:00+00:00" in reply
    assert "Session 2025-01-15" in reply  # the New York date of 02:00 UTC on the 16th
    line = next(x for x in lines(reply) if x.startswith("paper "))
    assert line.split() == ["paper", "$100,550.00", "+$250.00"]
    assert "daily_loss  halted  loss &gt; $2,000 &amp; &lt;more&gt;" in reply
    assert "drawdown" not in reply
    assert "<pre>" in reply
    assert "<more>" not in reply


def test_status_of_a_stopped_run_with_all_breakers_active(book):
    book.record_actor_event(actor="supervisor", kind="stopped", now=NOW)
    reply = status_reply(book, ["paper"], NOW,
                         {"paper": {"daily_loss": SimpleNamespace(state=State.ACTIVE,
                                                                  reason=None)}})
    assert "supervisor: stopped" in reply
    assert "paper breakers: all active" in reply


def test_status_of_an_empty_ledger(ledger):
    reply = status_reply(ledger, ["paper"], NOW, None)
    assert "supervisor: not started" in reply
    assert "tick in progress: n/a" in reply
    assert next(x for x in lines(reply) if x.startswith("paper ")).split() == [
        "paper", "n/a", "n/a"]
    assert "paper breakers: unknown" in reply


def test_positions_lists_open_spreads_values_and_greeks(book):
    reply = positions_reply(book, ["paper"], {"paper": {"p1": 0.75}})
    assert "paper: 2 open positions" in reply
    spy = next(x for x in lines(reply) if x.startswith("SPY "))
    # (1.25 - 0.75) * 100 * 2 = +100
    assert spy.split() == ["SPY", "bull_put_credit", "570P", "565P", "2025-02-21", "2", "1.25",
                           "0.75", "+$100.00"]
    qqq = next(x for x in lines(reply) if x.startswith("QQQ "))
    assert qqq.split()[-2:] == ["n/a", "n/a"]
    assert "iron_" not in reply  # closed
    greeks = {x.rsplit(None, 1)[0].strip(): x.split()[-1] for x in lines(reply)
              if x.startswith(("delta", "gamma", "beta", "vega", "theta"))}
    assert greeks == {"delta (shares) QQQ": "+8.50", "delta (shares) SPY": "+12.25",
                      "gamma (shares/$1) SPY": "-1.50", "beta-wtd delta (SPY sh)": "+20.00",
                      "vega $/vol pt": "-45.50", "theta $/day": "+18.75"}


def test_positions_of_an_empty_ledger(ledger):
    reply = positions_reply(ledger, ["paper"], None)
    assert "<b>paper</b>\nno open positions" in reply
    assert "paper Greeks: no risk figures yet" in reply


def test_pnl_by_period_and_strategy_with_escaping(book):
    reply = pnl_reply(book, ["paper"], LATE)
    rows = {x.rsplit(None, 1)[0].strip(): x.split()[-1] for x in lines(reply)
            if x.startswith(("today", "week to date", "month to date"))}
    assert rows == {"today": "+$250.00", "week to date": "+$150.00",
                    "month to date": "+$550.00"}
    assert "iron_&lt;condor&gt;" in reply
    assert "<condor>" not in reply
    condor = next(x for x in lines(reply) if x.startswith("iron_"))
    assert condor.split()[1:] == ["1", "1", "+$150.00"]
    put = next(x for x in lines(reply) if x.startswith("bull_put_credit"))
    assert put.split()[1:] == ["2", "0", "+$0.00"]
    shares = next(x for x in lines(reply) if x.startswith("shares"))
    assert shares.split()[1:] == ["0", "0", "-$100.00"]
    total = next(x for x in lines(reply) if x.startswith("total"))
    assert total.split()[1:] == ["3", "1", "+$50.00"]


def test_pnl_of_an_empty_ledger(ledger):
    reply = pnl_reply(ledger, ["paper"], NOW)
    assert next(x for x in lines(reply) if x.startswith("today")).split() == ["today", "n/a"]
    assert "paper: no trades yet" in reply


def test_risk_shows_figures_limit_usage_and_breakers(book):
    limits = {"paper": PortfolioLimits(max_var99=1200.0, max_delta_shares=50.0,
                                       max_theta_per_day=None, max_es95=500.0,
                                       max_positions_per_symbol=2)}
    breakers = {"paper": {"vol": SimpleNamespace(state=State.REDUCING, reason="VIX > 30")}}
    reply = risk_reply(book, ["paper"], limits, breakers)
    figures = {x.rsplit(None, 1)[0].strip(): x.split()[-1] for x in lines(reply)
               if x.startswith(("VaR", "ES", "total max loss")) and not x.endswith("%")}
    assert figures == {"VaR 95% 1d": "600.00", "VaR 99% 1d": "900.00", "ES 95% 1d": "750.00",
                       "ES 99% 1d": "1,100.00", "total max loss": "1,150.00"}
    usage = {x.split("  ")[0]: x.split()[-1] for x in lines(reply)
             if x.endswith("%") and x.startswith(("VaR 99%", "ES 95%", "delta (shares) "))}
    assert usage == {"VaR 99%": "75%", "ES 95%": "150%", "delta (shares) QQQ": "17%",
                     "delta (shares) SPY": "24%"}
    assert next(x for x in lines(reply) if x.startswith("positions per symbol SPY")).split()[
        -3:] == ["1", "2", "50%"]
    assert not [x for x in lines(reply) if x.startswith("theta") and x.endswith("%")]
    assert next(x for x in lines(reply) if x.startswith("vol ")).split() == [
        "vol", "reducing", "VIX", "&gt;", "30"]


def test_risk_of_an_empty_ledger(ledger):
    reply = risk_reply(ledger, ["paper"], {"paper": PortfolioLimits(max_var95=1000.0)}, None)
    assert "paper: no risk figures yet" in reply
    assert next(x for x in lines(reply) if x.startswith("VaR 95%")).split() == [
        "VaR", "95%", "n/a", "1,000.00", "n/a"]
    assert "paper breakers: unknown" in reply
    assert "no portfolio limits configured" in risk_reply(ledger, ["paper"], None, None)
