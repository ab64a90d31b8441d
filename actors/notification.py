"""NotificationActor: routes alerts to people.

Log and console are always on (``Notifier``). SMS and voice (Twilio) and Telegram go through the
ledger's outbox (``thetadesk.notify.outbox.Dispatcher``): written before they are sent, retried
with backoff, and sent on restart if they were never delivered.

When deliveries are sent: ``notify`` writes the alerts (write-ahead) and wakes a daemon thread
that sends them at once, so a slow or failing provider never holds up the supervisor's tick; the
thread also pumps every ``PUMP_INTERVAL_S`` wall-clock seconds so that retries happen on time
even when no alert arrives. The constructor pumps (restart recovery), and ``pump`` sends
synchronously (the supervisor calls it before shutting down, and tests use it). One lock
serialises the thread and the actor's calls: the ledger connection is not shared concurrently.
Every pump also writes and makes the escalation calls that are due (a critical alert nobody
acknowledged calls again, then the next voice contact) until ``ack``/``ack_open`` stops them.

A channel whose credentials are missing or malformed is disabled with one warning at start-up,
never a crash. ``THETADESK_TWILIO_BASE_URL`` and ``THETADESK_TELEGRAM_BASE_URL`` (for testing
only) send every Twilio or Bot API request to another host, e.g. a local fake server in an
integration test.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from actors._common import footprint, ledger_for, pid, settle, start_process
from thetadesk.config import Config, NotificationsConfig
from thetadesk.errors import DataError
from thetadesk.logging import get_logger
from thetadesk.messages import Alert, Severity
from thetadesk.notify import Notifier
from thetadesk.notify.outbox import (
    Dispatcher,
    Sender,
    TelegramSender,
    TwilioSmsSender,
    TwilioVoiceSender,
    daily_summary,
)
from thetadesk.notify.routing import (
    Channel,
    Deduplicator,
    EscalationPlan,
    QuietHours,
    RateLimiter,
    RoutingPolicy,
    RoutingState,
)
from thetadesk.store import Ledger

ENV_TWILIO_BASE_URL = "THETADESK_TWILIO_BASE_URL"  # testing only: a local fake Twilio server
ENV_TELEGRAM_BASE_URL = "THETADESK_TELEGRAM_BASE_URL"  # testing only: a local fake Bot API
PUMP_INTERVAL_S = 5.0
DAILY_SUMMARY = "daily_summary"


def build_channels(cfg: NotificationsConfig, env: Mapping[str, str] = os.environ
                   ) -> tuple[dict[Channel, Sender], dict[Channel, tuple[str, ...]], list[Any]]:
    """The senders whose credentials exist, the recipients per channel, and what to close.

    Missing credentials: the adapter logs one warning and the channel is off. Malformed ones
    (a ``DataError``): one warning here, the channel is off. Never raises for credentials.
    """
    from thetadesk.adapters.twilio import TwilioChannel, TwilioSettings

    log = get_logger("notify")
    senders: dict[Channel, Sender] = {}
    recipients: dict[Channel, tuple[str, ...]] = {}
    closers: list[Any] = []
    try:
        settings = TwilioSettings.from_env(env)
    except DataError as exc:
        log.warning("twilio channel disabled: invalid settings", error=str(exc))
        settings = None
    env_numbers: tuple[str, ...] = settings.to_numbers if settings is not None else ()
    recipients[Channel.SMS] = tuple(cfg.sms_to) or env_numbers
    recipients[Channel.VOICE] = tuple(cfg.voice_to) or env_numbers
    if settings is not None:
        try:
            twilio = TwilioChannel(settings, base_url=env.get(ENV_TWILIO_BASE_URL) or None)
        except DataError as exc:
            log.warning("twilio channel disabled: bad client settings", error=str(exc))
        else:
            senders[Channel.SMS] = TwilioSmsSender(twilio)
            senders[Channel.VOICE] = TwilioVoiceSender(twilio)
            closers.append(twilio)
    recipients[Channel.TELEGRAM] = tuple(str(c) for c in cfg.telegram_chat_ids)
    telegram = _telegram(env, log, cfg.telegram_chat_ids)
    if telegram is not None:
        senders[Channel.TELEGRAM] = TelegramSender(telegram)
        closers.append(telegram)
    return senders, recipients, closers


def _telegram(env: Mapping[str, str], log: Any, chat_ids: Sequence[int]) -> Any:
    """A Telegram channel if the adapter is installed and configured, else None (one warning)."""
    try:
        from thetadesk.adapters import telegram as adapter
    except ImportError:
        log.warning("telegram channel disabled: adapter not available")
        return None
    settings_cls = getattr(adapter, "TelegramSettings", None)
    channel_cls = getattr(adapter, "TelegramChannel", None)
    if settings_cls is None or channel_cls is None or not hasattr(settings_cls, "from_env"):
        log.warning("telegram channel disabled: adapter has no TelegramSettings.from_env")
        return None
    try:
        settings = settings_cls.from_env(env, tuple(chat_ids))
        if settings is None:
            return None  # the adapter warned about the missing variables
        return channel_cls(settings, base_url=env.get(ENV_TELEGRAM_BASE_URL) or None)
    except Exception as exc:  # credentials never crash the system
        log.warning("telegram channel disabled: invalid settings", error=str(exc))
        return None


def routing_state(cfg: NotificationsConfig, recipients: Mapping[Channel, Sequence[str]]
                  ) -> RoutingState:
    voice = list(recipients.get(Channel.VOICE, ()))
    escalation = (EscalationPlan(voice, cfg.escalation.ack_timeout_s,
                                 cfg.escalation.calls_per_contact) if voice else None)
    quiet = (QuietHours(cfg.quiet_hours.start, cfg.quiet_hours.end, cfg.quiet_hours.tz)
             if cfg.quiet_hours is not None else None)
    return RoutingState(
        policy=RoutingPolicy(routes=dict(cfg.routes), kinds=dict(cfg.kinds)),
        dedup=Deduplicator(cfg.dedup_window_s),
        limiter=RateLimiter({c: (r.max, r.window_s) for c, r in cfg.rate_limits.items()}),
        quiet=quiet, recipients=dict(recipients), escalation=escalation)


def build_dispatcher(cfg: NotificationsConfig, ledger: Ledger,
                     env: Mapping[str, str] = os.environ,
                     clock: Callable[..., Any] | None = None) -> tuple[Dispatcher, list[Any]]:
    senders, recipients, closers = build_channels(cfg, env)
    state = routing_state(cfg, recipients)
    if clock is None:
        return Dispatcher(ledger, senders, state), closers
    return Dispatcher(ledger, senders, state, clock), closers


class NotificationActor:
    def __init__(self, config: Config, state_dir: Path, console: bool,
                 pump_interval_s: float = PUMP_INTERVAL_S) -> None:
        start_process(config, state_dir, "notification", console, kernels=False)  # no pricing
        self.log = get_logger("notify")
        self.min_rank = Severity(config.notifications.min_severity).rank
        self.notifier = Notifier(config.notifications.min_severity,
                                 console=config.notifications.console)
        self.ledger = ledger_for(state_dir)
        self._lock = threading.Lock()
        self.dispatcher, self._closers = build_dispatcher(config.notifications, self.ledger)
        self.pump()  # restart recovery: whatever was written but never delivered goes now
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._pump_loop, args=(pump_interval_s,),
                                        name="notify-pump", daemon=True)
        self._thread.start()
        settle()

    def notify(self, alerts: Sequence[Alert]) -> int:
        alerts = [self._expand(a) for a in alerts]
        count = len(self.notifier.notify(alerts))
        wanted = [a for a in alerts if a.severity.rank >= self.min_rank]
        if wanted:
            try:
                with self._lock:
                    self.dispatcher.submit(wanted)
            except Exception as exc:  # the log and console have it; never fail the tick
                self.log.error("notify_outbox_write_failed", error=str(exc))
            self._wake.set()  # the pump thread sends them now, off the tick's path
        return count

    def pump(self) -> int:
        try:
            with self._lock:
                return self.dispatcher.pump()
        except Exception as exc:
            self.log.error("notify_pump_failed", error=str(exc))
            return 0

    def ack(self, alert_id: str) -> bool:
        with self._lock:
            return self.dispatcher.ack(alert_id)

    def ack_open(self) -> list[dict[str, Any]]:
        """Acknowledges every open critical and warning alert (Telegram ``/ack``): escalation
        calls stop. Returns the acknowledged outbox rows; ``[]`` when none was open."""
        with self._lock:
            return self.dispatcher.ack_open()

    def ping(self) -> int:
        return pid()

    def footprint(self) -> dict:
        return footprint()

    def _pump_loop(self, interval_s: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(interval_s)
            self._wake.clear()
            if not self._stop.is_set():
                self.pump()

    def _expand(self, alert: Alert) -> Alert:
        """A ``daily_summary`` alert's message is built here from the ledger (key
        ``daily_summary:<session>``) when the sender left it empty."""
        if alert.kind != DAILY_SUMMARY or alert.message.strip():
            return alert
        try:
            session = date.fromisoformat(alert.key.rsplit(":", 1)[-1])
            return replace(alert, message=daily_summary(self.ledger, session))
        except Exception as exc:
            self.log.warning("daily_summary_failed", error=str(exc))
            return replace(alert, message="Daily summary unavailable; see the ledger.")
