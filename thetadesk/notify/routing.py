"""Pure, clock-injected notification policy: who hears about an alert, on which channel, when.

Nothing here sends, sleeps or reads the clock: every method takes ``now`` (a timezone-aware
datetime) and the stateful pieces (``Deduplicator``, ``RateLimiter``) export and restore their
state as plain dicts so an outbox can persist them. Bad inputs raise ``DataError``.

The rules, in the order ``plan`` applies them:

1. Routing (``RoutingPolicy``): severity -> channels. Default: info -> log + Telegram,
   warning -> log + Telegram + SMS, critical -> log + Telegram + SMS + voice. A kind switched
   off goes to the log only (never silently lost).
2. Deduplication (``Deduplicator``): an alert whose key was delivered less than ``window_s``
   seconds ago is dropped, unless it is more severe than the one delivered then.
3. Quiet hours (``QuietHours``): inside them a non-critical alert goes to the log only; a
   critical alert ignores them.
4. Rate limits (``RateLimiter``): at most N messages per channel per sliding window; a
   non-critical alert over the limit is not sent on that channel, a critical one is sent anyway
   (and counted).
5. Voice: the first call goes to ``EscalationPlan.contacts[0]``; later calls come from
   ``EscalationPlan.next_actions`` until the alert is acknowledged (Telegram ``/ack``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from thetadesk.errors import DataError
from thetadesk.messages import Alert, Severity


class Channel(StrEnum):
    LOG = "log"
    TELEGRAM = "telegram"
    SMS = "sms"
    VOICE = "voice"


DEFAULT_ROUTES: dict[Severity, tuple[Channel, ...]] = {
    Severity.INFO: (Channel.LOG, Channel.TELEGRAM),
    Severity.WARNING: (Channel.LOG, Channel.TELEGRAM, Channel.SMS),
    Severity.CRITICAL: (Channel.LOG, Channel.TELEGRAM, Channel.SMS, Channel.VOICE),
}


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise DataError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise DataError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise DataError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _channel(value: Channel | str, where: str) -> Channel:
    try:
        return Channel(value)
    except ValueError:
        names = ", ".join(c.value for c in Channel)
        raise DataError(f"{where}: unknown channel {value!r} (known: {names})") from None


def _severity(value: Severity | str, where: str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        names = ", ".join(s.value for s in Severity)
        raise DataError(f"{where}: unknown severity {value!r} (known: {names})") from None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message to send: ``channel`` to ``to`` (``None`` for the log)."""

    channel: Channel
    to: str | None


class RoutingPolicy:
    """Severity -> channels, with per-kind on/off switches.

    ``routes`` overrides the channels of the severities it names (the others keep
    ``DEFAULT_ROUTES``). ``kinds`` maps an alert kind to ``False`` to switch it off (``True`` or
    absent: on). A switched-off kind is still written to the log if its severity routes to the
    log, so nothing is lost without a trace.
    """

    def __init__(self, routes: Mapping[Severity | str, Iterable[Channel | str]] | None = None,
                 kinds: Mapping[str, bool] | None = None) -> None:
        self.routes: dict[Severity, tuple[Channel, ...]] = dict(DEFAULT_ROUTES)
        for sev, channels in (routes or {}).items():
            severity = _severity(sev, "routes")
            if isinstance(channels, str):
                raise DataError(f"routes[{severity.value}] must be a list of channels, "
                                f"got the string {channels!r}")
            self.routes[severity] = tuple(dict.fromkeys(
                _channel(c, f"routes[{severity.value}]") for c in channels))
        self.kinds: dict[str, bool] = {}
        for kind, on in (kinds or {}).items():
            if not isinstance(on, bool):
                raise DataError(f"kinds[{kind}] must be true or false, got {on!r}")
            self.kinds[kind] = on

    def enabled(self, kind: str) -> bool:
        return self.kinds.get(kind, True)

    def channels_for(self, alert: Alert) -> tuple[Channel, ...]:
        channels = self.routes[alert.severity]
        if not self.enabled(alert.kind):
            return tuple(c for c in channels if c is Channel.LOG)
        return channels


class Deduplicator:
    """Drops an alert whose key was delivered less than ``window_s`` seconds before.

    - The window runs from the last *delivered* occurrence: a condition that keeps firing is
      re-sent once per window (a reminder), not suppressed forever.
    - At exactly ``window_s`` seconds after the last delivery the alert is delivered again.
    - An alert more severe than the one last delivered for its key is never a duplicate
      (a warning that becomes critical gets through).
    - A clock that went backwards (``now`` before the last delivery) counts as inside the window.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = _positive(window_s, "Deduplicator window_s")
        self._last: dict[str, tuple[datetime, int]] = {}

    def is_duplicate(self, alert: Alert, now: datetime) -> bool:
        _aware(now, "now")
        last = self._last.get(alert.key)
        if last is None:
            return False
        at, rank = last
        if alert.severity.rank > rank:
            return False
        return (now - at).total_seconds() < self.window_s

    def admit(self, alert: Alert, now: datetime) -> bool:
        """True (and remembers the delivery) unless ``alert`` is a duplicate at ``now``."""
        if self.is_duplicate(alert, now):
            return False
        self._last[alert.key] = (now, alert.severity.rank)
        self.prune(now)
        return True

    def prune(self, now: datetime) -> None:
        """Forgets keys delivered a whole window or more before ``now``."""
        _aware(now, "now")
        self._last = {k: v for k, v in self._last.items()
                      if (now - v[0]).total_seconds() < self.window_s}

    def to_dict(self) -> dict[str, Any]:
        return {"window_s": self.window_s,
                "last": {k: {"at": at.isoformat(), "rank": rank}
                         for k, (at, rank) in sorted(self._last.items())}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deduplicator:
        try:
            out = cls(data["window_s"])
            for key, entry in data.get("last", {}).items():
                at = _aware(datetime.fromisoformat(entry["at"]), f"last[{key}].at")
                rank = int(entry["rank"])
                out._last[str(key)] = (at, rank)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"Deduplicator state is malformed: {exc!r}") from exc
        return out


class RateLimiter:
    """At most ``max`` messages per channel in any sliding window of ``window_s`` seconds.

    ``per_channel`` maps a channel to ``(max, window_s)``; channels not named are unlimited.
    A message sent at ``t`` stops counting at ``t + window_s`` exactly.
    """

    def __init__(self, per_channel: Mapping[Channel | str, tuple[int, float]]) -> None:
        self.limits: dict[Channel, tuple[int, float]] = {}
        for ch, limit in per_channel.items():
            channel = _channel(ch, "rate limits")
            try:
                count, window = limit
            except (TypeError, ValueError):
                raise DataError(f"rate limit for {channel.value} must be (max messages, window "
                                f"seconds), got {limit!r}") from None
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise DataError(f"rate limit for {channel.value}: max messages must be an "
                                f"integer >= 1, got {count!r}")
            self.limits[channel] = (count, _positive(window, f"rate limit for {channel.value}"))
        self._sent: dict[Channel, deque[datetime]] = {c: deque() for c in self.limits}

    def _expire(self, channel: Channel, now: datetime) -> deque[datetime] | None:
        if channel not in self.limits:
            return None
        window = timedelta(seconds=self.limits[channel][1])
        sent = self._sent[channel]
        while sent and sent[0] + window <= now:
            sent.popleft()
        return sent

    def would_allow(self, channel: Channel | str, now: datetime) -> bool:
        _aware(now, "now")
        channel = _channel(channel, "rate limiter")
        sent = self._expire(channel, now)
        return sent is None or len(sent) < self.limits[channel][0]

    def allow(self, channel: Channel | str, now: datetime, force: bool = False) -> bool:
        """True and counts the message if the channel is under its limit; ``force`` counts it
        and returns True regardless (for critical alerts)."""
        channel = _channel(channel, "rate limiter")
        ok = self.would_allow(channel, now)
        if (ok or force) and channel in self.limits:
            self._sent[channel].append(now)
        return ok or force

    def to_dict(self) -> dict[str, Any]:
        return {"limits": {c.value: [n, w] for c, (n, w) in self.limits.items()},
                "sent": {c.value: [t.isoformat() for t in s] for c, s in self._sent.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RateLimiter:
        try:
            out = cls({c: tuple(v) for c, v in data["limits"].items()})
            for ch, times in data.get("sent", {}).items():
                channel = _channel(ch, "rate limiter state")
                if channel in out._sent:
                    out._sent[channel].extend(
                        _aware(datetime.fromisoformat(t), f"sent[{ch}]") for t in sorted(times))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"RateLimiter state is malformed: {exc!r}") from exc
        return out


def _parse_time(value: time | str, name: str) -> time:
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError):
        raise DataError(f"quiet hours {name} must be a time like '22:00', got {value!r}") from None


class QuietHours:
    """Local wall-clock quiet hours from ``start`` (inclusive) to ``end`` (exclusive) in ``tz``.

    - ``start`` after ``end`` spans midnight (22:00-07:00 is quiet at 23:30 and at 06:59).
    - ``now`` is converted to ``tz`` first, so the hours follow the local clock through daylight
      saving changes (22:00 New York is 03:00 UTC in winter and 02:00 UTC in summer).
    - Critical alerts ignore quiet hours.
    """

    def __init__(self, start: time | str, end: time | str,
                 tz: str = "America/New_York") -> None:
        self.start = _parse_time(start, "start")
        self.end = _parse_time(end, "end")
        if self.start == self.end:
            raise DataError(f"quiet hours start and end are both {self.start.isoformat()}: "
                            "leave quiet hours out instead of giving an empty period")
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise DataError(f"quiet hours time zone {tz!r} is not a known IANA zone") from None

    def is_quiet(self, now: datetime) -> bool:
        local = _aware(now, "now").astimezone(self.tz).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def holds_back(self, alert: Alert, now: datetime) -> bool:
        """True if ``alert`` should not reach people at ``now`` (quiet and not critical)."""
        return alert.severity is not Severity.CRITICAL and self.is_quiet(now)


@dataclass(frozen=True, slots=True)
class Action:
    """Step ``step`` of an escalation: call ``to`` at ``due_at`` on ``channel``."""

    step: int
    to: str
    due_at: datetime
    channel: Channel = Channel.VOICE


class EscalationPlan:
    """Calls until someone acknowledges: each contact ``max_rounds`` times in list order, one
    call every ``ack_timeout_s`` seconds starting when the alert was created.

    With contacts ``[a, b]``, ``max_rounds=2`` and 5 minutes: call a at +0, a at +5, b at +10,
    b at +15, then stop (``exhausted``). Step ``i`` goes to ``contacts[i // max_rounds]`` at
    ``created + i * ack_timeout_s``.
    """

    def __init__(self, contacts: list[str], ack_timeout_s: float, max_rounds: int = 2) -> None:
        if isinstance(contacts, str) or not contacts:
            raise DataError("escalation contacts must be a non-empty list of numbers")
        for contact in contacts:
            if not isinstance(contact, str) or not contact.strip():
                raise DataError(f"escalation contact {contact!r} is not a phone number")
        if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
            raise DataError(f"escalation max_rounds must be an integer >= 1, got {max_rounds!r}")
        self.contacts = list(contacts)
        self.ack_timeout_s = _positive(ack_timeout_s, "escalation ack_timeout_s")
        self.max_rounds = max_rounds

    @property
    def steps(self) -> int:
        return len(self.contacts) * self.max_rounds

    def action(self, step: int, alert_created_at: datetime) -> Action:
        return Action(step, self.contacts[step // self.max_rounds],
                      alert_created_at + timedelta(seconds=step * self.ack_timeout_s))

    def next_actions(self, alert_created_at: datetime, acked_at: datetime | None,
                     now: datetime, done_actions: Collection[Action | int]) -> list[Action]:
        """The call to make now: ``[]`` or one ``Action``.

        - Nothing once acknowledged (``acked_at`` at or before ``now``).
        - Otherwise the latest step that is due (``due_at <= now``), unless it or a later step
          is in ``done_actions`` (steps or ``Action`` objects). Earlier steps missed while the
          process was down are skipped, not replayed: one call now, not a burst.
        """
        created = _aware(alert_created_at, "alert_created_at")
        _aware(now, "now")
        if acked_at is not None and _aware(acked_at, "acked_at") <= now:
            return []
        if now < created:
            return []
        done = {a.step if isinstance(a, Action) else int(a) for a in done_actions}
        elapsed = (now - created).total_seconds()
        latest = min(int(elapsed // self.ack_timeout_s), self.steps - 1)
        if any(step >= latest for step in done):
            return []
        return [self.action(latest, created)]

    def exhausted(self, alert_created_at: datetime, acked_at: datetime | None,
                  now: datetime) -> bool:
        """True when every call has been due and the last one's timeout passed without an ack."""
        created = _aware(alert_created_at, "alert_created_at")
        _aware(now, "now")
        if acked_at is not None and _aware(acked_at, "acked_at") <= now:
            return False
        return (now - created).total_seconds() >= self.steps * self.ack_timeout_s


@dataclass
class RoutingState:
    """Everything ``plan`` needs: the policy and the stateful limiters it updates.

    ``recipients`` maps a channel to whom it sends (Telegram chat ids, phone numbers); a channel
    with no recipients is skipped, except the log, which needs none. Voice goes to the first
    escalation contact when an ``escalation`` plan is given.
    """

    policy: RoutingPolicy = field(default_factory=RoutingPolicy)
    dedup: Deduplicator | None = None
    limiter: RateLimiter | None = None
    quiet: QuietHours | None = None
    recipients: Mapping[Channel | str, Iterable[str]] = field(default_factory=dict)
    escalation: EscalationPlan | None = None

    def recipients_for(self, channel: Channel) -> tuple[str, ...]:
        if channel is Channel.VOICE and self.escalation is not None:
            return (self.escalation.contacts[0],)
        for ch, people in self.recipients.items():
            if _channel(ch, "recipients") is channel:
                if isinstance(people, str):
                    return (people,)
                return tuple(people)
        return ()


def plan(alert: Alert, now: datetime, state: RoutingState) -> list[Delivery]:
    """The deliveries for ``alert`` at ``now``, applying the module's rules 1-5 in order.

    Updates ``state.dedup`` and ``state.limiter`` (an alert planned counts as delivered).
    A rate limit counts one message per alert per channel, whatever the number of recipients.
    """
    _aware(now, "now")
    channels = state.policy.channels_for(alert)
    if not channels:
        return []
    if state.dedup is not None and not state.dedup.admit(alert, now):
        return []
    if state.quiet is not None and state.quiet.holds_back(alert, now):
        channels = tuple(c for c in channels if c is Channel.LOG)
    critical = alert.severity is Severity.CRITICAL
    out: list[Delivery] = []
    for channel in channels:
        if channel is Channel.LOG:
            out.append(Delivery(Channel.LOG, None))
            continue
        people = state.recipients_for(channel)
        if not people:
            continue
        if state.limiter is not None and not state.limiter.allow(channel, now, force=critical):
            continue
        out.extend(Delivery(channel, person) for person in people)
    return out
