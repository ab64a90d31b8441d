"""The notification outbox: write-ahead delivery of alerts to people, with retries.

``Dispatcher.submit`` plans each alert (``thetadesk.notify.routing.plan``: routes, per-kind
switches, deduplication, quiet hours, rate limits) and writes the alert and one row per planned
delivery to the ledger (``outbox`` and ``deliveries``) in ONE transaction, together with the
deduplication and rate-limit state (``run_state`` key ``notify_routing_state``, JSON), so that a
restart keeps them. Nothing is sent before that commit.

``Dispatcher.pump`` sends every pending delivery that is due through its channel's ``Sender``:

- success: ``delivered`` with the provider's id (a Twilio SID, a Telegram message id);
- ``TemporaryError`` (429, 5xx, timeouts): the attempt is counted and the delivery retried after
  ``backoff_s`` (30 s, 2 min, 10 min, the last repeating), ``failed`` after ``max_attempts``;
- any other ``ThetaDeskError`` (a 4xx rejection, a bad number): ``failed`` at once;
- a channel with no sender (credentials missing): planned rows are written ``suppressed``, so
  the outbox says who would have been told.

Crash safety. A delivery is marked delivered only after its sender returns, so a restart (a new
``Dispatcher`` on the same ledger, which pumps) sends every delivery that was never delivered and
none that was. The one window that cannot be closed without the provider's help: a crash after the
provider accepted a message and before our commit re-sends that one message on restart (at least
once, never lost). Log and console are not in the outbox: they are always on (``Notifier``).

Escalation (``RoutingState.escalation``, an ``EscalationPlan``). A critical alert's first voice
call is step 0, planned with the alert. Each ``pump`` then asks the plan, for every recent
unacknowledged critical alert whose step-0 call was planned live (not ``suppressed``), which call
is due (``EscalationPlan.next_actions``: call the contact again after ``ack_timeout_s``, then the
next contact). A due call is written first (a ``deliveries`` row with its ``step``, pending, due
now) and then attempted like every delivery, with the same retries; a later step supersedes a
still-pending earlier one, so a long outage ends in one call, not a burst. The steps written are
in the ledger, so a restart never repeats one. Acknowledging (``ack``, ``ack_open``: Telegram
``/ack``) stops it: pending calls after the first are ``suppressed`` ("acknowledged").
Escalation runs on the Dispatcher's wall clock (the outbox's ``created_at``), never on the
alert's ``at``, which is simulated time in a simulated run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, cast

from thetadesk.clock import LiveClock
from thetadesk.errors import DataError, TemporaryError, ThetaDeskError
from thetadesk.logging import get_logger
from thetadesk.messages import Alert, Severity
from thetadesk.notify.format import format_sms, format_table, format_telegram, format_voice
from thetadesk.notify.routing import Channel, Deduplicator, RateLimiter, RoutingState, plan
from thetadesk.store import Ledger

__all__ = [
    "BACKOFF_S",
    "MAX_ATTEMPTS",
    "STATE_KEY",
    "CallSender",
    "Dispatcher",
    "Sender",
    "TelegramSender",
    "TwilioSmsSender",
    "TwilioVoiceSender",
    "alert_id",
    "daily_summary",
]

BACKOFF_S: tuple[float, ...] = (30.0, 120.0, 600.0)
MAX_ATTEMPTS = 5
STATE_KEY = "notify_routing_state"


class Sender(Protocol):
    """Sends one alert to one recipient; returns the provider's id for the message.

    Raises ``TemporaryError`` for a failure worth retrying, any other ``ThetaDeskError`` for one
    that is not."""

    def send(self, to: str, alert: Alert) -> str: ...


class CallSender(Protocol):
    """The voice channel's sender: also says which call of an escalation it is making.

    The Dispatcher passes ``call`` (1: the first) and ``calls`` (the planned number, None if no
    plan is configured) for an escalation call after the first, and nothing else otherwise."""

    def send(self, to: str, alert: Alert, call: int = 1, calls: int | None = None) -> str: ...


class _Sms(Protocol):
    def send_sms(self, to: str, text: str) -> str: ...


class _Call(Protocol):
    def call(self, to: str, text: str) -> str: ...


class _Telegram(Protocol):
    def send(self, chat_id: int, html: str) -> int: ...


class TwilioSmsSender:
    def __init__(self, channel: _Sms) -> None:
        self.channel = channel

    def send(self, to: str, alert: Alert) -> str:
        return self.channel.send_sms(to, format_sms(alert))


class TwilioVoiceSender:
    def __init__(self, channel: _Call) -> None:
        self.channel = channel

    def send(self, to: str, alert: Alert, call: int = 1, calls: int | None = None) -> str:
        return self.channel.call(to, format_voice(alert, call, calls))


class TelegramSender:
    """Any object with ``send(chat_id, html) -> message id`` (``TelegramChannel``)."""

    def __init__(self, channel: _Telegram) -> None:
        self.channel = channel

    def send(self, to: str, alert: Alert) -> str:
        return str(self.channel.send(int(to), format_telegram(alert)))


_WALL = LiveClock()  # retries and backoff run on the wall clock (see the Dispatcher's ``clock``)


def alert_id(alert: Alert) -> str:
    """Deterministic id of an alert: a hash of (key, at, kind). The same alert submitted twice
    (a retried call) is written and sent once."""
    at = alert.at.astimezone(UTC).isoformat()
    return hashlib.sha256(f"{alert.key}\x1f{at}\x1f{alert.kind}".encode()).hexdigest()[:32]


class Dispatcher:
    """Outbox-backed delivery of alerts to the channels in ``channels`` (see the module doc).

    ``clock`` gives the wall-clock instant used for retries (``next_attempt_at``, backoff) and
    ``created_at``; routing (dedup windows, rate limits, quiet hours) runs at each alert's own
    ``at``, so a simulated run is deduplicated in simulated time; escalation runs on this clock
    too. Not thread-safe: the caller serialises ``submit``, ``pump``, ``ack`` and ``ack_open``.
    """

    def __init__(self, ledger: Ledger, channels: Mapping[Channel, Sender], state: RoutingState,
                 clock: Callable[[], datetime] = _WALL.now, *,
                 backoff_s: tuple[float, ...] = BACKOFF_S,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        if not backoff_s or any(b <= 0 for b in backoff_s):
            raise DataError(f"backoff_s must be positive seconds, got {backoff_s!r}")
        if max_attempts < 1:
            raise DataError(f"max_attempts must be at least 1, got {max_attempts}")
        self.ledger = ledger
        self.channels = {Channel(c): s for c, s in channels.items() if Channel(c) != Channel.LOG}
        self.state = state
        self.clock = clock
        self.backoff_s = backoff_s
        self.max_attempts = max_attempts
        self.log = get_logger("notify.outbox")
        self._restore()

    # -- routing state ---------------------------------------------------------------------

    def _restore(self) -> None:
        text = self.ledger.get_state(STATE_KEY)
        if not text:
            return
        try:
            data = json.loads(text)
            if self.state.dedup is not None and data.get("dedup"):
                stored = dict(data["dedup"], window_s=self.state.dedup.window_s)  # config wins
                self.state.dedup = Deduplicator.from_dict(stored)
            if self.state.limiter is not None and data.get("limiter"):
                stored = dict(data["limiter"], limits=self.state.limiter.to_dict()["limits"])
                self.state.limiter = RateLimiter.from_dict(stored)
        except (ValueError, TypeError, AttributeError) as exc:  # DataError is a ValueError
            self.log.warning("notify_state_unreadable", error=str(exc))

    def _state_json(self) -> str:
        return json.dumps({
            "dedup": None if self.state.dedup is None else self.state.dedup.to_dict(),
            "limiter": None if self.state.limiter is None else self.state.limiter.to_dict(),
        }, sort_keys=True)

    # -- submit, pump, ack -----------------------------------------------------------------

    def submit(self, alerts: Iterable[Alert]) -> list[str]:
        """Plans and writes each alert (before any send); returns the ids of the alerts that got
        at least one delivery row. Call ``pump`` to send."""
        written: list[str] = []
        dirty = False
        for alert in alerts:
            aid = alert_id(alert)
            if self.ledger.outbox(aid):
                continue  # the same alert again: written (and planned) already
            deliveries = plan(alert, alert.at, self.state)
            dirty = True
            rows = [(d.channel.value, d.to,
                     "pending" if d.channel in self.channels else "suppressed")
                    for d in deliveries if d.channel is not Channel.LOG and d.to is not None]
            if not rows:
                continue
            self.ledger.write_alert(
                alert_id=aid, severity=alert.severity.value, kind=alert.kind, key=alert.key,
                message=alert.message, at=alert.at, created_at=self.clock(), deliveries=rows,
                state={STATE_KEY: self._state_json()})
            dirty = False
            written.append(aid)
        if dirty:
            self.ledger.set_state(STATE_KEY, self._state_json())
        return written

    def pump(self, now: datetime | None = None) -> int:
        """Writes the escalation calls that are due, then sends every due pending delivery
        once; returns how many were delivered."""
        now = self.clock() if now is None else now
        try:
            self._escalate(now)
        except Exception as exc:  # a broken escalation must never hold up the deliveries
            self.log.error("notify_escalation_failed", error=f"{type(exc).__name__}: {exc}")
        delivered = 0
        for row in self.ledger.due_deliveries(now):
            delivered += self._attempt(row, now)
        return delivered

    def ack(self, alert_id: str, now: datetime | None = None) -> bool:
        """Acknowledges one alert (no further escalation calls); False if unknown or acked."""
        return self.ledger.ack_alert(alert_id, self.clock() if now is None else now)

    def ack_open(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Acknowledges every open critical and warning alert (Telegram ``/ack``) and returns
        their outbox rows (alert_id, severity, kind, key, message, at, created_at); ``[]`` when
        none was open."""
        rows = self.ledger.ack_open(self.clock() if now is None else now)
        if rows:
            self.log.info("notify_acknowledged", alerts=[r["alert_id"] for r in rows])
        return rows

    # -- escalation ------------------------------------------------------------------------

    def _retry_horizon_s(self) -> float:
        """The longest a delivery can keep retrying: every backoff up to ``max_attempts``."""
        return sum(self.backoff_s[min(i, len(self.backoff_s) - 1)]
                   for i in range(self.max_attempts - 1))

    def _escalate(self, now: datetime) -> None:
        """Writes the escalation call due now for each open critical alert (see the module
        doc). Only alerts created within the plan's span plus the retry horizon are read."""
        escalation = self.state.escalation
        if escalation is None or Channel.VOICE not in self.channels:
            return
        span_s = escalation.steps * escalation.ack_timeout_s + self._retry_horizon_s()
        for alert in self.ledger.open_escalations(now - timedelta(seconds=span_s)):
            statuses = {int(d["step"]): d["status"] for d in alert["voice"]}
            live = (statuses.get(0, "suppressed") != "suppressed"
                    or any(step > 0 for step in statuses))
            if not live:
                continue  # never called: voice was off or suppressed when it was planned
            created = datetime.fromisoformat(alert["created_at"])
            if escalation.exhausted(created, None, now):
                continue
            for action in escalation.next_actions(created, None, now, statuses.keys()):
                if action.step == 0:
                    continue  # planned with the alert (write_alert), never here
                if self.ledger.add_delivery(alert_id=alert["alert_id"],
                                            channel=action.channel.value, recipient=action.to,
                                            step=action.step, now=now):
                    self.log.warning("notify_escalation", alert_id=alert["alert_id"],
                                     kind=alert["kind"], step=action.step, to=action.to,
                                     of=escalation.steps)

    # -- one attempt -----------------------------------------------------------------------

    def _attempt(self, row: Mapping[str, Any], now: datetime) -> int:
        step = int(row.get("step") or 0)
        where = {"alert_id": row["alert_id"], "channel": row["channel"],
                 "recipient": row["recipient"], "step": step}
        sender = self.channels.get(Channel(row["channel"]))
        if sender is None:
            self.ledger.record_delivery(**where, status="suppressed", now=now,
                                        error="channel disabled")
            return 0
        alert = Alert(Severity(row["severity"]), row["kind"], row["key"], row["message"],
                      datetime.fromisoformat(row["at"]))
        attempts = int(row["attempts"]) + 1
        try:
            if step > 0:  # an escalation call says which one it is (CallSender)
                plan_steps = (None if self.state.escalation is None
                              else max(self.state.escalation.steps, step + 1))
                provider_id = cast(CallSender, sender).send(row["recipient"], alert,
                                                            call=step + 1, calls=plan_steps)
            else:
                provider_id = sender.send(row["recipient"], alert)
        except TemporaryError as exc:
            self._retry_or_fail(where, attempts, now, exc)
            return 0
        except ThetaDeskError as exc:
            self.log.error("notify_delivery_failed", channel=row["channel"],
                           alert_id=row["alert_id"], attempts=attempts, error=str(exc),
                           error_type=type(exc).__name__)
            self.ledger.record_delivery(**where, status="failed", now=now,
                                        error=f"{type(exc).__name__}: {exc}")
            return 0
        except Exception as exc:  # an unclassified failure in a sender: retry, never crash
            self._retry_or_fail(where, attempts, now, exc)
            return 0
        self.ledger.record_delivery(**where, status="delivered", now=now,
                                    provider_id=None if provider_id is None else str(provider_id))
        self.log.info("notify_delivered", channel=row["channel"], alert_id=row["alert_id"],
                      kind=row["kind"], attempts=attempts, step=step)
        return 1

    def _retry_or_fail(self, where: dict[str, Any], attempts: int, now: datetime,
                       exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if attempts >= self.max_attempts:
            self.log.error("notify_delivery_failed", **where, attempts=attempts, error=error)
            self.ledger.record_delivery(**where, status="failed", now=now, error=error)
            return
        delay = self.backoff_s[min(attempts - 1, len(self.backoff_s) - 1)]
        self.log.warning("notify_delivery_retry", **where, attempts=attempts, retry_in_s=delay,
                         error=error)
        self.ledger.record_delivery(**where, status="pending", now=now, error=error,
                                    next_attempt_at=now + timedelta(seconds=delay))


def daily_summary(ledger: Ledger, session: date) -> str:
    """The close-of-day summary from the ledger: per account P&L, trades opened and closed,
    open positions and their open risk (the sum of their maximum losses)."""
    from thetadesk.chain import NEW_YORK

    def on(ts: str | None) -> bool:
        return ts is not None and datetime.fromisoformat(ts).astimezone(NEW_YORK).date() == session

    rows = []
    for day in ledger.days():
        if day["session"] != session.isoformat():
            continue
        account = day["account"]
        positions = ledger.positions(account, status=None)
        end = day["end_equity"] if day["end_equity"] is not None else day["start_equity"]
        still_open = [p for p in positions if p["status"] == "open"]
        rows.append([
            account, round(end - day["start_equity"], 2),
            sum(1 for p in positions if on(p["opened_at"])),
            sum(1 for p in positions if p["status"] == "closed" and on(p["closed_at"])),
            len(still_open),
            round(sum(p["max_loss_per_spread"] * p["quantity"] for p in still_open), 2),
        ])
    if not rows:
        return f"Daily summary {session}: no accounts traded."
    total = sum(r[1] for r in rows)
    table = format_table(rows, ["account", "P&L", "opened", "closed", "open", "open risk"])
    return f"Daily summary {session}: P&L {total:+,.2f}\n{table}"
