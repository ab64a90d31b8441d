"""Risk across accounts: global limits over every account's book together, the global breaker
that halts every account, and the totals the risk report keeps."""

import copy
from dataclasses import replace
from datetime import timedelta

import pytest

from tests.unit.conftest import LIMITS, MORNING, make_market
from tests.unit.risk.test_gate import builder, request, spy_put_spread
from tests.unit.test_config import _data, _error
from thetadesk.config import ALL_ACCOUNTS, parse_config
from thetadesk.messages import AccountTick
from thetadesk.risk.breakers import BreakerLimits, BreakerWatch, breaker_limits_from_config
from thetadesk.risk.engine import RiskEngine
from thetadesk.risk.gate import PortfolioLimits, global_limits_from_config
from thetadesk.wiring import build_risk_engine

ACCOUNTS = ("ira", "paper")


def hold(ledger, account, spread, quantity, position_id):
    ledger.open_position(position_id=position_id, account=account, symbol="SPY",
                         strategy="bull_put_credit", legs=spread.legs, quantity=quantity,
                         entry_price=1.0, max_loss_per_spread=400.0, max_profit_per_spread=100.0,
                         commission=0.0, now=MORNING)


def gate(ledger, market, global_limits=None, breakers=None, **own):
    return RiskEngine(ledger, dict.fromkeys(ACCOUNTS, LIMITS),
                      dict.fromkeys(ACCOUNTS, PortfolioLimits(**own)), builder(market),
                      breakers=breakers, global_limits=global_limits)


def tick(account, day_pnl, equity=100_000.0, now=MORNING):
    return AccountTick(account, now, equity=equity + day_pnl, cash=equity, buying_power=equity,
                       day_pnl=day_pnl, open_positions=1)


def test_global_total_loss_counts_every_accounts_book(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    hold(ledger, "ira", spread, 2, "p-ira")  # $800 max loss in the other account
    engine = gate(ledger, market, PortfolioLimits(max_total_loss=1000.0), max_total_loss=1000.0)

    verdict = engine.check(request(spread.legs, max_loss=400.0))  # paper's own: $400 of $1,000

    assert (verdict.approved, verdict.check) == (False, "global_max_total_loss")
    assert verdict.reason == ("all accounts: open max loss would be $1,200.00 (now $800.00), "
                              "the limit is $1,000.00")
    assert engine.check(request(spread.legs, max_loss=150.0, cid="c2")).approved


def test_global_delta_adds_the_accounts_books_and_records_the_figures(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    hold(ledger, "ira", spread, 4, "p-ira")
    alone = gate(ledger, market).exposure("ira", MORNING).delta["SPY"]
    one = gate(ledger, market).exposure("paper", MORNING)
    assert "SPY" not in one.delta
    # A limit the other account's delta alone nearly fills: one more spread in paper breaks it.
    limit = abs(alone) * 1.1
    engine = gate(ledger, market, PortfolioLimits(max_delta_shares=limit))

    verdict = engine.check(request(spread.legs, quantity=2))

    assert (verdict.approved, verdict.check) == (False, "global_max_delta")
    assert verdict.reason.startswith("all accounts: net SPY delta would be")
    row = ledger.verdicts("paper")[-1]
    assert "global" in row["request"]
    assert engine.check(request(spread.legs, quantity=2, cid="c2")).approved is False
    # Without the global limit the same order passes its own (unset) limits.
    assert gate(ledger, market).check(request(spread.legs, quantity=2, cid="c3")).approved


def test_closing_orders_pass_the_global_limits(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    hold(ledger, "ira", spread, 4, "p-ira")
    engine = gate(ledger, market, PortfolioLimits(max_total_loss=1.0, max_delta_shares=1.0))
    assert engine.check(request(spread.legs, opening=False)).approved


def test_global_breaker_trips_on_the_accounts_day_together_and_halts_every_account(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    limits = dict.fromkeys(ACCOUNTS, BreakerLimits(daily_loss_limit=2000.0))
    limits[ALL_ACCOUNTS] = BreakerLimits(daily_loss_limit=3000.0, reducing_at=0.5)
    engine = gate(ledger, market, breakers=limits)
    watch = BreakerWatch(ledger, limits)

    # -1,000 each: every account within its own limit, -2,000 together: REDUCING (50%).
    ticks = [tick("ira", -1000.0), tick("paper", -1000.0)]
    assert watch.needed(ticks)
    alerts = engine.update(MORNING, ticks)
    assert [(a.kind, a.key) for a in alerts] == [
        ("breaker_reducing", f"{ALL_ACCOUNTS}:daily_loss:2025-01-06:reducing")]
    refused = engine.check(request(spread.legs))
    assert (refused.approved, refused.check) == (False, "global_daily_loss")
    assert refused.reason.startswith("all accounts: the daily loss breaker is reducing")
    assert engine.check(replace(request(spread.legs, cid="h"), reduces_risk=True)).approved

    # -1,600 each: -3,200 together trips the global breaker; no account's own breaker trips.
    later = MORNING + timedelta(minutes=30)
    alerts = engine.update(later, [tick("ira", -1600.0, now=later),
                                   tick("paper", -1600.0, now=later)])
    assert [a.key for a in alerts] == [f"{ALL_ACCOUNTS}:daily_loss:2025-01-06"]
    assert "new entries halted in every account" in alerts[0].message
    for account in ACCOUNTS:
        verdict = engine.check(replace(request(spread.legs, cid=f"x-{account}"),
                                       account=account, now=later))
        assert (verdict.approved, verdict.check) == (False, "global_daily_loss")
        assert engine.breaker_states(account, later)["daily_loss"].state.value == "active"
        closing = replace(request(spread.legs, opening=False, cid=f"c-{account}"),
                          account=account, now=later)
        assert engine.check(closing).approved
    # The next session it clears by itself (auto reset: next session).
    tomorrow = MORNING + timedelta(days=1)
    assert engine.check(replace(request(spread.legs, cid="t"), now=tomorrow)).approved


def test_the_global_breaker_adds_each_accounts_latest_tick_of_the_session(ledger):
    limits = {"ira": BreakerLimits(), "paper": BreakerLimits(),
              ALL_ACCOUNTS: BreakerLimits(daily_loss_limit=1000.0)}
    engine = gate(ledger, make_market(), breakers=limits)
    yesterday = MORNING - timedelta(days=3)
    assert engine.update(yesterday, [tick("ira", -900.0, now=yesterday)]) == []
    # Yesterday's -900 does not count today; ira's -600 of this morning still counts when only
    # paper reports later (an account that stopped reporting, as an isolated one).
    assert engine.update(MORNING, [tick("paper", -300.0)]) == []
    assert engine.update(MORNING, [tick("ira", -600.0)]) == []  # -900 together
    later = MORNING + timedelta(minutes=5)
    alerts = engine.update(later, [tick("paper", -450.0, now=later)])  # -1,050 together
    assert [a.key for a in alerts] == [f"{ALL_ACCOUNTS}:daily_loss:2025-01-06"]


def test_refresh_keeps_the_accounts_total_figures(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    hold(ledger, "ira", spread, 2, "p-ira")
    hold(ledger, "paper", spread, 1, "p-paper")
    engine = gate(ledger, market)
    figures = engine.refresh(MORNING)
    total = engine.figures(ALL_ACCOUNTS)
    assert total == figures[ALL_ACCOUNTS]
    assert total["total_max_loss"] == pytest.approx(1200.0)
    assert total["delta"]["SPY"] == pytest.approx(
        figures["ira"]["delta"]["SPY"] + figures["paper"]["delta"]["SPY"], abs=1e-3)


# -- config --------------------------------------------------------------------------------------


def test_global_risk_in_config_reaches_the_gate_and_the_breakers(tmp_path):
    data = _data()
    data["global_risk"] = {"max_total_loss": 6000, "max_delta_shares": 500,
                           "max_var99": 4000, "daily_loss_limit": 3000}
    config = parse_config(data, env={})
    limits = global_limits_from_config(config)
    assert (limits.max_total_loss, limits.max_delta_shares, limits.max_var99) == (6000, 500, 4000)
    breakers = breaker_limits_from_config(config)
    assert breakers[ALL_ACCOUNTS] == BreakerLimits(daily_loss_limit=3000, reducing_at=0.75)
    engine = build_risk_engine(config, None, make_market())
    assert engine.global_limits == limits
    assert global_limits_from_config(parse_config(_data(), env={})) is None
    assert ALL_ACCOUNTS not in breaker_limits_from_config(parse_config(_data(), env={}))


@pytest.mark.parametrize(("section", "text"), [
    ({"max_total_loss": -1}, "global_risk.max_total_loss"),
    ({"daily_loss_limit": 0}, "global_risk.daily_loss_limit"),
    ({"reducing_at": 1.5}, "global_risk.reducing_at"),
    ({"max_loss": 10}, "global_risk.max_loss"),
])
def test_bad_global_risk_values_are_refused(section, text):
    data = _data()
    data["global_risk"] = section
    assert text in str(_error(data))


def test_an_account_may_not_be_named_all():
    data = _data()
    data["accounts"].append({**copy.deepcopy(data["accounts"][0]), "name": ALL_ACCOUNTS})
    assert "accounts[1].name: 'all' is reserved for the accounts together" in str(_error(data))
