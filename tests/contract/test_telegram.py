"""Contract tests: the real ``python-telegram-bot`` client against a local Bot API server.

The server (pytest-httpserver) answers ``/bot<TOKEN>/getUpdates`` and ``/bot<TOKEN>/sendMessage``
with the documented bodies in ``/work/shared/vendor-samples/telegram`` (inlined here so the tests
stand alone). Every test checks what the server received.
"""

from __future__ import annotations

import json
import logging

import pytest
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request

from thetadesk.adapters.telegram import (
    IncomingMessage,
    TelegramChannel,
    TelegramRejected,
    TelegramSettings,
    dispatch_updates,
)
from thetadesk.errors import DataError, TemporaryError
from thetadesk.notify.commands import CommandRouter

TOKEN = "123456789:AAH" + "tEsT" * 8  # the shape of a real token, unlike the samples' 123456:TEST
BASE = f"/bot{TOKEN}"
GET_UPDATES = f"{BASE}/getUpdates"
SEND_MESSAGE = f"{BASE}/sendMessage"
PRIVATE_CHAT = 100000001
GROUP_CHAT = -1001000000001
STRANGER_CHAT = 555000111

_USER = {"id": PRIVATE_CHAT, "is_bot": False, "first_name": "Test", "last_name": "Trader",
         "username": "test_trader", "language_code": "en"}
_PRIVATE = {"id": PRIVATE_CHAT, "first_name": "Test", "last_name": "Trader",
            "username": "test_trader", "type": "private"}


def _message_update(update_id: int, chat: dict, text: str, message_id: int = 42) -> dict:
    command = text.split()[0]
    return {"update_id": update_id, "message": {
        "message_id": message_id, "from": _USER, "chat": chat, "date": 1787234702, "text": text,
        "entities": [{"offset": 0, "length": len(command), "type": "bot_command"}],
    }}


# getUpdates.200.status_command.json
UPDATES_STATUS = {"ok": True, "result": [
    _message_update(700000001, _PRIVATE, "/status"),
    _message_update(700000002, {"id": GROUP_CHAT, "title": "ThetaDesk Ops (test)",
                                "type": "supergroup"},
                    "/status@thetadesk_test_bot SPY", message_id=311),
]}
UPDATES_EMPTY = {"ok": True, "result": []}
# sendMessage.200.json
SENT = {"ok": True, "result": {
    "message_id": 43,
    "from": {"id": 123456, "is_bot": True, "first_name": "ThetaDesk Test",
             "username": "thetadesk_test_bot"},
    "chat": _PRIVATE, "date": 1787234703,
    "text": "ThetaDesk status\nSPY 645.30 | open spreads: 2 | day P&L +$39.00 | breakers: OK",
    "entities": [{"offset": 0, "length": 9, "type": "bold"}],
}}
ERROR_401 = {"ok": False, "error_code": 401, "description": "Unauthorized"}
ERROR_404 = {"ok": False, "error_code": 404, "description": "Not Found"}
ERROR_400 = {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
ERROR_429 = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 35",
             "parameters": {"retry_after": 35}}
ERROR_500 = {"ok": False, "error_code": 500, "description": "Internal Server Error"}


@pytest.fixture
def settings():
    s = TelegramSettings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN}, [PRIVATE_CHAT, GROUP_CHAT])
    assert s is not None
    return s


@pytest.fixture
def channel(settings, httpserver: HTTPServer):
    with TelegramChannel(settings, base_url=httpserver.url_for("/bot"), timeout_s=5) as ch:
        yield ch


def requests_to(httpserver: HTTPServer, path: str) -> list[Request]:
    return [req for req, _ in httpserver.log if req.path == path]


def assert_no_token(*texts: object) -> None:
    for text in texts:
        assert TOKEN not in str(text)
        assert TOKEN.split(":")[1] not in str(text)


# --- settings ------------------------------------------------------------------------------------


def test_from_env_reads_token_and_chat_ids(settings):
    assert settings.bot_token == TOKEN
    assert settings.allowed_chat_ids == {PRIVATE_CHAT, GROUP_CHAT}
    assert_no_token(repr(settings))


def test_missing_token_gives_none_and_exactly_one_warning():
    with capture_logs() as logs:
        assert TelegramSettings.from_env({}, [PRIVATE_CHAT]) is None
    assert len(logs) == 1
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["missing"] == ["TELEGRAM_BOT_TOKEN"]


def test_no_allowed_chat_disables_the_channel_with_one_warning():
    with capture_logs() as logs:
        assert TelegramSettings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN}, []) is None
    assert [e["missing"] for e in logs] == [["allowed_chat_ids"]]


@pytest.mark.parametrize("token", ["123456:TEST", f" {TOKEN}", "abc:" + "x" * 35, TOKEN + "!"])
def test_malformed_token_raises_data_error_without_the_token(token):
    with pytest.raises(DataError, match="TELEGRAM_BOT_TOKEN must look like") as info:
        TelegramSettings.from_env({"TELEGRAM_BOT_TOKEN": token}, [PRIVATE_CHAT])
    assert token.strip() not in str(info.value)


# --- sendMessage ---------------------------------------------------------------------------------


def test_send_posts_chat_id_text_and_html_parse_mode(channel, httpserver):
    httpserver.expect_oneshot_request(SEND_MESSAGE, method="POST").respond_with_json(SENT)
    text = ("<b>ThetaDesk</b> status\nSPY 645.30 | open spreads: 2 | day P&amp;L +$39.00 | "
            "breakers: OK")

    assert channel.send(PRIVATE_CHAT, text) == 43

    httpserver.check_assertions()
    (req,) = requests_to(httpserver, SEND_MESSAGE)
    body = req.form.to_dict() if req.form else json.loads(req.get_data())
    assert str(body["chat_id"]) == str(PRIVATE_CHAT)
    assert body["text"] == text
    assert body["parse_mode"] == "HTML"


# --- getUpdates ----------------------------------------------------------------------------------


def test_poll_parses_the_status_sample_and_sends_the_offset(channel, httpserver):
    httpserver.expect_oneshot_request(GET_UPDATES, method="POST").respond_with_json(
        UPDATES_STATUS)

    got = channel.poll(offset=700000001, timeout_s=0)

    assert got == [
        IncomingMessage(700000001, PRIVATE_CHAT, "/status"),
        IncomingMessage(700000002, GROUP_CHAT, "/status@thetadesk_test_bot SPY"),
    ]
    (req,) = requests_to(httpserver, GET_UPDATES)
    form = req.form.to_dict()
    assert form["offset"] == "700000001"
    assert form["timeout"] == "0"
    assert json.loads(form["allowed_updates"]) == ["message"]


def test_poll_with_no_updates_returns_empty_list(channel, httpserver):
    httpserver.expect_oneshot_request(GET_UPDATES).respond_with_json(UPDATES_EMPTY)
    assert channel.poll(offset=None, timeout_s=0) == []
    assert len(requests_to(httpserver, GET_UPDATES)) == 1


# --- the command loop ----------------------------------------------------------------------------


def _router(calls: list[tuple[str, ...]]) -> CommandRouter:
    def stop(args: tuple[str, ...]) -> str:
        calls.append(args)
        return "<b>Entries halted.</b>"

    return CommandRouter([PRIVATE_CHAT, GROUP_CHAT], {"stop": stop}, clock=lambda: 0.0)


def test_stop_from_allowed_chat_calls_handler_and_replies_to_that_chat(channel, httpserver):
    httpserver.expect_oneshot_request(GET_UPDATES).respond_with_json(
        {"ok": True, "result": [_message_update(700000010, _PRIVATE, "/stop")]})
    httpserver.expect_oneshot_request(SEND_MESSAGE, method="POST").respond_with_json(SENT)
    calls: list[tuple[str, ...]] = []

    next_offset = dispatch_updates(channel, _router(calls), offset=700000010, timeout_s=0)

    assert next_offset == 700000011
    assert calls == [()]
    (req,) = requests_to(httpserver, SEND_MESSAGE)
    assert req.form["chat_id"] == str(PRIVATE_CHAT)
    assert req.form["text"] == "<b>Entries halted.</b>"
    assert req.form["parse_mode"] == "HTML"


def test_stop_from_unauthorized_chat_does_nothing_but_log(channel, httpserver):
    stranger = {"id": STRANGER_CHAT, "first_name": "Eve", "type": "private"}
    httpserver.expect_oneshot_request(GET_UPDATES).respond_with_json(
        {"ok": True, "result": [_message_update(700000020, stranger, "/stop now please")]})
    calls: list[tuple[str, ...]] = []

    with capture_logs() as logs:
        next_offset = dispatch_updates(channel, _router(calls), offset=None, timeout_s=0)

    assert next_offset == 700000021  # consumed, so it is not delivered again
    assert calls == []
    assert requests_to(httpserver, SEND_MESSAGE) == []
    ignored = [e for e in logs if e["chat_id"] == STRANGER_CHAT]
    assert len(ignored) == 1
    assert ignored[0]["log_level"] == "warning"
    assert ignored[0]["command"] == "stop"
    assert "now please" not in str(ignored[0])


def test_dispatch_without_updates_keeps_the_offset(channel, httpserver):
    httpserver.expect_oneshot_request(GET_UPDATES).respond_with_json(UPDATES_EMPTY)
    assert dispatch_updates(channel, _router([]), offset=7, timeout_s=0) == 7


# --- errors --------------------------------------------------------------------------------------


def test_429_is_temporary_and_carries_retry_after(channel, httpserver):
    httpserver.expect_oneshot_request(SEND_MESSAGE).respond_with_json(ERROR_429, status=429)
    with pytest.raises(TemporaryError) as info:
        channel.send(PRIVATE_CHAT, "hello")
    assert info.value.retry_after_s == 35
    assert_no_token(info.value, repr(info.value))


def test_500_is_temporary(channel, httpserver):
    httpserver.expect_oneshot_request(GET_UPDATES).respond_with_json(ERROR_500, status=500)
    with pytest.raises(TemporaryError) as info:
        channel.poll(timeout_s=0)
    assert info.value.retry_after_s is None
    assert_no_token(info.value)


def test_connection_refused_is_temporary(settings):
    with HTTPServer() as server:  # started and stopped: nothing listens on its port any more
        url = server.url_for("/bot")
    with TelegramChannel(settings, base_url=url, timeout_s=2) as ch, \
            pytest.raises(TemporaryError) as info:
        ch.send(PRIVATE_CHAT, "hello")
    assert_no_token(info.value)


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [(401, ERROR_401, "InvalidToken"), (404, ERROR_404, "InvalidToken"),
     (400, ERROR_400, "BadRequest"),
     (403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the "
                                                           "user"}, "Forbidden")],
)
def test_4xx_is_permanent(channel, httpserver, status, body, reason):
    httpserver.expect_oneshot_request(SEND_MESSAGE).respond_with_json(body, status=status)
    with pytest.raises(TelegramRejected) as info:
        channel.send(PRIVATE_CHAT, "hello")
    assert not isinstance(info.value, TemporaryError)
    assert isinstance(info.value, DataError)
    assert info.value.reason == reason
    # python-telegram-bot drops the "Bad Request: " prefix and capitalises the rest.
    assert body["description"].split(": ")[-1].lower() in str(info.value).lower()
    assert info.value.__cause__ is None
    assert_no_token(info.value, repr(info.value))


def test_token_never_reaches_stdlib_logs(settings, httpserver, caplog):
    caplog.set_level(logging.DEBUG)
    httpserver.expect_oneshot_request(SEND_MESSAGE).respond_with_json(SENT)
    httpserver.expect_oneshot_request(GET_UPDATES).respond_with_json(ERROR_401, status=401)
    with TelegramChannel(settings, base_url=httpserver.url_for("/bot"), timeout_s=5) as ch:
        ch.send(PRIVATE_CHAT, "hello")
        with pytest.raises(TelegramRejected):
            ch.poll(timeout_s=0)
    # werkzeug is the test server's own access log, not ours.
    records = [r for r in caplog.records if not r.name.startswith("werkzeug")]
    assert any(r.name == "httpx" for r in records)  # httpx logs every request URL at INFO
    for record in records:
        assert_no_token(record.getMessage())
    # The request really went to the token's URL: only the logs hide it.
    assert len(requests_to(httpserver, SEND_MESSAGE)) == 1


def test_closed_channel_refuses_calls(settings, httpserver):
    ch = TelegramChannel(settings, base_url=httpserver.url_for("/bot"), timeout_s=5)
    ch.close()
    ch.close()  # idempotent
    with pytest.raises(DataError, match="closed"):
        ch.send(PRIVATE_CHAT, "hello")
    assert httpserver.log == []
