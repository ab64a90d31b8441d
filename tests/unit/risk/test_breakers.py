"""Specifications of the circuit breakers: each trip with its numbers, the REDUCING and HALTED
gates, persistence across a restarted engine, and the reset rules."""

from datetime import UTC, date, datetime, timedelta

import pytest

from thetadesk.config import DEFAULT_CONFIG, ConfigError, load_config, parse_config
from thetadesk.messages import AccountTick, RiskRequest, Severity
from thetadesk.models import Contract, Leg
from thetadesk.risk.breakers import (
    CONSECUTIVE_LOSSES,
    DAILY_LOSS,
    DRAWDOWN,
    MANUAL_HALT,
    REJECTION_RATE,
    RESTART_STORM,
    STALE_DATA,
    BreakerLimits,
    BreakerWatch,
    State,
    breaker_limits_from_config,
    consecutive_losses_tripped,
    drawdown_tripped,
    rejection_rate_tripped,
    restart_storm_tripped,
    stale_data_tripped,
    update_needed,
)
from thetadesk.risk.engine import RiskEngine
from thetadesk.risk.limits import RiskLimits
from thetadesk.store import Ledger

NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)  # 10:00 New York, Monday
TOMORROW = NOW + timedelta(days=1)
LIMITS = RiskLimits(max_loss_per_trade=1500, max_open_positions=4, min_buying_power=10_000,
                    daily_loss_limit=2000)
BREAKERS = BreakerLimits(daily_loss_limit=2000, drawdown_limit=5000, consecutive_losses=4,
                         rejection_rate=0.5, rejection_window=10, rejection_min_orders=4,
                         stale_data_s=900, restart_storm=3, restart_window_s=1800,
                         reducing_at=0.75, next_session=frozenset({DAILY_LOSS, STALE_DATA}))
LEGS = (Leg(Contract.from_occ("SPY250404P00550000"), -1),
        Leg(Contract.from_occ("SPY250404P00545000"), 1))


def request(**overrides):
    fields = dict(account="paper", client_order_id="td-1", intent_id="i1", symbol="SPY",
                  opening=True, quantity=2, max_loss=840.0, buying_power_needed=840.0,
                  buying_power=50_000.0, open_positions=1, now=NOW)
    return RiskRequest(**{**fields, **overrides})


def tick(pnl=0.0, equity=None, now=NOW, **fields):
    equity = 100_000.0 + pnl if equity is None else equity
    return AccountTick(account="paper", now=now, equity=equity, cash=0.0,
                       buying_power=50_000.0, day_pnl=pnl, open_positions=1, **fields)


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "l.db")
    yield led
    led.close()


def engine(ledger, breakers=BREAKERS):
    return RiskEngine(ledger, {"paper": LIMITS}, breakers={"paper": breakers})


def close_trade(ledger, position_id, pnl, at):
    """A one-spread position opened at a $1.00 credit and closed for ``pnl`` dollars."""
    ledger.open_position(position_id=position_id, account="paper", symbol="SPY",
                         strategy="bull_put", legs=LEGS, quantity=1, entry_price=1.0,
                         max_loss_per_spread=400.0, max_profit_per_spread=100.0, commission=0.0,
                         now=at - timedelta(hours=1))
    ledger.close_position(position_id, quantity=1, exit_price=pnl / 100 - 1.0, commission=0.0,
                          reason="stop" if pnl < 0 else "take_profit", multiplier=100, now=at)


def past_peak(ledger, equity=100_000.0):
    """Friday's session opened and closed at ``equity``."""
    ledger.start_day(account="paper", session=date(2025, 2, 28), equity=equity)
    ledger.end_day(account="paper", session=date(2025, 2, 28), equity=equity, cash=0.0,
                   open_positions=0)


def send_order(ledger, cid, status, at):
    ledger.record_intent_and_order(
        intent_id=None, account="paper", symbol="SPY", strategy="bull_put", decided_at=at,
        context={}, client_order_id=cid, position_id=cid, opening=True, purpose="entry",
        legs=LEGS, quantity=1, limit_price=1.0, now=at)
    ledger.update_order(cid, status=status, now=at, submitted=True)


# -- the pure decisions ----------------------------------------------------------------------------


def test_drawdown_trips_at_the_limit_below_the_peak_with_the_numbers():
    reason = drawdown_tripped(95_000.0, 100_000.0, 5000.0)
    assert "$5,000.00 below the $100,000.00 peak" in reason
    assert drawdown_tripped(95_000.01, 100_000.0, 5000.0) is None


def test_consecutive_losses_count_only_the_latest_streak():
    assert consecutive_losses_tripped([-10.0, -20.0, -30.0], 3) == (
        "3 losing trades in a row ($-60.00 in all), the limit is 3")
    assert consecutive_losses_tripped([-10.0, -20.0, 5.0, -30.0], 3) is None


def test_rejection_rate_needs_the_minimum_count_and_reaches_the_limit():
    assert rejection_rate_tripped(3, 3, 0.5, 4) is None  # too few orders to judge
    assert "rejected 2 of the last 4 orders (50%)" in rejection_rate_tripped(2, 4, 0.5, 4)
    assert rejection_rate_tripped(1, 4, 0.5, 4) is None


def test_stale_data_trips_at_the_age_limit_and_never_without_an_age():
    assert "no usable quotes for 15.0 minutes" in stale_data_tripped(900.0, 900.0)
    assert stale_data_tripped(899.0, 900.0) is None
    assert stale_data_tripped(None, 900.0) is None


def test_restart_storm_counts_restarts_in_the_window():
    reason = restart_storm_tripped(["risk", "account-paper", "risk"], 1800.0, 3)
    assert reason == "3 actor restarts in 30 minutes (account-paper, risk), the limit is 3"
    assert restart_storm_tripped(["risk", "risk"], 1800.0, 3) is None


def test_reducing_levels_are_a_share_of_each_limit():
    assert BREAKERS.levels(DAILY_LOSS) == (2000, 1500)
    assert BREAKERS.levels(CONSECUTIVE_LOSSES) == (4, 3)
    assert BREAKERS.levels(RESTART_STORM) == (3, 2)
    assert BreakerLimits(consecutive_losses=1, reducing_at=0.75).levels(CONSECUTIVE_LOSSES) == (
        1, None)
    assert BreakerLimits(drawdown_limit=10).levels(DRAWDOWN) == (10, None)  # no reducing_at
    assert BreakerLimits().levels(DRAWDOWN) is None  # off


# -- the engine: trips, gates, alerts --------------------------------------------------------------


def test_daily_loss_trip_halts_entries_but_lets_closes_through_with_one_alert(ledger):
    risk = engine(ledger)

    alerts = risk.update(NOW, [tick(-2100.0)])
    again = risk.update(NOW + timedelta(minutes=5), [tick(-2500.0)])
    entry = risk.check(request())
    close = risk.check(request(client_order_id="td-2", opening=False))

    assert [(a.severity, a.kind) for a in alerts] == [(Severity.CRITICAL, "breaker_tripped")]
    assert "paper: daily loss breaker tripped, day P&L $-2,100.00 reached the $2,000.00" in (
        alerts[0].message)
    assert again == []
    assert (entry.approved, entry.check) == (False, DAILY_LOSS)
    assert "$-2,100.00" in entry.reason
    assert close.approved
    assert risk.breaker_states("paper", NOW)[DAILY_LOSS].state is State.HALTED


def test_reducing_refuses_new_risk_but_lets_hedges_and_closes_through(ledger):
    risk = engine(ledger)

    alerts = risk.update(NOW, [tick(-1600.0)])
    entry = risk.check(request())
    hedge = risk.check(request(client_order_id="td-2", reduces_risk=True))
    close = risk.check(request(client_order_id="td-3", opening=False))

    assert [(a.severity, a.kind) for a in alerts] == [(Severity.WARNING, "breaker_reducing")]
    assert "$1,500.00" in alerts[0].message  # the warning level, 75% of $2,000
    assert (entry.approved, entry.check) == (False, DAILY_LOSS)
    assert "reducing" in entry.reason
    assert hedge.approved
    assert close.approved
    assert risk.update(NOW, [tick(-1700.0)]) == []  # no second warning


def test_halted_refuses_hedges_too(ledger):
    risk = engine(ledger)
    risk.update(NOW, [tick(-2000.0)])

    assert not risk.check(request(reduces_risk=True)).approved


def test_reducing_escalates_to_a_trip_with_a_critical_alert(ledger):
    risk = engine(ledger)
    risk.update(NOW, [tick(-1600.0)])

    alerts = risk.update(NOW, [tick(-2000.0)])

    assert [a.severity for a in alerts] == [Severity.CRITICAL]
    assert risk.breaker_states("paper", NOW)[DAILY_LOSS].state is State.HALTED


def test_drawdown_from_the_peak_of_past_sessions_trips(ledger):
    ledger.start_day(account="paper", session=date(2025, 2, 27), equity=100_000.0)
    ledger.end_day(account="paper", session=date(2025, 2, 27), equity=106_000.0, cash=0.0,
                   open_positions=0)
    ledger.start_day(account="paper", session=date(2025, 3, 3), equity=101_500.0)
    risk = engine(ledger)

    # Down $500 today (no daily loss warning), $5,000 below the $106,000 close of Feb 27.
    alerts = risk.update(NOW, [tick(-500.0, equity=101_000.0)])

    assert [a.key for a in alerts] == ["paper:drawdown:2025-03-03"]
    assert "$5,000.00 below the $106,000.00 peak" in alerts[0].message
    assert "until a person resets it" in alerts[0].message
    assert risk.check(request()).check == DRAWDOWN


def test_consecutive_losing_trades_trip_after_a_warning(ledger):
    risk = engine(ledger)
    close_trade(ledger, "p0", -50.0, NOW - timedelta(hours=5))
    close_trade(ledger, "p1", 80.0, NOW - timedelta(hours=4))  # a win breaks the streak
    for j in range(3):
        close_trade(ledger, f"p{j + 2}", -100.0, NOW - timedelta(hours=3 - j))

    warned = risk.update(NOW, [tick(closed=1)])
    close_trade(ledger, "p9", -120.0, NOW)
    tripped = risk.update(NOW, [tick(closed=1)])

    assert [a.kind for a in warned] == ["breaker_reducing"]
    assert "3 losing trades in a row" in warned[0].message
    assert [a.kind for a in tripped] == ["breaker_tripped"]
    assert "4 losing trades in a row ($-420.00 in all), the limit is 4" in tripped[0].message


def test_order_rejection_rate_over_the_last_orders_trips(ledger):
    risk = engine(ledger)
    for j, status in enumerate(["filled", "rejected", "filled", "rejected", "rejected"]):
        send_order(ledger, f"td-o{j}", status, NOW - timedelta(minutes=10 - j))

    alerts = risk.update(NOW, [tick(rejected=("td-o4",))])

    assert [a.kind for a in alerts] == ["breaker_tripped"]
    assert "rejected 3 of the last 5 orders (60%)" in alerts[0].message
    assert risk.check(request()).check == REJECTION_RATE


def test_stale_market_data_trips_and_resets_next_session(ledger):
    risk = engine(ledger)

    alerts = risk.update(NOW, [tick(data_age_s=1200.0)])

    assert "no usable quotes for 20.0 minutes" in alerts[0].message
    assert risk.check(request()).check == STALE_DATA
    assert risk.check(request(client_order_id="td-2", now=TOMORROW)).approved


def test_restart_storm_trips_every_account_from_the_actor_events(ledger):
    risk = engine(ledger)
    for j, actor in enumerate(["risk", "account-paper", "symbol-SPY"]):
        ledger.record_actor_event(actor=actor, kind="died", now=NOW - timedelta(minutes=9 - j))
        ledger.record_actor_event(actor=actor, kind="restarted" if j else "recreated",
                                  now=NOW - timedelta(minutes=9 - j))
    ledger.record_actor_event(actor="risk", kind="restarted", now=NOW - timedelta(hours=2))

    alerts = risk.update(NOW, [])  # no tick needed: restarts are the system's, not an account's

    assert [a.key for a in alerts] == ["paper:restart_storm:2025-03-03"]
    assert "3 actor restarts in 30 minutes (account-paper, risk, symbol-SPY)" in alerts[0].message


# -- persistence and resets ------------------------------------------------------------------------


def test_a_trip_survives_a_restarted_engine_which_does_not_alert_again(tmp_path):
    path = tmp_path / "l.db"
    past_peak(Ledger(path))
    first = engine(Ledger(path))
    assert first.update(NOW, [tick(-300.0, equity=94_000.0)])  # $6,000 below Friday's close

    restarted = engine(Ledger(path))

    assert restarted.update(NOW + timedelta(minutes=5), [tick(equity=93_000.0)]) == []
    assert restarted.check(request()).check == DRAWDOWN
    # Manual reset: it outlives the session too.
    assert restarted.check(request(client_order_id="td-2", now=TOMORROW)).check == DRAWDOWN


def test_manual_reset_clears_a_trip_and_is_recorded_with_who_and_why(ledger):
    past_peak(ledger)
    risk = engine(ledger)
    assert risk.update(NOW, [tick(-300.0, equity=94_000.0)])

    cleared = risk.reset_breaker("paper", DRAWDOWN, "alice", NOW + timedelta(minutes=1),
                                 reason="checked the book")
    again = risk.reset_breaker("paper", DRAWDOWN, "alice", NOW + timedelta(minutes=2))

    assert cleared is True
    assert again is False  # nothing left to reset
    assert risk.check(request(now=NOW + timedelta(minutes=3))).approved
    reset = [e for e in ledger.breaker_events("paper", DRAWDOWN) if e["kind"] == "reset"]
    assert [(e["by"], e["reason"]) for e in reset] == [("alice", "checked the book")]
    # The peak restarts from the reset: the same equity does not trip it again.
    assert risk.update(NOW + timedelta(minutes=5), [tick(-300.0, equity=94_000.0)]) == []


def test_a_manual_halt_refuses_entries_until_reset_across_restarts_and_sessions(tmp_path):
    path = tmp_path / "l.db"
    risk = engine(Ledger(path))

    assert risk.halt("paper", "telegram:42", NOW, reason="stopped from Telegram") is True
    assert risk.halt("paper", "telegram:42", NOW) is False  # already halted: nothing recorded
    refused = risk.check(request())
    restarted = engine(Ledger(path))
    next_day = restarted.check(request(client_order_id="td-2", now=TOMORROW))
    closing = restarted.check(request(client_order_id="td-3", opening=False, now=TOMORROW))
    nothing_to_evaluate = restarted.update(TOMORROW, [tick()])

    assert (refused.approved, refused.check) == (False, MANUAL_HALT)
    assert "manual halt" in refused.reason
    assert "stopped from Telegram" in refused.reason
    assert (next_day.approved, next_day.check) == (False, MANUAL_HALT)  # no auto reset
    assert closing.approved  # exits continue
    assert nothing_to_evaluate == []
    events = [(e["kind"], e["by"]) for e in Ledger(path).breaker_events("paper", MANUAL_HALT)]
    assert events == [("tripped", "telegram:42")]
    assert restarted.reset_breaker("paper", MANUAL_HALT, "telegram:42", TOMORROW) is True
    assert restarted.check(request(client_order_id="td-4", now=TOMORROW)).approved


def test_a_manual_halt_of_an_unknown_account_names_the_accounts(ledger):
    with pytest.raises(ValueError, match=r"unknown account 'live'.*paper"):
        engine(ledger).halt("live", "telegram:42", NOW)


def test_reset_after_counts_only_later_losses(ledger):
    risk = engine(ledger)
    for j in range(4):
        close_trade(ledger, f"p{j}", -100.0, NOW - timedelta(hours=4 - j))
    assert risk.update(NOW, [tick(closed=1)])[0].kind == "breaker_tripped"

    risk.reset_breaker("paper", CONSECUTIVE_LOSSES, "bob", NOW + timedelta(minutes=1))
    close_trade(ledger, "p9", -100.0, NOW + timedelta(minutes=10))

    assert risk.update(NOW + timedelta(minutes=10), [tick(closed=1)]) == []
    assert risk.check(request(now=NOW + timedelta(minutes=10))).approved


def test_restart_counts_records_a_reset_of_an_active_breaker_and_counts_from_it(ledger):
    risk = engine(ledger)
    for j in range(4):
        close_trade(ledger, f"p{j}", -100.0, NOW - timedelta(hours=4 - j))
    assert risk.reset_breaker("paper", CONSECUTIVE_LOSSES, "bob", NOW) is False  # active

    assert risk.reset_breaker("paper", CONSECUTIVE_LOSSES, "backtest policy", NOW,
                              reason="stuck", restart_counts=True) is True

    close_trade(ledger, "p9", -100.0, NOW + timedelta(minutes=10))
    assert risk.update(NOW + timedelta(minutes=10), [tick(closed=1)]) == []  # 1 loss, not 5
    resets = [e["by"] for e in ledger.breaker_events("paper", CONSECUTIVE_LOSSES)
              if e["kind"] == "reset"]
    assert resets == ["backtest policy"]


def test_next_session_auto_reset_only_where_config_allows(ledger):
    past_peak(ledger)
    risk = engine(ledger)
    assert len(risk.update(NOW, [tick(-2500.0, equity=94_000.0)])) == 2  # daily loss, drawdown

    states = risk.breaker_states("paper", TOMORROW)

    assert states[DAILY_LOSS].state is State.ACTIVE
    assert states[DRAWDOWN].state is State.HALTED
    auto = [e for e in ledger.breaker_events("paper", DAILY_LOSS) if e["kind"] == "reset"]
    assert [e["by"] for e in auto] == ["auto"]
    # Configured manual, the daily loss breaker outlives its session.
    manual = engine(Ledger(ledger.path.parent / "other.db"),
                    BreakerLimits(daily_loss_limit=2000, next_session=frozenset()))
    manual.update(NOW, [tick(-2500.0)])
    assert manual.breaker_states("paper", TOMORROW)[DAILY_LOSS].state is State.HALTED


def test_reducing_lasts_the_session_only(ledger):
    risk = engine(ledger)
    risk.update(NOW, [tick(-1600.0)])

    assert risk.breaker_states("paper", NOW + timedelta(hours=3))[DAILY_LOSS].state is (
        State.REDUCING)
    assert risk.breaker_states("paper", TOMORROW)[DAILY_LOSS].state is State.ACTIVE


def test_reset_of_an_unknown_breaker_names_the_breakers(ledger):
    with pytest.raises(ValueError, match="the breakers are daily_loss, drawdown"):
        engine(ledger).reset_breaker("paper", "nonsense", "alice", NOW)


def test_migration_carries_an_old_ledgers_trips_into_breaker_events(tmp_path):
    import sqlite3

    from thetadesk.store import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
    for version, statements in MIGRATIONS[:2]:
        for sql in statements:
            conn.execute(sql)
        conn.execute("INSERT INTO schema_version VALUES (?, 'then')", (version,))
    conn.execute("INSERT INTO breakers VALUES ('paper', 'daily_loss', '2025-03-03', ?, 'old')",
                 (NOW.isoformat(),))
    conn.commit()
    conn.close()

    risk = engine(Ledger(path))

    assert risk.breaker_states("paper", NOW)[DAILY_LOSS].state is State.HALTED
    assert risk.check(request()).check == DAILY_LOSS


# -- update_needed: quiet ticks never skip a tick that could change a breaker ----------------------


@pytest.mark.parametrize(("fields", "needed"), [
    ({"pnl": -1499.0}, False),
    ({"pnl": -1500.0}, True),  # the daily loss warning level
    ({"equity": 96_250.0}, True),  # $3,750 below Friday's $100,000 close: drawdown warning
    ({"equity": 96_251.0}, False),
    ({"closed": 1}, True),
    ({"rejected": ("td-x",)}, True),
    ({"submitted": ("td-x",)}, False),
    ({"data_age_s": 675.0}, True),
    ({"data_age_s": 600.0}, False),
])
def test_update_is_needed_whenever_an_update_could_change_a_breaker(ledger, fields, needed):
    if "equity" in fields:  # Friday closed at $100,000; down $100 today
        past_peak(ledger)
        fields = {**fields, "pnl": -100.0}
    watch = BreakerWatch(ledger, {"paper": BREAKERS})
    t = tick(**fields)

    assert update_needed([t], watch) is needed
    assert update_needed([t], BreakerWatch(ledger, {})) is False


def test_update_needed_sees_the_peak_of_past_sessions(ledger):
    ledger.start_day(account="paper", session=date(2025, 2, 28), equity=104_000.0)
    watch = BreakerWatch(ledger, {"paper": BREAKERS})

    assert update_needed([tick(-100.0, equity=100_000.0)], watch)  # $4,000 below the peak


def test_whenever_the_update_would_alert_the_watch_said_so(ledger):
    # A sweep over day P&L and data age: every alert comes from a tick the watch flagged.
    risk, watch = engine(ledger), BreakerWatch(ledger, {"paper": BREAKERS})
    for j, pnl in enumerate(range(0, -2600, -100)):
        t = tick(float(pnl), now=NOW + timedelta(minutes=j), data_age_s=60.0 * j)
        alerts = risk.update(t.now, [t])
        assert not alerts or update_needed([t], watch), (pnl, alerts)


# -- config ----------------------------------------------------------------------------------------


def test_breaker_limits_from_the_default_config():
    config = load_config(DEFAULT_CONFIG)
    limits = breaker_limits_from_config(config)["paper"]
    assert limits.daily_loss_limit == config.accounts[0].risk.daily_loss_limit
    assert limits.reducing_at == 0.75
    assert limits.next_session == frozenset({DAILY_LOSS, STALE_DATA})
    assert limits.restart_window_s == 1800.0


def _with_breakers(breakers):
    import yaml

    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["accounts"][0]["breakers"] = breakers
    return data


def test_breaker_config_rejects_unknown_keys_and_bad_values_with_their_paths():
    with pytest.raises(ConfigError) as bad:
        parse_config(_with_breakers({"drawdown": {"limt": 10},
                                     "rejection_rate": {"window": 3, "min_orders": 5},
                                     "stale_data": {"auto_reset": "weekly"}}))
    text = str(bad.value)
    assert "accounts[0].breakers.drawdown.limt" in text
    assert "accounts[0].breakers.rejection_rate.min_orders: must be <= window (3)" in text
    assert "accounts[0].breakers.stale_data.auto_reset" in text


def test_breaker_config_null_limit_turns_a_breaker_off():
    config = parse_config(_with_breakers({"drawdown": {"limit": None}}))
    assert breaker_limits_from_config(config)["paper"].levels(DRAWDOWN) is None
