"""NotificationActor: routes alerts to people (log and console channels for now)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from actors._common import pid, settle, start_process
from thetadesk.config import Config
from thetadesk.messages import Alert
from thetadesk.notify import Notifier


class NotificationActor:
    def __init__(self, config: Config, state_dir: Path, console: bool) -> None:
        start_process(config, state_dir, "notification", console)
        self.notifier = Notifier(config.notifications.min_severity,
                                 console=config.notifications.console)
        settle()

    def notify(self, alerts: Sequence[Alert]) -> int:
        return len(self.notifier.notify(alerts))

    def ping(self) -> int:
        return pid()
