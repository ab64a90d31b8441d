"""Specifications of the bot's command handlers over a fake desk, and of the polling loop over a
fake channel: who acted is recorded, confirmations guard /start and /closeall, a failing actor
costs a reading and not the reply, the offset survives a restart, errors back off."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from thetadesk.adapters.telegram import (
    IncomingMessage,
    TelegramRejected,
    TelegramTemporaryError,
)
from thetadesk.errors import DataError
from thetadesk.notify.bot import OFFSET_KEY, BotLoop, desk_handlers
from thetadesk.notify.commands import CommandRouter
from thetadesk.store import Ledger

NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
CHAT = 1001
STRANGER = 666


class FakeDesk:
    def __init__(self):
        self.calls: list[tuple] = []
        self.readings_fail = False

    def now(self):
        return NOW

    def breaker_readings(self):
        if self.readings_fail:
            raise RuntimeError("risk actor restarting")
        return {"paper": {"manual_halt": SimpleNamespace(state="halted", reason="stopped")}}

    def position_values(self):
        return {}

    def halt(self, by):
        self.calls.append(("halt", by))
        return {"paper": len([c for c in self.calls if c[0] == "halt"]) == 1}

    def resume(self, by):
        self.calls.append(("resume", by))
        return {"paper": ["manual_halt", "daily_loss"]}

    def close_all(self, by):
        self.calls.append(("close_all", by))
        return {"paper": 3}

    def ack_open(self):
        self.calls.append(("ack",))
        if len([c for c in self.calls if c[0] == "ack"]) > 1:
            return []
        return [{"alert_id": "a1", "severity": "critical", "kind": "breaker_tripped",
                 "key": "paper:daily_loss", "message": "paper: daily loss breaker tripped"}]


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "thetadesk.db")
    yield led
    led.close()


@pytest.fixture
def desk():
    return FakeDesk()


@pytest.fixture
def router(ledger, desk):
    handlers = desk_handlers(ledger, ["paper"], desk, lambda: f"telegram:{r.chat_id}")
    r = CommandRouter([CHAT], handlers, clock=lambda: 0.0)
    return r


def test_stop_halts_with_who_acted_and_says_exits_continue(router, desk):
    first = router.handle(CHAT, "/stop")
    second = router.handle(CHAT, "/stop")

    assert desk.calls == [("halt", "telegram:1001"), ("halt", "telegram:1001")]
    assert "New entries halted on paper" in first
    assert "exits continue" in first
    assert "Already halted by hand: paper" in second


def test_a_strangers_stop_reaches_no_handler(router, desk):
    assert router.handle(STRANGER, "/stop") is None
    assert desk.calls == []


def test_start_asks_for_confirmation_then_resets_the_breakers(router, desk):
    prompt = router.handle(CHAT, "/start")
    assert desk.calls == []
    assert "/start confirm" in prompt

    reply = router.handle(CHAT, "/start confirm")

    assert desk.calls == [("resume", "telegram:1001")]
    assert "paper: reset manual_halt, daily_loss" in reply


def test_closeall_asks_for_confirmation_then_closes(router, desk):
    router.handle(CHAT, "/closeall")
    assert desk.calls == []

    reply = router.handle(CHAT, "/closeall confirm")

    assert desk.calls == [("close_all", "telegram:1001")]
    assert "paper: closing 3 open positions" in reply
    assert "New entries are halted" in reply


def test_ack_lists_what_it_acknowledged_once(router, desk):
    first = router.handle(CHAT, "/ack")
    second = router.handle(CHAT, "/ack")

    assert "Acknowledged 1 alert" in first
    assert "breaker_tripped" in first
    assert second == "No open alerts."


def test_status_without_the_risk_actor_shows_breakers_unknown(router, desk, ledger):
    desk.readings_fail = True

    reply = router.handle(CHAT, "/status")

    assert "paper breakers: unknown" in reply
    assert "ThetaDesk status" in reply


def test_status_and_risk_show_a_manual_halt(router):
    assert "manual_halt" in router.handle(CHAT, "/status")
    assert "manual_halt" in router.handle(CHAT, "/risk")


# --- the loop ------------------------------------------------------------------------------------


class FakeChannel:
    """Serves queued batches of updates (or exceptions) to ``poll``; records every send."""

    def __init__(self, batches):
        self.batches = list(batches)
        self.polls: list[int | None] = []
        self.sent: list[tuple[int, str]] = []
        self.closed = False

    def poll(self, offset=None, timeout_s=30):
        self.polls.append(offset)
        item = self.batches.pop(0) if self.batches else []
        if isinstance(item, Exception):
            raise item
        return [u for u in item if offset is None or u.update_id >= offset]

    def send(self, chat_id, html_text):
        self.sent.append((chat_id, html_text))
        return len(self.sent)

    def close(self):
        self.closed = True


def test_the_offset_is_kept_in_the_ledger_and_a_restarted_loop_resumes_after_it(
        router, ledger, tmp_path, desk):
    batch = [IncomingMessage(10, CHAT, "/stop"), IncomingMessage(11, STRANGER, "/stop"),
             IncomingMessage(12, None, None)]
    channel = FakeChannel([batch])

    assert BotLoop(channel, router, ledger).step() == 0.0

    assert ledger.get_state(OFFSET_KEY) == "13"
    assert [chat for chat, _ in channel.sent] == [CHAT]  # the stranger gets nothing
    assert desk.calls == [("halt", "telegram:1001")]
    restarted = FakeChannel([batch])  # Telegram would resend them without the offset
    BotLoop(restarted, router, Ledger(tmp_path / "thetadesk.db")).step()
    assert restarted.polls == [13]
    assert restarted.sent == []
    assert desk.calls == [("halt", "telegram:1001")]


def test_temporary_errors_back_off_as_told_or_doubling(router, ledger):
    channel = FakeChannel([TelegramTemporaryError("flood", retry_after_s=35),
                           TelegramTemporaryError("502"), TelegramTemporaryError("502"),
                           DataError("unreadable reply"), []])
    loop = BotLoop(channel, router, ledger, max_backoff_s=60)

    delays = [loop.step() for _ in range(5)]

    assert delays == [35.0, 4.0, 8.0, 16.0, 0.0]
    assert loop.failures == 0


def test_a_refused_token_stops_the_loop_for_good(router, ledger):
    channel = FakeChannel([TelegramRejected("401 Unauthorized", reason="InvalidToken"), []])
    loop = BotLoop(channel, router, ledger)

    assert loop.step() == -1.0
    assert loop.step() == -1.0
    assert channel.polls == [None]  # it never polls again
    assert "401" in loop.dead


def test_the_thread_answers_and_stop_closes_the_channel(router, ledger, desk):
    channel = FakeChannel([[IncomingMessage(5, CHAT, "/stop")]])
    loop = BotLoop(channel, router, ledger, poll_timeout_s=0)
    loop.start()
    try:
        for _ in range(500):
            if channel.sent:
                break
            loop._stop.wait(0.01)
    finally:
        loop.stop()

    assert channel.closed
    assert desk.calls[0] == ("halt", "telegram:1001")
    assert ledger.get_state(OFFSET_KEY) == "6"
