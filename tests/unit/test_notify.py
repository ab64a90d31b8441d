"""Specifications of the notifier: severity routing and console formatting."""

import io
from datetime import UTC, datetime

from structlog.testing import capture_logs

from thetadesk.messages import Alert, Severity
from thetadesk.notify import Notifier, format_console

NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
TRIP = Alert(Severity.CRITICAL, "breaker_tripped", "paper:daily_loss:2025-03-03",
             "paper: daily loss breaker tripped", NOW)
FILL = Alert(Severity.INFO, "fill", "x", "paper: filled 2 SPY", NOW)


def test_format_console_leads_with_the_severity():
    assert format_console(TRIP) == "[CRITICAL] breaker_tripped: paper: daily loss breaker tripped"


def test_notifier_sends_at_or_above_min_severity_to_log_and_console():
    out = io.StringIO()
    notifier = Notifier(min_severity="warning", console=True, stream=out)

    with capture_logs() as logs:
        sent = notifier.notify([FILL, TRIP])

    assert sent == [TRIP]
    assert out.getvalue() == format_console(TRIP) + "\n"
    assert [(e["event"], e["severity"], e["kind"]) for e in logs] == [
        ("alert", "critical", "breaker_tripped")]


def test_notifier_console_failure_does_not_stop_delivery():
    class Broken(io.StringIO):
        def write(self, _):
            raise OSError("console gone")

    assert Notifier(console=True, stream=Broken()).notify([TRIP]) == [TRIP]
