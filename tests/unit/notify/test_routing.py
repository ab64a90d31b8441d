"""Routing rules with concrete, injected times."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from thetadesk.errors import DataError
from thetadesk.messages import Alert, Severity
from thetadesk.notify.routing import (
    Action,
    Channel,
    Deduplicator,
    Delivery,
    EscalationPlan,
    QuietHours,
    RateLimiter,
    RoutingPolicy,
    RoutingState,
    plan,
)

T0 = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)  # 11:00 New York, a Monday
NY = ZoneInfo("America/New_York")


def alert(severity=Severity.WARNING, kind="breaker_tripped", key="k1", at=T0):
    return Alert(Severity(severity), kind, key, "message", at)


def secs(s):
    return T0 + timedelta(seconds=s)


# --- RoutingPolicy -----------------------------------------------------------------------------

def test_default_routes_follow_the_issue():
    policy = RoutingPolicy()
    assert policy.channels_for(alert("info", "fill")) == (Channel.LOG, Channel.TELEGRAM)
    assert policy.channels_for(alert("warning")) == (Channel.LOG, Channel.TELEGRAM, Channel.SMS)
    assert policy.channels_for(alert("critical")) == (
        Channel.LOG, Channel.TELEGRAM, Channel.SMS, Channel.VOICE)


def test_per_kind_switch_off_leaves_only_the_log():
    policy = RoutingPolicy(kinds={"fill": False, "daily_summary": True})
    assert policy.channels_for(alert("info", "fill")) == (Channel.LOG,)
    assert policy.channels_for(alert("info", "daily_summary")) == (Channel.LOG, Channel.TELEGRAM)
    assert policy.channels_for(alert("critical", "breaker_tripped"))[-1] is Channel.VOICE


def test_routes_override_one_severity_and_keep_the_others():
    policy = RoutingPolicy(routes={"info": ["log"], "warning": ["telegram", "telegram"]})
    assert policy.channels_for(alert("info")) == (Channel.LOG,)
    assert policy.channels_for(alert("warning")) == (Channel.TELEGRAM,)
    assert Channel.VOICE in policy.channels_for(alert("critical"))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"routes": {"loud": ["sms"]}}, "unknown severity 'loud'"),
    ({"routes": {"info": ["pigeon"]}}, r"routes\[info\]: unknown channel 'pigeon'"),
    ({"routes": {"info": "sms"}}, "must be a list of channels"),
    ({"kinds": {"fill": "no"}}, r"kinds\[fill\] must be true or false"),
])
def test_routing_policy_rejects_bad_config(kwargs, message):
    with pytest.raises(DataError, match=message):
        RoutingPolicy(**kwargs)


# --- Deduplicator ------------------------------------------------------------------------------

def test_dedup_window_edges():
    dedup = Deduplicator(window_s=300)
    assert dedup.admit(alert(), secs(0))
    assert not dedup.admit(alert(), secs(1))
    assert not dedup.admit(alert(), secs(299.999))
    assert dedup.admit(alert(), secs(300))  # exactly one window later: delivered again
    assert not dedup.admit(alert(), secs(599))  # window restarts at the last delivery
    assert dedup.admit(alert(key="other"), secs(599))


def test_dedup_lets_a_more_severe_alert_through():
    dedup = Deduplicator(window_s=300)
    assert dedup.admit(alert("warning"), secs(0))
    assert dedup.admit(alert("critical"), secs(10))
    assert not dedup.admit(alert("critical"), secs(20))
    assert not dedup.admit(alert("warning"), secs(30))


def test_dedup_clock_going_backwards_counts_as_inside_the_window():
    dedup = Deduplicator(window_s=60)
    assert dedup.admit(alert(), secs(100))
    assert not dedup.admit(alert(), secs(0))


def test_dedup_state_round_trips_through_a_dict():
    dedup = Deduplicator(window_s=300)
    dedup.admit(alert(), secs(0))
    data = dedup.to_dict()
    assert data == {"window_s": 300.0,
                    "last": {"k1": {"at": "2025-01-06T16:00:00+00:00", "rank": 1}}}
    restored = Deduplicator.from_dict(data)
    assert not restored.admit(alert(), secs(299))
    assert restored.admit(alert(), secs(300))


def test_dedup_prunes_expired_keys():
    dedup = Deduplicator(window_s=60)
    dedup.admit(alert(key="a"), secs(0))
    dedup.admit(alert(key="b"), secs(61))
    assert list(dedup.to_dict()["last"]) == ["b"]


@pytest.mark.parametrize("window", [0, -1, float("nan"), "60", True])
def test_dedup_rejects_bad_windows(window):
    with pytest.raises(DataError, match="window_s must be a positive number"):
        Deduplicator(window)


def test_dedup_rejects_naive_times_and_malformed_state():
    with pytest.raises(DataError, match="timezone-aware"):
        Deduplicator(60).admit(alert(), datetime(2025, 1, 6, 16, 0))  # noqa: DTZ001
    with pytest.raises(DataError, match="malformed"):
        Deduplicator.from_dict({"window_s": 60, "last": {"k": {"at": "yesterday", "rank": 1}}})
    with pytest.raises(DataError, match="malformed"):
        Deduplicator.from_dict({})


# --- RateLimiter -------------------------------------------------------------------------------

def test_rate_limit_sliding_window():
    limiter = RateLimiter({"sms": (2, 60)})
    assert limiter.allow("sms", secs(0))
    assert limiter.allow("sms", secs(10))
    assert not limiter.allow("sms", secs(59))
    assert limiter.allow("sms", secs(60))  # the message at 0 stopped counting at exactly 60
    assert not limiter.allow("sms", secs(69.9))
    assert limiter.allow("sms", secs(70))
    assert all(limiter.allow(Channel.TELEGRAM, secs(1)) for _ in range(100))  # unlimited


def test_rate_limit_is_per_channel_and_force_counts():
    limiter = RateLimiter({Channel.SMS: (1, 60), Channel.VOICE: (1, 60)})
    assert limiter.allow("sms", secs(0))
    assert limiter.allow("voice", secs(0))
    assert limiter.allow("sms", secs(1), force=True)
    assert not limiter.would_allow("sms", secs(60))  # the forced message at 1 still counts
    assert limiter.would_allow("sms", secs(61))


def test_rate_limit_state_round_trips():
    limiter = RateLimiter({"sms": (1, 60)})
    limiter.allow("sms", secs(0))
    restored = RateLimiter.from_dict(limiter.to_dict())
    assert not restored.allow("sms", secs(30))
    assert restored.allow("sms", secs(60))


@pytest.mark.parametrize(("limits", "message"), [
    ({"sms": (0, 60)}, "max messages must be an integer >= 1"),
    ({"sms": (1, 0)}, "positive number of seconds"),
    ({"sms": 5}, r"must be \(max messages, window seconds\)"),
    ({"fax": (1, 60)}, "unknown channel 'fax'"),
])
def test_rate_limit_rejects_bad_config(limits, message):
    with pytest.raises(DataError, match=message):
        RateLimiter(limits)


# --- QuietHours --------------------------------------------------------------------------------

def ny(y, m, d, hh, mm):
    return datetime(y, m, d, hh, mm, tzinfo=NY)


def test_quiet_hours_across_midnight():
    quiet = QuietHours("22:00", "07:00")
    assert not quiet.is_quiet(ny(2025, 1, 6, 21, 59))
    assert quiet.is_quiet(ny(2025, 1, 6, 22, 0))
    assert quiet.is_quiet(ny(2025, 1, 6, 23, 30))
    assert quiet.is_quiet(ny(2025, 1, 7, 6, 59))
    assert not quiet.is_quiet(ny(2025, 1, 7, 7, 0))


def test_quiet_hours_within_a_day():
    quiet = QuietHours(time(12, 0), time(13, 0))
    assert quiet.is_quiet(ny(2025, 1, 6, 12, 30))
    assert not quiet.is_quiet(ny(2025, 1, 6, 13, 0))
    assert not quiet.is_quiet(ny(2025, 1, 6, 11, 59))


def test_quiet_hours_follow_the_local_clock_through_dst():
    quiet = QuietHours("22:00", "07:00")
    # Winter (EST, UTC-5): 22:00 local is 03:00 UTC.
    assert quiet.is_quiet(datetime(2025, 1, 7, 3, 0, tzinfo=UTC))
    assert not quiet.is_quiet(datetime(2025, 1, 7, 2, 59, tzinfo=UTC))
    # Summer (EDT, UTC-4): 22:00 local is 02:00 UTC; 07:00 local is 11:00 UTC.
    assert quiet.is_quiet(datetime(2025, 7, 8, 2, 0, tzinfo=UTC))
    assert not quiet.is_quiet(datetime(2025, 7, 8, 11, 0, tzinfo=UTC))
    assert quiet.is_quiet(datetime(2025, 7, 8, 10, 59, tzinfo=UTC))
    # The night of the spring-forward change (2025-03-09, 02:00 EST -> 03:00 EDT).
    assert quiet.is_quiet(datetime(2025, 3, 9, 6, 59, tzinfo=UTC))  # 01:59 EST
    assert quiet.is_quiet(datetime(2025, 3, 9, 7, 0, tzinfo=UTC))  # 03:00 EDT
    assert not quiet.is_quiet(datetime(2025, 3, 9, 11, 0, tzinfo=UTC))  # 07:00 EDT
    # The fall-back night (2025-11-02): 07:00 EST is 12:00 UTC.
    assert quiet.is_quiet(datetime(2025, 11, 2, 11, 59, tzinfo=UTC))  # 06:59 EST
    assert not quiet.is_quiet(datetime(2025, 11, 2, 12, 0, tzinfo=UTC))


def test_critical_ignores_quiet_hours():
    quiet = QuietHours("22:00", "07:00")
    night = ny(2025, 1, 6, 23, 0)
    assert quiet.holds_back(alert("warning"), night)
    assert quiet.holds_back(alert("info"), night)
    assert not quiet.holds_back(alert("critical"), night)
    assert not quiet.holds_back(alert("warning"), ny(2025, 1, 6, 12, 0))


@pytest.mark.parametrize(("args", "message"), [
    (("22:00", "22:00"), "start and end are both 22:00"),
    (("late", "07:00"), "start must be a time like '22:00'"),
    (("22:00", "07:00", "Mars/Olympus"), "not a known IANA zone"),
])
def test_quiet_hours_reject_bad_config(args, message):
    with pytest.raises(DataError, match=message):
        QuietHours(*args)


# --- EscalationPlan ----------------------------------------------------------------------------

def test_escalation_sequence_calls_each_contact_twice_then_stops():
    esc = EscalationPlan(["+1555000", "+1555111"], ack_timeout_s=300, max_rounds=2)
    done: list[Action] = []
    calls = []
    for minute in range(0, 31):
        for action in esc.next_actions(T0, None, secs(minute * 60), done):
            done.append(action)
            calls.append((minute, action.to, action.step))
    assert calls == [(0, "+1555000", 0), (5, "+1555000", 1), (10, "+1555111", 2),
                     (15, "+1555111", 3)]
    assert all(a.channel is Channel.VOICE for a in done)
    assert not esc.exhausted(T0, None, secs(19 * 60 + 59))
    assert esc.exhausted(T0, None, secs(20 * 60))


def test_escalation_stops_once_acknowledged():
    esc = EscalationPlan(["a", "b"], ack_timeout_s=300, max_rounds=2)
    first = esc.next_actions(T0, None, secs(0), [])
    assert first == [Action(0, "a", T0)]
    acked = secs(120)
    assert esc.next_actions(T0, acked, secs(300), [0]) == []
    assert esc.next_actions(T0, acked, secs(3000), [0]) == []
    assert not esc.exhausted(T0, acked, secs(3000))
    # An ack stamped after "now" (not yet seen at now) does not stop the call that is due.
    assert esc.next_actions(T0, secs(400), secs(300), [0]) == [Action(1, "a", secs(300))]


def test_escalation_after_downtime_makes_one_call_not_a_burst():
    esc = EscalationPlan(["a", "b"], ack_timeout_s=300, max_rounds=2)
    assert esc.next_actions(T0, None, secs(700), [0]) == [Action(2, "b", secs(600))]
    assert esc.next_actions(T0, None, secs(700), [2]) == []
    assert esc.next_actions(T0, None, secs(300), [2]) == []  # a later call was already made
    assert esc.next_actions(T0, None, secs(99999), []) == [Action(3, "b", secs(900))]
    assert esc.next_actions(T0, None, secs(-1), []) == []


def test_escalation_one_round_moves_on_each_timeout():
    esc = EscalationPlan(["a", "b", "c"], ack_timeout_s=60, max_rounds=1)
    assert [esc.action(i, T0).to for i in range(esc.steps)] == ["a", "b", "c"]
    assert esc.next_actions(T0, None, secs(60), [0]) == [Action(1, "b", secs(60))]


@pytest.mark.parametrize(("args", "message"), [
    (([], 60), "non-empty list"),
    (("+1555", 60), "non-empty list"),
    ((["a", ""], 60), "is not a phone number"),
    ((["a"], 0), "ack_timeout_s must be a positive number"),
    ((["a"], 60, 0), "max_rounds must be an integer >= 1"),
])
def test_escalation_rejects_bad_config(args, message):
    with pytest.raises(DataError, match=message):
        EscalationPlan(*args)


# --- plan --------------------------------------------------------------------------------------

def state(**kwargs):
    base = {"recipients": {"telegram": ["chat1"], "sms": ["+1555000", "+1555222"]},
            "escalation": EscalationPlan(["+1555000", "+1555111"], 300)}
    base.update(kwargs)
    return RoutingState(**base)


def test_plan_critical_goes_everywhere_voice_to_first_contact():
    assert plan(alert("critical"), T0, state()) == [
        Delivery(Channel.LOG, None), Delivery(Channel.TELEGRAM, "chat1"),
        Delivery(Channel.SMS, "+1555000"), Delivery(Channel.SMS, "+1555222"),
        Delivery(Channel.VOICE, "+1555000")]


def test_plan_skips_channels_without_recipients():
    st = state(recipients={"telegram": "chat1"}, escalation=None)
    assert plan(alert("critical"), T0, st) == [Delivery(Channel.LOG, None),
                                                Delivery(Channel.TELEGRAM, "chat1")]


def test_plan_quiet_hours_hold_back_warnings_but_not_critical():
    st = state(quiet=QuietHours("22:00", "07:00"))
    night = ny(2025, 1, 6, 23, 0)
    assert plan(alert("warning"), night, st) == [Delivery(Channel.LOG, None)]
    assert Delivery(Channel.VOICE, "+1555000") in plan(alert("critical", key="k2"), night, st)


def test_plan_dedups_and_switches_kinds_off():
    st = state(dedup=Deduplicator(300), policy=RoutingPolicy(kinds={"fill": False}))
    assert len(plan(alert("warning"), secs(0), st)) == 4
    assert plan(alert("warning"), secs(10), st) == []
    assert plan(alert("info", "fill", key="f"), secs(10), st) == [Delivery(Channel.LOG, None)]


def test_plan_rate_limit_drops_warnings_but_not_critical():
    st = state(limiter=RateLimiter({"sms": (1, 3600)}))
    assert Delivery(Channel.SMS, "+1555000") in plan(alert("warning", key="a"), secs(0), st)
    second = plan(alert("warning", key="b"), secs(60), st)
    assert [d.channel for d in second] == [Channel.LOG, Channel.TELEGRAM]
    third = plan(alert("critical", key="c"), secs(120), st)
    assert Delivery(Channel.SMS, "+1555222") in third


def test_plan_rejects_naive_now():
    with pytest.raises(DataError, match="now must be timezone-aware"):
        plan(alert(), datetime(2025, 1, 6, 16, 0), state())  # noqa: DTZ001
