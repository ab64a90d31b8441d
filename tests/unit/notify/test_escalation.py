"""Escalation: a critical alert nobody acknowledges calls again, then the next contact, then stops.

No Ray and no network: the voice channel is a fake that records (to, text) behind the real
``TwilioVoiceSender`` (so the spoken text is checked too); the Dispatcher's clock is injected.
Plan under test: contacts [a, b], two calls each, 300 s to acknowledge: a at +0 and +300,
b at +600 and +900, nothing from +1200 on.
"""

from datetime import UTC, datetime, timedelta

import pytest

from thetadesk.errors import DataError, TemporaryError
from thetadesk.messages import Alert, Severity
from thetadesk.notify.format import format_voice
from thetadesk.notify.outbox import Dispatcher, TwilioVoiceSender, alert_id
from thetadesk.notify.routing import Channel, EscalationPlan, RoutingPolicy, RoutingState
from thetadesk.store import Ledger

T0 = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)
A = "+15550000001"
B = "+15550000002"
SMS_TO = "+15550000009"


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now

    def at(self, seconds):
        """Moves the clock to ``T0 + seconds`` and returns it."""
        self.now = T0 + timedelta(seconds=seconds)
        return self.now


class FakeCalls:
    """A Twilio voice channel that records (to, text) per call; raises scripted errors first."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.calls = []
        self.tries = 0

    def call(self, to, text):
        self.tries += 1
        if self.errors:
            raise self.errors.pop(0)
        self.calls.append((to, text))
        return f"CA{self.tries:032d}"

    @property
    def to(self):
        return [to for to, _ in self.calls]


class FakeSms:
    def __init__(self, *errors):
        self.errors = list(errors)
        self.sent = []

    def send(self, to, alert):
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(to)
        return f"SM{len(self.sent)}"


def state(escalation=True, policy=None, voice=(A, B)):
    return RoutingState(
        policy=policy or RoutingPolicy(),
        recipients={Channel.VOICE: voice, Channel.SMS: (SMS_TO,)},
        escalation=EscalationPlan(list(voice), 300, 2) if escalation else None)


def dispatcher(ledger, calls, clock, sms=None, **kw):
    channels = {} if calls is None else {Channel.VOICE: TwilioVoiceSender(calls)}
    if sms is not None:
        channels[Channel.SMS] = sms
    return Dispatcher(ledger, channels, kw.pop("routing", None) or state(), clock, **kw)


def critical(at=T0, key="main:daily_loss:2025-01-06", severity=Severity.CRITICAL):
    return Alert(severity, "breaker_tripped", key, "main: daily loss breaker tripped.", at)


def voice_rows(ledger, alert):
    return {r["step"]: r for r in ledger.deliveries(alert_id(alert), channel="voice")}


# --- the schedule --------------------------------------------------------------------------------

def test_unacked_critical_alert_calls_again_then_the_next_contact_then_stops(ledger):
    clock, calls = Clock(), FakeCalls()
    d = dispatcher(ledger, calls, clock)
    d.submit([critical()])

    expected = {0: [A], 299: [A], 300: [A, A], 599: [A, A], 600: [A, A, B], 900: [A, A, B, B],
                1200: [A, A, B, B], 1500: [A, A, B, B], 7200: [A, A, B, B]}
    for seconds, to in expected.items():
        d.pump(clock.at(seconds))
        assert calls.to == to, f"at +{seconds}s"

    rows = voice_rows(ledger, critical())
    assert sorted(rows) == [0, 1, 2, 3]
    assert {r["status"] for r in rows.values()} == {"delivered"}
    assert [rows[s]["recipient"] for s in range(4)] == [A, A, B, B]
    assert [datetime.fromisoformat(rows[s]["delivered_at"]) for s in range(4)] == [
        T0 + timedelta(seconds=300 * s) for s in range(4)]


def test_repeat_calls_say_they_are_repeats(ledger):
    clock, calls = Clock(), FakeCalls()
    d = dispatcher(ledger, calls, clock)
    d.submit([critical()])
    for seconds in (0, 300, 600):
        d.pump(clock.at(seconds))
    first, second, third = (text for _, text in calls.calls)
    assert first.startswith("Critical alert: breaker tripped.")
    assert "Repeat" not in first
    assert second.startswith("Repeat call 2 of 4. Critical alert: breaker tripped.")
    assert third.startswith("Repeat call 3 of 4. ")
    assert second.endswith("I repeat: main: daily loss breaker tripped.")


def test_format_voice_repeat_prefix_is_pure_and_validated():
    alert = critical()
    assert format_voice(alert, 1, 4) == format_voice(alert)
    assert format_voice(alert, 3).startswith("Repeat call 3. Critical alert")
    with pytest.raises(DataError, match="call number"):
        format_voice(alert, 0)
    with pytest.raises(DataError, match="calls must be"):
        format_voice(alert, 3, 2)


def test_escalation_runs_on_the_wall_clock_not_the_alerts_simulated_time(ledger):
    clock, calls = Clock(), FakeCalls()
    d = dispatcher(ledger, calls, clock)
    d.submit([critical(at=datetime(2020, 3, 16, 14, 0, tzinfo=UTC))])  # a simulated instant
    d.pump(clock.at(0))
    d.pump(clock.at(299))
    assert calls.to == [A]
    d.pump(clock.at(300))
    assert calls.to == [A, A]


# --- acknowledging -------------------------------------------------------------------------------

def test_ack_stops_the_calls_and_suppresses_a_pending_retry(ledger):
    clock = Clock()
    calls = FakeCalls()
    sms = FakeSms(TemporaryError("503"), TemporaryError("503"))
    d = dispatcher(ledger, calls, clock, sms=sms)
    d.submit([critical()])
    d.pump(clock.at(0))  # a called; the SMS fails twice (+0, +300), its retry is due at +420
    calls.errors.append(TemporaryError("Twilio 503"))
    d.pump(clock.at(300))  # step 1 fails: retry due at +330
    assert voice_rows(ledger, critical())[1]["status"] == "pending"

    assert d.ack(alert_id(critical()), clock.at(350)) is True
    assert d.ack(alert_id(critical()), clock.at(351)) is False  # once

    rows = voice_rows(ledger, critical())
    assert (rows[1]["status"], rows[1]["last_error"]) == ("suppressed", "acknowledged")
    assert rows[1]["next_attempt_at"] is None
    assert rows[0]["status"] == "delivered"  # step 0 is untouched
    assert ledger.deliveries(alert_id(critical()), channel="sms")[0]["status"] == "pending"
    for seconds in (360, 600, 900, 1200):
        d.pump(clock.at(seconds))
    assert calls.to == [A]
    assert calls.tries == 2
    assert sorted(voice_rows(ledger, critical())) == [0, 1]
    assert sms.sent == [SMS_TO]  # the other channels go on as before


def test_ack_open_acknowledges_critical_and_warning_alerts_once(ledger):
    clock, calls = Clock(), FakeCalls()
    info_by_sms = RoutingPolicy(routes={"info": ["log", "sms"]})
    d = dispatcher(ledger, calls, clock, sms=FakeSms(), routing=state(policy=info_by_sms))
    crit = critical()
    warn = critical(key="w", severity=Severity.WARNING)
    info = critical(key="i", severity=Severity.INFO)
    d.submit([crit, warn, info])
    d.pump(clock.at(0))

    rows = d.ack_open(clock.at(120))
    assert [(r["alert_id"], r["severity"]) for r in rows] == sorted(
        [(alert_id(crit), "critical"), (alert_id(warn), "warning")])
    assert set(rows[0]) == {"alert_id", "severity", "kind", "key", "message", "at", "created_at"}
    assert {r["key"] for r in rows} == {crit.key, "w"}
    assert d.ack_open(clock.at(121)) == []
    assert ledger.outbox(alert_id(info))[0]["acked_at"] is None
    assert d.ack(alert_id(crit), clock.at(122)) is False  # already acknowledged

    for seconds in (300, 600, 900):
        d.pump(clock.at(seconds))
    assert calls.to == [A]


def test_ack_open_with_nothing_open_returns_an_empty_list(ledger):
    assert dispatcher(ledger, FakeCalls(), Clock()).ack_open() == []


# --- outages, restarts, retries -----------------------------------------------------------------

def test_a_pump_after_a_long_outage_makes_one_call_not_a_burst(ledger):
    clock, calls = Clock(), FakeCalls()
    d = dispatcher(ledger, calls, clock)
    d.submit([critical()])
    d.pump(clock.at(0))
    d.pump(clock.at(700))  # +300 and +600 were missed: only the latest due step is made
    assert calls.to == [A, B]
    assert calls.calls[1][1].startswith("Repeat call 3 of 4.")
    assert sorted(voice_rows(ledger, critical())) == [0, 2]
    d.pump(clock.at(800))
    assert calls.to == [A, B]
    d.pump(clock.at(900))
    assert calls.to == [A, B, B]


def test_a_first_pump_long_after_submit_supersedes_the_stale_first_call(ledger):
    clock, calls = Clock(), FakeCalls()
    d = dispatcher(ledger, calls, clock)
    d.submit([critical()])  # written at +0; the process was down until +700
    d.pump(clock.at(700))
    assert calls.to == [B]
    rows = voice_rows(ledger, critical())
    assert (rows[0]["status"], rows[0]["last_error"]) == ("suppressed", "superseded by step 2")
    assert rows[2]["status"] == "delivered"
    d.pump(clock.at(900))  # escalation goes on after a superseded step 0
    assert calls.to == [B, B]


def test_a_restart_does_not_repeat_a_delivered_step(tmp_path):
    path = tmp_path / "thetadesk.db"
    clock, calls = Clock(), FakeCalls()
    first = Ledger(path)
    d = dispatcher(first, calls, clock)
    d.submit([critical()])
    d.pump(clock.at(0))
    d.pump(clock.at(300))
    first.close()
    assert calls.to == [A, A]

    second = Ledger(path)
    try:
        again = FakeCalls()
        d = dispatcher(second, again, clock)  # a new Dispatcher over the same ledger file
        d.pump(clock.at(300))
        d.pump(clock.at(450))
        assert again.calls == []
        d.pump(clock.at(600))
        assert again.to == [B]
        assert sorted(voice_rows(second, critical())) == [0, 1, 2]
    finally:
        second.close()


def test_a_temporary_error_on_an_escalation_call_is_retried_with_backoff(ledger):
    clock, calls = Clock(), FakeCalls()
    d = dispatcher(ledger, calls, clock)
    d.submit([critical()])
    d.pump(clock.at(0))
    calls.errors.append(TemporaryError("Twilio 503"))
    d.pump(clock.at(300))
    row = voice_rows(ledger, critical())[1]
    assert (row["status"], row["attempts"], row["recipient"]) == ("pending", 1, A)
    assert "503" in row["last_error"]
    assert datetime.fromisoformat(row["next_attempt_at"]) == T0 + timedelta(seconds=330)

    d.pump(clock.at(329))
    assert calls.tries == 2
    d.pump(clock.at(330))
    row = voice_rows(ledger, critical())[1]
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    assert calls.to == [A, A]
    assert calls.calls[1][1].startswith("Repeat call 2 of 4.")


def test_an_escalation_call_that_keeps_failing_fails_after_max_attempts(ledger):
    clock, calls = Clock(), FakeCalls()
    d = dispatcher(ledger, calls, clock, max_attempts=2)
    d.submit([critical()])
    d.pump(clock.at(0))
    calls.errors.extend([TemporaryError("503")] * 2)
    d.pump(clock.at(300))
    d.pump(clock.at(330))
    assert voice_rows(ledger, critical())[1]["status"] == "failed"
    d.pump(clock.at(600))  # the next step still goes out
    assert calls.to == [A, B]


# --- what never escalates ------------------------------------------------------------------------

@pytest.mark.parametrize("severity", [Severity.WARNING, Severity.INFO])
def test_warning_and_info_alerts_never_escalate(ledger, severity):
    clock, calls = Clock(), FakeCalls()
    every_call = RoutingPolicy(routes={"info": ["log", "voice"], "warning": ["log", "voice"]})
    d = dispatcher(ledger, calls, clock, routing=state(policy=every_call))
    alert = critical(severity=severity)
    d.submit([alert])
    for seconds in (0, 300, 600, 900, 1200):
        d.pump(clock.at(seconds))
    assert calls.to == [A]  # the routed call, and no other
    assert sorted(voice_rows(ledger, alert)) == [0]


def test_no_escalation_without_a_plan(ledger):
    clock, calls = Clock(), FakeCalls()
    d = dispatcher(ledger, calls, clock, routing=state(escalation=False, voice=(A,)))
    d.submit([critical()])
    for seconds in (0, 300, 600):
        d.pump(clock.at(seconds))
    assert calls.to == [A]
    assert sorted(voice_rows(ledger, critical())) == [0]


def test_no_escalation_when_the_voice_channel_is_disabled(tmp_path):
    path = tmp_path / "thetadesk.db"
    clock = Clock()
    ledger = Ledger(path)
    d = dispatcher(ledger, None, clock, sms=FakeSms())  # no voice credentials
    d.submit([critical()])
    for seconds in (0, 300, 600):
        d.pump(clock.at(seconds))
    ledger.close()

    ledger = Ledger(path)  # voice credentials come back: the alert was never called, so no calls
    try:
        calls = FakeCalls()
        d = dispatcher(ledger, calls, clock, sms=FakeSms())
        d.pump(clock.at(900))
        assert calls.calls == []
        rows = voice_rows(ledger, critical())
        assert sorted(rows) == [0]
        assert rows[0]["status"] == "suppressed"
    finally:
        ledger.close()


def test_old_alerts_are_outside_the_escalation_scan(ledger):
    clock, calls = Clock(), FakeCalls()
    d = dispatcher(ledger, calls, clock)
    d.submit([critical()])
    d.pump(clock.at(0))
    since = clock.at(7200) - timedelta(seconds=4 * 300 + d._retry_horizon_s())
    assert ledger.open_escalations(since) == []
    assert [r["alert_id"] for r in ledger.open_escalations(T0)] == [alert_id(critical())]


def test_a_failing_escalation_scan_never_holds_up_the_deliveries(ledger, monkeypatch):
    clock, calls = Clock(), FakeCalls()
    sms = FakeSms()
    d = dispatcher(ledger, calls, clock, sms=sms)
    d.submit([critical()])

    def broken(since):
        raise DataError("malformed outbox row")

    monkeypatch.setattr(ledger, "open_escalations", broken)
    assert d.pump(clock.at(0)) == 2
    assert (calls.to, sms.sent) == ([A], [SMS_TO])
