"""Contract tests: the real ``twilio`` client against a local server speaking Twilio's REST API.

The server (pytest-httpserver) answers with the documented bodies in
``/work/shared/vendor-samples/twilio`` (inlined here so the tests stand alone). Every test checks
what the server received, so a request that went anywhere else fails the test.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time

import pytest
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request, Response

from thetadesk.adapters.twilio import (
    TwilioChannel,
    TwilioRejected,
    TwilioSettings,
    send_with_retry,
)
from thetadesk.errors import DataError, TemporaryError

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "tok" + "5e" * 14 + "zz"  # 33 characters, unlike anything else in a request
FROM = "+15005550006"
TO = "+15558675310"
MESSAGES = f"/2010-04-01/Accounts/{SID}/Messages.json"
CALLS = f"/2010-04-01/Accounts/{SID}/Calls.json"
MESSAGE_SID = "SM" + "1" * 32
CALL_SID = "CA" + "2" * 32

MESSAGE_201 = {
    "account_sid": SID, "api_version": "2010-04-01", "body": "ThetaDesk: filled",
    "date_created": "Thu, 20 Aug 2026 14:03:41 +0000", "date_sent": None,
    "date_updated": "Thu, 20 Aug 2026 14:03:41 +0000", "direction": "outbound-api",
    "error_code": None, "error_message": None, "from": FROM, "messaging_service_sid": None,
    "num_media": "0", "num_segments": "1", "price": None, "price_unit": "USD",
    "sid": MESSAGE_SID, "status": "queued",
    "subresource_uris": {"media": f"/2010-04-01/Accounts/{SID}/Messages/{MESSAGE_SID}/Media.json"},
    "to": TO, "uri": f"/2010-04-01/Accounts/{SID}/Messages/{MESSAGE_SID}.json",
}
CALL_201 = {
    "account_sid": SID, "annotation": None, "answered_by": None, "api_version": "2010-04-01",
    "caller_name": None, "date_created": "Thu, 20 Aug 2026 14:31:02 +0000",
    "date_updated": "Thu, 20 Aug 2026 14:31:02 +0000", "direction": "outbound-api",
    "duration": None, "end_time": None, "forwarded_from": None, "from": FROM,
    "from_formatted": "(500) 555-0006", "group_sid": None, "parent_call_sid": None,
    "phone_number_sid": None, "price": None, "price_unit": "USD", "queue_time": "0",
    "sid": CALL_SID, "start_time": None, "status": "queued", "to": TO,
    "to_formatted": "(555) 867-5310", "trunk_sid": None,
    "uri": f"/2010-04-01/Accounts/{SID}/Calls/{CALL_SID}.json",
}
ERROR_500 = {"code": 20500, "message": "Internal Server Error",
             "more_info": "https://www.twilio.com/docs/errors/20500", "status": 500}
ERROR_400_INVALID_TO = {
    "code": 21211, "message": "The 'To' number +15005550001 is not a valid phone number.",
    "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400,
}
ERROR_429 = {"code": 20429, "message": "Too Many Requests",
             "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}
ENV = {
    "TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN,
    "TWILIO_FROM_NUMBER": FROM, "TWILIO_TO_NUMBERS": f"{TO}, +447700900123",
}


@pytest.fixture
def settings():
    s = TwilioSettings.from_env(ENV)
    assert s is not None
    return s


@pytest.fixture
def channel(settings, httpserver: HTTPServer):
    with TwilioChannel(settings, base_url=httpserver.url_for("/"), timeout_s=5) as ch:
        yield ch


def no_sleep_recorder():
    slept: list[float] = []
    return slept, slept.append


def requests_to(httpserver: HTTPServer, path: str) -> list[Request]:
    return [req for req, _ in httpserver.log if req.path == path]


def assert_no_token(*texts: object) -> None:
    for text in texts:
        assert TOKEN not in str(text)


# --- settings ------------------------------------------------------------------------------------


def test_from_env_reads_all_four_variables(settings):
    assert settings.account_sid == SID
    assert settings.auth_token == TOKEN
    assert settings.from_number == FROM
    assert settings.to_numbers == (TO, "+447700900123")
    assert_no_token(repr(settings))


def test_missing_credentials_give_none_and_exactly_one_warning():
    env = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_FROM_NUMBER": FROM, "TWILIO_TO_NUMBERS": ""}
    with capture_logs() as logs:
        assert TwilioSettings.from_env(env) is None
    assert len(logs) == 1
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["missing"] == ["TWILIO_AUTH_TOKEN", "TWILIO_TO_NUMBERS"]


def test_no_variables_at_all_names_all_four():
    with capture_logs() as logs:
        assert TwilioSettings.from_env({}) is None
    assert [e["missing"] for e in logs] == [[
        "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_TO_NUMBERS"]]


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("TWILIO_ACCOUNT_SID", "SK" + "0" * 32, "'AC' followed by 32 hex digits"),
        ("TWILIO_ACCOUNT_SID", "AC123", "'AC' followed by 32 hex digits"),
        ("TWILIO_FROM_NUMBER", "5005550006", "TWILIO_FROM_NUMBER '5005550006' is not an E.164"),
        ("TWILIO_TO_NUMBERS", f"{TO},+0123", "TWILIO_TO_NUMBERS entry '+0123' is not an E.164"),
        ("TWILIO_TO_NUMBERS", " , ", "TWILIO_TO_NUMBERS names no phone number"),
        ("TWILIO_AUTH_TOKEN", f" {TOKEN} ", "TWILIO_AUTH_TOKEN is empty or has surrounding"),
    ],
)
def test_malformed_values_raise_readable_data_error_without_token(name, value, fragment):
    with pytest.raises(DataError) as info:
        TwilioSettings.from_env({**ENV, name: value})
    assert fragment in str(info.value)
    assert_no_token(info.value)


# --- SMS -----------------------------------------------------------------------------------------


def test_sms_posts_form_to_messages_json_with_basic_auth(channel, httpserver):
    httpserver.expect_oneshot_request(MESSAGES, method="POST").respond_with_json(
        MESSAGE_201, status=201)
    text = "ThetaDesk: SPY put credit spread filled @ -0.55 (1x 620/615P 2026-09-18)"

    assert channel.send_sms(TO, text) == MESSAGE_SID

    httpserver.check_assertions()
    (req,) = requests_to(httpserver, MESSAGES)
    assert req.method == "POST"
    assert req.mimetype == "application/x-www-form-urlencoded"
    assert req.form.to_dict() == {"To": TO, "From": FROM, "Body": text}
    expected = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert req.headers["Authorization"] == f"Basic {expected}"
    assert req.authorization.username == SID
    assert req.authorization.password == TOKEN
    assert req.headers["Accept"] == "application/json"


# --- voice ---------------------------------------------------------------------------------------


def test_call_posts_escaped_twiml_say_to_calls_json(channel, httpserver):
    httpserver.expect_oneshot_request(CALLS, method="POST").respond_with_json(CALL_201, status=201)
    text = 'Breaker tripped: loss < -2000 & "AT&T" <b>'

    assert channel.call(TO, text) == CALL_SID

    httpserver.check_assertions()
    (req,) = requests_to(httpserver, CALLS)
    form = req.form.to_dict()
    assert set(form) == {"To", "From", "Twiml"}
    assert form["To"] == TO
    assert form["From"] == FROM
    twiml = form["Twiml"]
    assert twiml == (
        "<Response><Say>Breaker tripped: loss &lt; -2000 &amp; \"AT&amp;T\" &lt;b&gt;"
        "</Say></Response>"
    )
    assert "<b>" not in twiml
    assert req.authorization.username == SID
    assert req.authorization.password == TOKEN


def test_call_twiml_matches_the_captured_vendor_sample(channel, httpserver):
    httpserver.expect_oneshot_request(CALLS, method="POST").respond_with_json(CALL_201, status=201)
    channel.call(TO, "ThetaDesk alert. Circuit breaker tripped.")
    (req,) = requests_to(httpserver, CALLS)
    # POST_Calls.request.form.txt, decoded.
    assert req.form["Twiml"] == (
        "<Response><Say>ThetaDesk alert. Circuit breaker tripped.</Say></Response>")


# --- error classification ------------------------------------------------------------------------


def test_500_raises_temporary_error(channel, httpserver):
    httpserver.expect_request(MESSAGES, method="POST").respond_with_json(ERROR_500, status=500)
    with pytest.raises(TemporaryError, match=r"HTTP 500, error 20500"):
        channel.send_sms(TO, "x")
    assert len(requests_to(httpserver, MESSAGES)) == 1


def test_429_raises_temporary_error(channel, httpserver):
    httpserver.expect_request(MESSAGES, method="POST").respond_with_json(ERROR_429, status=429)
    with pytest.raises(TemporaryError, match=r"HTTP 429, error 20429"):
        channel.send_sms(TO, "x")


def test_400_invalid_to_is_a_permanent_rejection_with_code(channel, httpserver):
    httpserver.expect_request(MESSAGES, method="POST").respond_with_json(
        ERROR_400_INVALID_TO, status=400)
    with pytest.raises(TwilioRejected) as info:
        channel.send_sms("+15005550001", "x")
    assert isinstance(info.value, DataError)
    assert info.value.status == 400
    assert info.value.code == 21211
    assert "not a valid phone number" in str(info.value)


def test_connection_refused_is_temporary(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now.
    with TwilioChannel(settings, base_url=f"http://127.0.0.1:{port}", timeout_s=2) as ch, \
            pytest.raises(TemporaryError, match="ConnectionError"):
        ch.send_sms(TO, "x")


def test_read_timeout_is_temporary(settings, httpserver):
    received = threading.Event()

    def slow(request: Request) -> Response:
        received.set()
        time.sleep(0.6)
        return Response(json.dumps(MESSAGE_201), status=201, content_type="application/json")

    httpserver.expect_request(MESSAGES, method="POST").respond_with_handler(slow)
    with TwilioChannel(settings, base_url=httpserver.url_for("/"), timeout_s=0.2) as ch, \
            pytest.raises(TemporaryError, match="timed out"):
        ch.send_sms(TO, "x")
    assert received.wait(2)  # the request reached the local server; its reply came too late


def test_token_echoed_in_error_body_is_scrubbed(channel, httpserver):
    body = {**ERROR_400_INVALID_TO, "message": f"bad credentials {TOKEN}"}
    httpserver.expect_request(MESSAGES, method="POST").respond_with_json(body, status=400)
    with capture_logs() as logs, pytest.raises(TwilioRejected) as info:
        channel.send_sms(TO, "x")
    assert_no_token(info.value, repr(info.value), info.value.__cause__, logs)
    assert info.value.__suppress_context__


def test_invalid_recipient_is_rejected_before_any_request(channel, httpserver):
    with pytest.raises(DataError, match=r"not an E\.164"):
        channel.send_sms("5558675310", "x")
    assert httpserver.log == []


# --- retry ---------------------------------------------------------------------------------------


def test_500_twice_then_201_is_delivered_on_the_third_attempt(channel, httpserver):
    for _ in range(2):
        httpserver.expect_ordered_request(MESSAGES, method="POST").respond_with_json(
            ERROR_500, status=500)
    httpserver.expect_ordered_request(MESSAGES, method="POST").respond_with_json(
        MESSAGE_201, status=201)
    slept, sleep = no_sleep_recorder()

    with capture_logs() as logs:
        result = send_with_retry(lambda: channel.send_sms(TO, "alert"), attempts=3,
                                 backoff_s=(1.0, 4.0), sleep=sleep, jitter=lambda: 0.0)

    assert result.status == "delivered"
    assert result.attempts == 3
    assert result.sid == MESSAGE_SID
    assert result.error is None
    assert slept == [1.0, 4.0]
    httpserver.check_assertions()
    assert [r.form["Body"] for r in requests_to(httpserver, MESSAGES)] == ["alert"] * 3
    assert [e["log_level"] for e in logs] == ["warning", "warning"]
    assert_no_token(logs)


def test_500_always_is_recorded_as_failed_after_n_attempts(channel, httpserver):
    httpserver.expect_request(MESSAGES, method="POST").respond_with_json(ERROR_500, status=500)
    slept, sleep = no_sleep_recorder()

    with capture_logs() as logs:
        result = send_with_retry(lambda: channel.send_sms(TO, "alert"), attempts=4,
                                 backoff_s=(0.5, 2.0), sleep=sleep, jitter=lambda: 1.0)

    assert result.status == "failed"
    assert result.attempts == 4
    assert result.sid is None
    assert result.error_type == "TemporaryError"
    assert "HTTP 500, error 20500" in result.error
    assert slept == [0.625, 2.5, 2.5]
    assert len(requests_to(httpserver, MESSAGES)) == 4
    assert logs[-1]["log_level"] == "error"
    assert logs[-1]["event"] == "twilio delivery failed"
    assert_no_token(logs, result)


def test_400_is_not_retried(channel, httpserver):
    httpserver.expect_request(MESSAGES, method="POST").respond_with_json(
        ERROR_400_INVALID_TO, status=400)
    slept, sleep = no_sleep_recorder()

    with capture_logs() as logs:
        result = send_with_retry(lambda: channel.send_sms("+15005550001", "x"), sleep=sleep)

    assert result.status == "failed"
    assert result.attempts == 1
    assert result.error_type == "TwilioRejected"
    assert "21211" in result.error
    assert slept == []
    assert len(requests_to(httpserver, MESSAGES)) == 1
    assert_no_token(logs, result)


def test_call_retry_then_delivered(channel, httpserver):
    httpserver.expect_ordered_request(CALLS, method="POST").respond_with_json(
        ERROR_429, status=429)
    httpserver.expect_ordered_request(CALLS, method="POST").respond_with_json(
        CALL_201, status=201)
    result = send_with_retry(lambda: channel.call(TO, "halt"), sleep=lambda s: None)
    assert (result.status, result.attempts, result.sid) == ("delivered", 2, CALL_SID)
    httpserver.check_assertions()


def test_token_never_logged_across_a_full_session(httpserver):
    httpserver.expect_request(MESSAGES, method="POST").respond_with_json(ERROR_500, status=500)
    httpserver.expect_request(CALLS, method="POST").respond_with_json(
        ERROR_400_INVALID_TO, status=400)
    with capture_logs() as logs:
        assert TwilioSettings.from_env({**ENV, "TWILIO_TO_NUMBERS": ""}) is None
        settings = TwilioSettings.from_env(ENV)
        assert settings is not None
        with TwilioChannel(settings, base_url=httpserver.url_for("/")) as ch:
            sms = send_with_retry(lambda: ch.send_sms(TO, "a"), sleep=lambda s: None)
            call = send_with_retry(lambda: ch.call(TO, "b"), sleep=lambda s: None)
    assert (sms.status, call.status) == ("failed", "failed")
    assert logs
    assert_no_token(logs, sms, call, repr(ch))
