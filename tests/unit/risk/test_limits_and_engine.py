"""Specifications of the pre-trade checks, the daily-loss breaker and the risk engine."""

from datetime import UTC, datetime

import pytest

from thetadesk.config import DEFAULT_CONFIG, load_config
from thetadesk.messages import AccountTick, RiskRequest, Severity
from thetadesk.risk.breakers import daily_loss_tripped, session_of, update_needed
from thetadesk.risk.engine import RiskEngine, limits_from_config
from thetadesk.risk.limits import (
    RiskLimits,
    check_buying_power,
    check_max_loss,
    check_open_positions,
    pre_trade,
)
from thetadesk.store import Ledger

NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
LIMITS = RiskLimits(max_loss_per_trade=1500, max_open_positions=4, min_buying_power=10_000,
                    daily_loss_limit=2000)


def request(**overrides):
    fields = dict(account="paper", client_order_id="td-1", intent_id="i1", symbol="SPY",
                  opening=True, quantity=2, max_loss=840.0, buying_power_needed=840.0,
                  buying_power=50_000.0, open_positions=1, now=NOW)
    return RiskRequest(**{**fields, **overrides})


def test_check_max_loss_rejects_with_the_numbers():
    rejection = check_max_loss(request(max_loss=1600.0), LIMITS)
    assert rejection.check == "max_loss_per_trade"
    assert "$1,600.00" in rejection.reason
    assert "$1,500.00" in rejection.reason
    assert check_max_loss(request(max_loss=1500.0), LIMITS) is None


def test_check_open_positions_at_the_limit_rejects():
    assert check_open_positions(request(open_positions=4), LIMITS).check == "max_open_positions"
    assert check_open_positions(request(open_positions=3), LIMITS) is None


def test_check_buying_power_keeps_the_minimum():
    rejection = check_buying_power(request(buying_power=10_500.0), LIMITS)
    assert rejection.check == "buying_power"
    assert "leaving $9,660.00" in rejection.reason
    assert check_buying_power(request(buying_power=10_840.0), LIMITS) is None


def test_pre_trade_never_refuses_a_closing_order():
    assert pre_trade(request(opening=False, max_loss=1e9, open_positions=99,
                             buying_power=0.0), LIMITS) is None


@pytest.mark.parametrize(("pnl", "tripped"), [(-1999.99, False), (-2000.0, True), (-5000.0, True),
                                              (100.0, False)])
def test_daily_loss_breaker_trips_at_the_limit(pnl, tripped):
    assert (daily_loss_tripped(pnl, 2000.0) is not None) is tripped


def _tick(pnl):
    return AccountTick(account="paper", now=NOW, equity=100_000 + pnl, cash=0.0,
                       buying_power=50_000.0, day_pnl=pnl, open_positions=1)


def test_risk_engine_records_every_verdict_and_halts_entries_after_a_trip(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    engine = RiskEngine(ledger, {"paper": LIMITS})

    assert engine.check(request()).approved
    alerts = engine.update(NOW, [_tick(-2500.0)])
    again = engine.update(NOW, [_tick(-2600.0)])
    halted = engine.check(request(client_order_id="td-2"))
    exit_ok = engine.check(request(client_order_id="td-3", opening=False))

    assert [a.severity for a in alerts] == [Severity.CRITICAL]
    assert "daily loss breaker tripped" in alerts[0].message
    assert again == []  # one trip per session, one alert
    assert not halted.approved
    assert halted.check == "daily_loss"
    assert exit_ok.approved
    verdicts = ledger.verdicts("paper")
    assert [(v["client_order_id"], v["approved"]) for v in verdicts] == [
        ("td-1", 1), ("td-2", 0), ("td-3", 1)]


def test_risk_engine_breaker_survives_a_restart_and_clears_next_session(tmp_path):
    path = tmp_path / "l.db"
    RiskEngine(Ledger(path), {"paper": LIMITS}).update(NOW, [_tick(-3000.0)])

    restarted = RiskEngine(Ledger(path), {"paper": LIMITS})

    assert not restarted.check(request()).approved
    tomorrow = NOW.replace(day=4)
    assert session_of(tomorrow) != session_of(NOW)
    assert restarted.check(request(client_order_id="td-9", now=tomorrow)).approved


def test_risk_engine_unknown_account_is_refused(tmp_path):
    verdict = RiskEngine(Ledger(tmp_path / "l.db"), {}).check(request())
    assert not verdict.approved
    assert verdict.check == "unknown_account"


def test_limits_from_config_are_each_accounts_risk_section():
    config = load_config(DEFAULT_CONFIG)
    limits = limits_from_config(config)
    assert set(limits) == {a.name for a in config.accounts}
    risk = config.accounts[0].risk
    assert limits[config.accounts[0].name] == RiskLimits(
        risk.max_loss_per_trade, risk.max_open_positions, risk.min_buying_power,
        risk.daily_loss_limit)


@pytest.mark.parametrize(("pnl", "needed"), [(-1999.99, False), (-2000.0, True), (50.0, False)])
def test_update_is_needed_exactly_when_a_tick_would_trip_the_breaker(tmp_path, pnl, needed):
    ledger = Ledger(tmp_path / "l.db")
    assert update_needed([_tick(pnl)], {"paper": LIMITS}) is needed
    assert update_needed([_tick(pnl)], {}) is False  # an account without limits: nothing to do
    # What the update would do agrees: a trip (and its alert) only when it was needed.
    assert bool(RiskEngine(ledger, {"paper": LIMITS}).update(NOW, [_tick(pnl)])) is needed
    assert bool(ledger.breakers("paper")) is needed
