"""Read commands over several accounts: each account, the total, and one account on request."""

import json
from datetime import date
from types import SimpleNamespace

import pytest

from tests.unit.notify.test_bot import CHAT, FakeDesk
from tests.unit.notify.test_desk import NOW, book, lines, spread  # noqa: F401 (fixture)
from thetadesk.config import ALL_ACCOUNTS
from thetadesk.notify.bot import desk_handlers
from thetadesk.notify.commands import CommandRouter
from thetadesk.notify.desk import pnl_reply, risk_reply, status_reply
from thetadesk.risk.breakers import State
from thetadesk.risk.gate import PortfolioLimits


@pytest.fixture
def two(book):  # noqa: F811
    """book's paper account, and ira: one open SPY spread, a +$80 realised winner, today -$30."""
    book.open_position(position_id="i1", account="ira", symbol="SPY", strategy="bull_put_credit",
                       legs=spread(), quantity=1, entry_price=1.1, max_loss_per_spread=390.0,
                       max_profit_per_spread=110.0, commission=0.0, now=NOW)
    book.open_position(position_id="i2", account="ira", symbol="SPY", strategy="bull_put_credit",
                       legs=spread(550.0, 545.0), quantity=1, entry_price=1.0,
                       max_loss_per_spread=400.0, max_profit_per_spread=100.0, commission=0.0,
                       now=NOW)
    book.close_position("i2", quantity=1, exit_price=-0.2, commission=0.0, reason="target",
                        multiplier=100, now=NOW)  # (1.00 - 0.20) * 100 = +80
    book.start_day(account="ira", session=date(2025, 1, 15), equity=50_000.0)
    book.end_day(account="ira", session=date(2025, 1, 15), equity=49_970.0, cash=49_970.0,
                 open_positions=1)
    total = {"at": "2025-01-15T16:00:00+00:00", "delta": {"SPY": 20.0}, "var99": 1500.0,
             "es99": 1800.0, "total_max_loss": 1540.0, "positions": {"SPY": 2, "QQQ": 1}}
    book.set_state(f"risk_figures:{ALL_ACCOUNTS}", json.dumps(total))
    return book


def _row(reply, first):
    return next(x for x in lines(reply) if x.split() and x.split()[0] == first).split()


def test_status_adds_a_total_row_and_the_global_breaker(two):
    breakers = {"paper": {}, "ira": {}, ALL_ACCOUNTS: {
        "daily_loss": SimpleNamespace(state=State.HALTED, reason="day P&L -$3,100 together")}}
    reply = status_reply(two, ["paper", "ira"], NOW, breakers, total=["paper", "ira"])
    assert _row(reply, "paper") == ["paper", "$100,550.00", "+$250.00"]
    assert _row(reply, "ira") == ["ira", "$49,970.00", "-$30.00"]
    assert _row(reply, "total") == ["total", "$150,520.00", "+$220.00"]
    assert "all accounts breakers" in reply
    assert "day P&amp;L -$3,100 together" in reply
    alone = status_reply(two, ["ira"], NOW, breakers)
    assert "total" not in alone
    assert "all accounts breakers" not in alone


def test_pnl_adds_the_accounts_together(two):
    reply = pnl_reply(two, ["paper", "ira"], NOW, total=["paper", "ira"])
    assert "all accounts P&amp;L (2025-01-15)" in reply
    today = [x.split() for x in lines(reply) if x.startswith("today")]
    assert today == [["today", "+$250.00"], ["today", "-$30.00"], ["today", "+$220.00"]]
    # Realised by strategy together: paper +150 (iron condor) and -100 (shares), ira +80.
    totals = [x.split() for x in lines(reply) if x.startswith("total")]
    assert totals[-1] == ["total", "5", "2", "+$130.00"]


def test_risk_of_all_accounts_shows_the_global_limits_usage(two):
    limits = {ALL_ACCOUNTS: PortfolioLimits(max_var99=3000.0, max_delta_shares=40.0)}
    reply = risk_reply(two, [ALL_ACCOUNTS], limits, {ALL_ACCOUNTS: {}})
    assert "all accounts risk at 2025-01-15T16:00:00+00:00" in reply
    usage = [x.split() for x in lines(reply) if x.startswith(("VaR 99%", "delta (shares) SPY"))]
    assert ["VaR", "99%", "1,500.00", "3,000.00", "50%"] in usage
    assert ["delta", "(shares)", "SPY", "20.00", "40.00", "50%"] in usage
    assert "all accounts breakers: all active" in reply


@pytest.fixture
def router(two):
    handlers = desk_handlers(two, ["paper", "ira"], FakeDesk(), lambda: "telegram:1")
    return CommandRouter([CHAT], handlers, clock=lambda: 0.0)


def test_commands_cover_every_account_and_the_total_by_default(router):
    reply = router.handle(CHAT, "/pnl")
    assert "paper P&amp;L" in reply
    assert "ira P&amp;L" in reply
    assert "all accounts P&amp;L" in reply
    assert "all accounts risk" in router.handle(CHAT, "/risk")
    assert "all accounts: 3 open positions" in router.handle(CHAT, "/positions")


def test_an_account_argument_narrows_and_all_gives_the_total_alone(router):
    ira = router.handle(CHAT, "/pnl ira")
    assert "ira P&amp;L" in ira
    assert "paper" not in ira
    assert "all accounts" not in ira
    total = router.handle(CHAT, "/pnl all")
    assert "all accounts P&amp;L" in total
    assert "ira P&amp;L" not in total
    assert "paper" not in router.handle(CHAT, "/positions IRA")
    status = router.handle(CHAT, "/status all")
    assert _row(status, "total")[0] == "total"


def test_an_unknown_account_gets_the_list_of_accounts(router):
    reply = router.handle(CHAT, "/pnl acct9")
    assert reply == ("/pnl takes one account name or 'all' (the accounts are paper, ira); "
                     "got 'acct9'.")
    assert "takes one account name" in router.handle(CHAT, "/risk ira paper")
