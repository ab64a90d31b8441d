"""The notification outbox: write-ahead, retries with backoff, restart recovery, dedup across ticks.

No Ray and no network: fake senders record what they were asked to send; clocks are injected.
"""

from datetime import UTC, date, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from actors.notification import build_channels, build_dispatcher, routing_state
from thetadesk.config import NotificationsConfig
from thetadesk.errors import DataError, TemporaryError
from thetadesk.messages import Alert, Severity
from thetadesk.notify.outbox import STATE_KEY, Dispatcher, alert_id, daily_summary
from thetadesk.notify.routing import Channel
from thetadesk.store import Ledger

T0 = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)  # 11:00 New York, a Monday
SMS_TO = "+15558675310"
CALL_TO = "+15558675311"
TOKEN = "s3cr3t-auth-token-value"
GOOD_ENV = {
    "TWILIO_ACCOUNT_SID": "AC" + "0123456789abcdef" * 2,
    "TWILIO_AUTH_TOKEN": TOKEN,
    "TWILIO_FROM_NUMBER": "+15550001111",
    "TWILIO_TO_NUMBERS": SMS_TO,
}


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


class FakeSender:
    """Records (to, kind, key) per successful send; raises the scripted errors first."""

    def __init__(self, *errors, before=None):
        self.errors = list(errors)
        self.sent = []
        self.tries = 0
        self.before = before

    def send(self, to, alert):
        self.tries += 1
        if self.before is not None:
            self.before(to, alert)
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append((to, alert.kind, alert.key))
        return f"SM{len(self.sent):032d}"


class FakeCaller:
    """A voice sender (``CallSender``): records (to, call number, planned calls)."""

    def __init__(self):
        self.calls = []

    def send(self, to, alert, call=1, calls=None):
        self.calls.append((to, call, calls))
        return f"CA{len(self.calls):032d}"


def cfg(**kw):
    base = {"sms_to": [SMS_TO], "voice_to": [CALL_TO]}
    return NotificationsConfig(**{**base, **kw})


def dispatcher(ledger, senders, clock=None, config=None, **kw):
    config = config or cfg()
    state = routing_state(config, {Channel.SMS: tuple(config.sms_to),
                                   Channel.VOICE: tuple(config.voice_to)})
    return Dispatcher(ledger, senders, state, clock or Clock(), **kw)


def breaker(at=T0, severity=Severity.CRITICAL, key="main:daily_loss:2025-01-06"):
    return Alert(severity, "breaker_tripped", key, "main: daily loss breaker tripped", at)


# --- write-ahead ---------------------------------------------------------------------------------

def test_alert_and_its_deliveries_are_in_the_ledger_before_the_send(ledger):
    seen = []

    def check(to, alert):
        rows = ledger.deliveries(alert_id(alert), channel="sms", status="pending")
        assert ledger.outbox(alert_id(alert)), "outbox row missing at send time"
        assert [r["recipient"] for r in rows] == [to]
        seen.append(to)

    sms = FakeSender(before=check)
    d = dispatcher(ledger, {Channel.SMS: sms})
    d.submit([breaker()])
    assert sms.tries == 0  # submit never sends
    assert d.pump() == 1
    assert seen == [SMS_TO]
    row = ledger.deliveries(alert_id(breaker()), channel="sms")[0]
    assert row["status"] == "delivered"
    assert row["provider_id"].startswith("SM")
    assert row["attempts"] == 1


def test_outbox_and_state_are_written_in_one_transaction(ledger):
    d = dispatcher(ledger, {Channel.SMS: FakeSender()})
    d.submit([breaker()])
    assert ledger.get_state(STATE_KEY) is not None
    assert ledger.outbox(alert_id(breaker()))[0]["kind"] == "breaker_tripped"
    assert {(r["channel"], r["recipient"], r["status"])
            for r in ledger.deliveries(alert_id(breaker()))} == {
        ("sms", SMS_TO, "pending"), ("voice", CALL_TO, "suppressed")}


# --- retries -------------------------------------------------------------------------------------

def test_temporary_errors_back_off_then_deliver(ledger):
    clock = Clock()
    sms = FakeSender(TemporaryError("429"), TemporaryError("503"))
    d = dispatcher(ledger, {Channel.SMS: sms}, clock)
    d.submit([breaker()])
    aid = alert_id(breaker())

    assert d.pump() == 0
    row = ledger.deliveries(aid, channel="sms")[0]
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "429" in row["last_error"]
    assert datetime.fromisoformat(row["next_attempt_at"]) == T0 + timedelta(seconds=30)

    clock.advance(29)
    assert d.pump() == 0
    assert sms.tries == 1  # not due yet
    clock.advance(1)
    assert d.pump() == 0
    row = ledger.deliveries(aid, channel="sms")[0]
    assert (row["status"], row["attempts"]) == ("pending", 2)
    assert datetime.fromisoformat(row["next_attempt_at"]) == clock.now + timedelta(seconds=120)

    clock.advance(120)
    assert d.pump() == 1
    row = ledger.deliveries(aid, channel="sms")[0]
    assert (row["status"], row["attempts"]) == ("delivered", 3)
    assert sms.sent == [(SMS_TO, "breaker_tripped", breaker().key)]
    clock.advance(3600)
    assert d.pump() == 0
    assert sms.tries == 3


def test_temporary_errors_fail_after_max_attempts(ledger):
    clock = Clock()
    sms = FakeSender(*[TemporaryError("503")] * 10)
    d = dispatcher(ledger, {Channel.SMS: sms}, clock, max_attempts=3)
    d.submit([breaker()])
    for _ in range(10):
        d.pump()
        clock.advance(3600)
    row = ledger.deliveries(alert_id(breaker()), channel="sms")[0]
    assert (row["status"], row["attempts"]) == ("failed", 3)
    assert sms.tries == 3


def test_permanent_error_fails_at_once(ledger):
    clock = Clock()
    sms = FakeSender(DataError("21211 invalid 'To' number"))
    d = dispatcher(ledger, {Channel.SMS: sms}, clock)
    d.submit([breaker()])
    assert d.pump() == 0
    clock.advance(3600)
    d.pump()
    row = ledger.deliveries(alert_id(breaker()), channel="sms")[0]
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "21211" in row["last_error"]
    assert sms.tries == 1


def test_an_unexpected_sender_exception_is_retried_not_raised(ledger):
    sms = FakeSender(RuntimeError("boom"))
    d = dispatcher(ledger, {Channel.SMS: sms})
    d.submit([breaker()])
    assert d.pump() == 0
    assert ledger.deliveries(alert_id(breaker()), channel="sms")[0]["status"] == "pending"


# --- restart -------------------------------------------------------------------------------------

def test_restart_with_an_undelivered_alert_delivers_it_exactly_once(tmp_path):
    path = tmp_path / "thetadesk.db"
    first = Ledger(path)
    dispatcher(first, {Channel.SMS: FakeSender()}).submit([breaker()])  # crash before pump
    first.close()

    sms = FakeSender()
    second = Ledger(path)
    assert dispatcher(second, {Channel.SMS: sms}).pump() == 1
    assert dispatcher(second, {Channel.SMS: sms}).pump() == 0
    second.close()

    third = Ledger(path)
    again = FakeSender()
    d = dispatcher(third, {Channel.SMS: again})
    d.submit([breaker()])  # the same alert re-raised after the restart
    assert d.pump() == 0
    third.close()
    assert sms.sent == [(SMS_TO, "breaker_tripped", breaker().key)]
    assert again.sent == []


def test_delivered_alerts_are_not_sent_again_after_restart(tmp_path):
    path = tmp_path / "thetadesk.db"
    first = Ledger(path)
    sms = FakeSender()
    d = dispatcher(first, {Channel.SMS: sms})
    d.submit([breaker()])
    assert d.pump() == 1
    first.close()

    second = Ledger(path)
    later = FakeSender()
    assert dispatcher(second, {Channel.SMS: later}).pump() == 0
    second.close()
    assert later.tries == 0


def test_a_breaker_alert_on_50_ticks_makes_one_sms_and_one_call(tmp_path):
    path = tmp_path / "thetadesk.db"
    sms, voice = FakeSender(), FakeSender()
    ledger = Ledger(path)
    d = dispatcher(ledger, {Channel.SMS: sms, Channel.VOICE: voice})
    for tick in range(50):
        if tick == 25:  # a restart halfway: dedup state comes back from the ledger
            ledger.close()
            ledger = Ledger(path)
            d = dispatcher(ledger, {Channel.SMS: sms, Channel.VOICE: voice})
        d.submit([breaker(at=T0 + timedelta(seconds=15 * tick))])
        d.pump()
    ledger.close()
    assert sms.sent == [(SMS_TO, "breaker_tripped", breaker().key)]
    assert voice.sent == [(CALL_TO, "breaker_tripped", breaker().key)]


def test_dedup_lets_a_reminder_through_after_the_window(ledger):
    sms = FakeSender()
    d = dispatcher(ledger, {Channel.SMS: sms}, config=cfg(dedup_window_s=600))
    d.submit([breaker(severity=Severity.WARNING)])
    d.submit([breaker(at=T0 + timedelta(seconds=599), severity=Severity.WARNING)])
    d.submit([breaker(at=T0 + timedelta(seconds=600), severity=Severity.WARNING)])
    d.pump()
    assert len(sms.sent) == 2


# --- escalation (the full schedule is in test_escalation.py) --------------------------------------

def test_escalation_follows_the_configured_timeout_and_calls_per_contact(ledger):
    second = "+15558675312"
    clock = Clock()
    voice = FakeCaller()
    config = cfg(voice_to=[CALL_TO, second],
                 escalation={"ack_timeout_s": 60, "calls_per_contact": 1})
    d = dispatcher(ledger, {Channel.VOICE: voice}, clock, config=config)
    d.submit([breaker()])
    for _ in range(5):
        d.pump()
        clock.advance(30)
    # each contact once, 60 s apart, then stop; the second call says "Repeat call 2 of 2."
    assert voice.calls == [(CALL_TO, 1, None), (second, 2, 2)]
    assert [(r["step"], r["status"]) for r in ledger.deliveries(channel="voice")] == [
        (0, "delivered"), (1, "delivered")]


def test_dispatcher_ack_and_ack_open_leave_step_0_and_other_channels_alone(ledger):
    clock = Clock()
    sms = FakeSender(TemporaryError("503"))
    d = dispatcher(ledger, {Channel.SMS: sms}, clock)
    d.submit([breaker()])
    d.pump()
    assert [r["alert_id"] for r in d.ack_open()] == [alert_id(breaker())]
    assert d.ack_open() == []
    assert d.ack(alert_id(breaker())) is False
    rows = {r["channel"]: r for r in ledger.deliveries(alert_id(breaker()))}
    assert rows["sms"]["status"] == "pending"
    assert rows["voice"]["status"] == "suppressed"  # planned suppressed: no voice sender
    assert rows["voice"]["last_error"] is None
    clock.advance(30)
    assert d.pump() == 1


# --- quiet hours and switches --------------------------------------------------------------------

def test_quiet_hours_hold_back_warnings_but_not_critical_alerts(ledger):
    night = datetime(2025, 1, 7, 4, 0, tzinfo=UTC)  # 23:00 New York
    sms = FakeSender()
    d = dispatcher(ledger, {Channel.SMS: sms},
                   config=cfg(quiet_hours={"start": "22:00", "end": "07:00"}))
    d.submit([Alert(Severity.WARNING, "reconciliation_mismatch", "w", "warn", night),
              Alert(Severity.CRITICAL, "breaker_tripped", "c", "crit", night)])
    d.pump()
    assert [key for _, _, key in sms.sent] == ["c"]


def test_a_kind_switched_off_reaches_nobody(ledger):
    sms = FakeSender()
    d = dispatcher(ledger, {Channel.SMS: sms}, config=cfg(kinds={"breaker_tripped": False}))
    assert d.submit([breaker()]) == []
    d.pump()
    assert sms.sent == []


# --- credentials ---------------------------------------------------------------------------------

def test_missing_credentials_disable_the_channels_with_one_warning():
    with capture_logs() as logs:
        senders, recipients, _ = build_channels(NotificationsConfig(), env={})
    assert Channel.SMS not in senders
    assert Channel.VOICE not in senders
    twilio = [e for e in logs if "twilio" in e["event"]]
    assert len(twilio) == 1
    assert twilio[0]["log_level"] == "warning"
    assert recipients[Channel.SMS] == ()


def test_malformed_credentials_disable_the_channel_without_leaking_the_token():
    env = {**GOOD_ENV, "TWILIO_ACCOUNT_SID": "not-a-sid"}
    with capture_logs() as logs:
        senders, _, _ = build_channels(NotificationsConfig(), env=env)
    assert Channel.SMS not in senders
    twilio = [e for e in logs if "twilio" in e["event"]]
    assert len(twilio) == 1
    assert TOKEN not in repr(logs)


def test_good_credentials_enable_sms_and_voice_and_tokens_never_reach_the_ledger(ledger):
    d, closers = build_dispatcher(cfg(sms_to=[], voice_to=[]), ledger, env=GOOD_ENV)
    try:
        assert set(d.channels) >= {Channel.SMS, Channel.VOICE}
        d.submit([breaker()])
        dump = "\n".join(ledger._conn.iterdump())
        assert TOKEN not in dump
        assert SMS_TO in dump  # recipients from TWILIO_TO_NUMBERS
    finally:
        for c in closers:
            c.close()


def test_without_credentials_planned_deliveries_are_recorded_suppressed(ledger):
    d, _ = build_dispatcher(cfg(), ledger, env={}, clock=Clock())
    d.submit([breaker()])
    assert d.pump() == 0
    assert {r["status"] for r in ledger.deliveries(alert_id(breaker()))} == {"suppressed"}


# --- config and summary --------------------------------------------------------------------------

def test_notifications_config_defaults_and_validation():
    c = NotificationsConfig()
    assert (c.console, c.min_severity, c.quiet_hours, c.sms_to) == (True, "info", None, [])
    with pytest.raises(ValueError, match="pattern"):
        NotificationsConfig(sms_to=["5551234"])
    with pytest.raises(ValueError, match="equal"):
        NotificationsConfig(quiet_hours={"start": "22:00", "end": "22:00"})


def test_daily_summary_reads_pnl_trades_and_open_risk(ledger):
    session = date(2025, 1, 6)
    ledger.start_day(account="main", session=session, equity=100_000)
    ledger.end_day(account="main", session=session, equity=100_250.5, cash=90_000,
                   open_positions=0)
    text = daily_summary(ledger, session)
    assert "P&L +250.50" in text
    assert "main" in text
    assert "no accounts" in daily_summary(ledger, date(2025, 1, 7))


def test_telegram_is_enabled_only_with_a_token_and_chat_ids():
    pytest.importorskip("thetadesk.adapters.telegram")
    with capture_logs() as logs:
        senders, _, _ = build_channels(NotificationsConfig(), env={})
    assert Channel.TELEGRAM not in senders
    assert len([e for e in logs if "telegram" in e["event"]]) == 1
    env = {"TELEGRAM_BOT_TOKEN": "123456:" + "A" * 35}
    senders, recipients, closers = build_channels(
        NotificationsConfig(telegram_chat_ids=[42]), env=env)
    try:
        assert Channel.TELEGRAM in senders
        assert recipients[Channel.TELEGRAM] == ("42",)
    finally:
        for c in closers:
            c.close()
