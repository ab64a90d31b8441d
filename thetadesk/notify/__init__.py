"""Alerts to people: formatting apart from sending (log and console channels for now).

``thetadesk.notify.format`` holds the pure per-channel formatters (SMS, voice, Telegram, tables)
and ``thetadesk.notify.routing`` the pure routing policy (severity routes, deduplication, rate
limits, quiet hours, escalation); their public names are re-exported here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from thetadesk.logging import get_logger
from thetadesk.messages import Alert, Severity
from thetadesk.notify.format import (
    format_sms,
    format_table,
    format_telegram,
    format_voice,
    gsm7_safe,
    speakable,
)
from thetadesk.notify.routing import (
    DEFAULT_ROUTES,
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

__all__ = [
    "DEFAULT_ROUTES",
    "Action",
    "Alert",
    "Channel",
    "Deduplicator",
    "Delivery",
    "EscalationPlan",
    "Notifier",
    "QuietHours",
    "RateLimiter",
    "RoutingPolicy",
    "RoutingState",
    "Severity",
    "format_console",
    "format_sms",
    "format_table",
    "format_telegram",
    "format_voice",
    "gsm7_safe",
    "plan",
    "speakable",
]


def format_console(alert: Alert) -> str:
    return f"[{alert.severity.value.upper()}] {alert.kind}: {alert.message}"


class Notifier:
    """Sends each alert at or above ``min_severity`` to the log and, if enabled, the console.
    A failure of one channel never stops the others."""

    def __init__(self, min_severity: str = "info", console: bool = True,
                 stream: TextIO | None = None) -> None:
        self.min_rank = Severity(min_severity).rank
        self.console = console
        self.stream = stream
        self.log = get_logger("notify")

    def notify(self, alerts: Iterable[Alert]) -> list[Alert]:
        sent = []
        for alert in alerts:
            if alert.severity.rank < self.min_rank:
                continue
            try:
                self.log.log(30 if alert.severity is Severity.WARNING else
                             50 if alert.severity is Severity.CRITICAL else 20,
                             "alert", severity=alert.severity.value, kind=alert.kind,
                             key=alert.key, message=alert.message, at=alert.at.isoformat())
            except Exception:  # one channel's failure must not stop the others
                pass
            if self.console:
                try:
                    print(format_console(alert), file=self.stream or sys.stderr, flush=True)
                except Exception:
                    pass
            sent.append(alert)
        return sent
