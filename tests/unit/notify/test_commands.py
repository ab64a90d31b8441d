"""Operator commands: parsing, the allow-list, confirmations, help (no I/O)."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from thetadesk.notify.commands import (
    COMMANDS,
    CommandRouter,
    help_text,
    parse_command,
    table_reply,
    text_reply,
)

ALLOWED = 100000001
OTHER_ALLOWED = -1001000000001
STRANGER = 555000111


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def calls():
    return []


@pytest.fixture
def router(clock, calls):
    def recorder(name):
        def handler(args):
            calls.append((name, args))
            return f"{name} done"
        return handler

    handlers = {name: recorder(name) for name in ("status", "stop", "start", "closeall", "ack")}
    return CommandRouter([ALLOWED, OTHER_ALLOWED], handlers, clock=clock,
                         bot_username="thetadesk_test_bot")


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/status", ("status", ())),
        ("/Status", ("status", ())),
        ("  /status  ", ("status", ())),
        ("/status@thetadesk_test_bot SPY", ("status", ("SPY",))),
        ("/start confirm", ("start", ("confirm",))),
        ("/pnl   week\n strategy", ("pnl", ("week", "strategy"))),
        ("/nosuch x", ("nosuch", ("x",))),
    ],
)
def test_parse_command(text, expected):
    assert parse_command(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "status", "hello /status", "/", "/@bot"])
def test_parse_non_commands_is_none(text):
    assert parse_command(text) is None


def test_parse_command_for_another_bot_is_none_when_our_name_is_known():
    assert parse_command("/stop@other_bot", bot_username="thetadesk_test_bot") is None
    assert parse_command("/stop@TheTaDesk_Test_Bot", bot_username="@thetadesk_test_bot") == (
        "stop", ())
    assert parse_command("/stop@other_bot") == ("stop", ())


# --- allow-list ----------------------------------------------------------------------------------


def test_unauthorized_chat_is_ignored_and_logged_without_the_text(router, calls):
    with capture_logs() as logs:
        assert router.handle(STRANGER, "/stop secret-ish words") is None
    assert calls == []
    assert len(logs) == 1
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["chat_id"] == STRANGER
    assert logs[0]["command"] == "stop"
    assert "secret-ish" not in str(logs[0])


def test_unauthorized_chat_cannot_confirm_or_get_help(router, calls):
    assert router.handle(STRANGER, "/help") is None
    assert router.handle(STRANGER, "/start") is None
    assert router.handle(STRANGER, "/start confirm") is None
    assert calls == []


def test_allowed_chats_reach_their_handlers_with_args(router, calls):
    assert router.handle(ALLOWED, "/status SPY") == "status done"
    assert router.handle(OTHER_ALLOWED, "/stop@thetadesk_test_bot") == "stop done"
    assert calls == [("status", ("SPY",)), ("stop", ())]


def test_plain_text_and_commands_for_other_bots_get_no_reply(router, calls):
    assert router.handle(ALLOWED, "good morning") is None
    assert router.handle(ALLOWED, "/stop@other_bot") is None
    assert calls == []


# --- confirmation --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["start", "closeall"])
def test_confirmation_within_window_executes_once(router, clock, calls, name):
    first = router.handle(ALLOWED, f"/{name}")
    assert f"send /{name} confirm within 60 s" in first
    assert calls == []

    clock.now += 59
    assert router.handle(ALLOWED, f"/{name} confirm") == f"{name} done"
    assert calls == [(name, ())]

    # The confirmation is used up: another "confirm" does nothing.
    reply = router.handle(ALLOWED, f"/{name} confirm")
    assert "Nothing to confirm" in reply
    assert calls == [(name, ())]


def test_confirmation_after_window_does_not_execute(router, clock, calls):
    router.handle(ALLOWED, "/closeall")
    clock.now += 60.5
    assert "Nothing to confirm" in router.handle(ALLOWED, "/closeall confirm")
    assert calls == []


def test_confirm_without_a_request_does_not_execute(router, calls):
    assert "Send /start first" in router.handle(ALLOWED, "/start confirm")
    assert calls == []


def test_confirmation_is_per_chat_and_per_command(router, calls):
    router.handle(ALLOWED, "/start")
    assert "Nothing to confirm" in router.handle(OTHER_ALLOWED, "/start confirm")
    assert "Nothing to confirm" in router.handle(ALLOWED, "/closeall confirm")
    assert calls == []
    assert router.handle(ALLOWED, "/start CONFIRM") == "start done"


def test_repeating_the_request_restarts_the_window(router, clock, calls):
    router.handle(ALLOWED, "/start")
    clock.now += 50
    router.handle(ALLOWED, "/start")
    clock.now += 50
    assert router.handle(ALLOWED, "/start confirm") == "start done"


def test_stop_needs_no_confirmation(router, calls):
    assert router.handle(ALLOWED, "/stop") == "stop done"
    assert calls == [("stop", ())]


# --- help and unknown commands -------------------------------------------------------------------


def test_help_lists_every_command_in_a_pre_table(router):
    text = router.handle(ALLOWED, "/help")
    assert text == help_text()
    assert "<pre>" in text
    for name in COMMANDS:
        assert f"/{name}" in text
    for name in ("status", "positions", "pnl", "risk", "stop", "start", "closeall", "ack"):
        assert f"/{name} " in text


def test_unknown_command_gets_help(router, calls):
    text = router.handle(ALLOWED, "/launch <b>")
    assert text.startswith("Unknown command /launch.")
    assert help_text() in text
    assert calls == []


def test_unknown_command_name_is_html_escaped(router):
    assert "/a&lt;b&gt;" in router.handle(ALLOWED, "/a<b>")


def test_known_command_without_handler_says_not_available(router):
    assert router.handle(ALLOWED, "/risk") == "/risk is not available yet."


def test_failing_handler_gets_a_short_reply_and_a_log_line(clock):
    def broken(args):
        raise RuntimeError("db locked")

    router = CommandRouter([ALLOWED], {"status": broken}, clock=clock)
    with capture_logs() as logs:
        reply = router.handle(ALLOWED, "/status")
    assert reply == "/status failed (RuntimeError); see the logs."
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["error_type"] for e in errors] == ["RuntimeError"]


def test_router_rejects_handlers_for_unknown_commands_and_for_help():
    with pytest.raises(ValueError, match="unknown commands"):
        CommandRouter([ALLOWED], {"launch": lambda args: ""})
    with pytest.raises(ValueError, match="built in"):
        CommandRouter([ALLOWED], {"help": lambda args: ""})


# --- reply helpers -------------------------------------------------------------------------------


def test_table_reply_escapes_and_wraps_in_pre():
    text = table_reply("P&L", [["SPY <put>", 39.0]], ["spread", "pnl"])
    assert text.startswith("<b>P&amp;L</b>\n<pre>")
    assert text.endswith("</pre>")
    assert "SPY &lt;put&gt;" in text
    assert "39.00" in text


def test_text_reply_escapes():
    assert text_reply("a < b & c", title="x>y") == "<b>x&gt;y</b>\na &lt; b &amp; c"
