"""Shared factories: a seeded simulated market, a paper broker, a ledger, engines."""

from datetime import UTC, date, datetime, time

import pytest

from thetadesk.account import AccountEngine, AccountRules
from thetadesk.adapters.sim_broker import SimBroker
from thetadesk.adapters.sim_market import SimMarket, SimSymbol
from thetadesk.exits import ExitRules
from thetadesk.risk.engine import RiskEngine
from thetadesk.risk.limits import RiskLimits
from thetadesk.store import Ledger
from thetadesk.symbol import BullPutRules, SymbolEngine

START = date(2025, 1, 6)
# 11:00 New York on a Monday in January (16:00 UTC), inside the entry window.
MORNING = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)
RULES = BullPutRules(target_dte=35, min_dte=21, short_delta=0.25, width=5.0, min_iv=0.0,
                     min_credit_fraction=0.05, entry_start=time(10, 0), entry_end=time(15, 30))
LIMITS = RiskLimits(max_loss_per_trade=1500, max_open_positions=4, min_buying_power=10_000,
                    daily_loss_limit=2000)


def make_market(corrupt=None, seed=7, **kwargs):
    return SimMarket(seed=seed, symbols={"SPY": SimSymbol(580.0, 0.16, 0.013, 5.0),
                                         "QQQ": SimSymbol(500.0, 0.20, 0.006, 5.0)},
                     rate=0.04, start=START, corrupt=corrupt, **kwargs)


@pytest.fixture
def market():
    return make_market()


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "thetadesk.db")
    yield led
    led.close()


@pytest.fixture
def broker(tmp_path, market):
    b = SimBroker("paper", market, tmp_path / "paper.db", starting_cash=100_000,
                  commission_per_contract=0.65)
    yield b
    b.close()


@pytest.fixture
def risk(ledger):
    return RiskEngine(ledger, {"paper": LIMITS})


def account_rules(max_risk=1000.0, close_dte=7):
    return AccountRules("paper", ("SPY", "QQQ"), max_risk, ExitRules(0.5, 2.0, close_dte))


@pytest.fixture
def make_engine(ledger, market, risk):
    def make(broker, now=MORNING, rules=None, gate=None):
        return AccountEngine(rules or account_rules(), ledger, broker, market,
                             gate or risk.check, now)

    return make


@pytest.fixture
def intent(market):
    tick = SymbolEngine("SPY", RULES, market).tick(MORNING)
    assert tick.intents, tick.note
    return tick.intents[0]
