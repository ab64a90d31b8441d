"""A real supervisor whose daily loss breaker trips sends one SMS and one call to a local fake
Twilio (pytest-httpserver), through the ledger's outbox.

The supervisor runs its own local Ray cluster here (``--address local``) rather than joining the
session cluster: channel credentials come from the environment of the processes that run the
actors, and the supervisor never ships secrets to a cluster in a runtime environment.
"""

from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer

from tests.integration.conftest import Run, default_config_with
from thetadesk.store import LEDGER_FILE, Ledger

pytestmark = pytest.mark.integration

SID = "AC" + "ab" * 16
TOKEN = "tok" + "7f" * 14 + "qq"
FROM = "+15005550006"
TO = "+15558675310"
MESSAGES = f"/2010-04-01/Accounts/{SID}/Messages.json"
CALLS = f"/2010-04-01/Accounts/{SID}/Calls.json"


def test_breaker_trip_in_a_sim_run_makes_one_sms_and_one_call(tmp_path, httpserver: HTTPServer):
    httpserver.expect_request(MESSAGES, method="POST").respond_with_json(
        {"sid": "SM" + "1" * 32, "account_sid": SID, "status": "queued", "to": TO}, status=201)
    httpserver.expect_request(CALLS, method="POST").respond_with_json(
        {"sid": "CA" + "2" * 32, "account_sid": SID, "status": "queued", "to": TO}, status=201)
    config = tmp_path / "tight.yaml"
    config.write_text(default_config_with({"accounts.0.risk.daily_loss_limit": 1,
                                           "exits.stop_multiple": 0.05}))
    state = tmp_path / "s"
    env = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_FROM_NUMBER": FROM,
           "TWILIO_TO_NUMBERS": TO, "THETADESK_TWILIO_BASE_URL": httpserver.url_for("/"),
           "RAY_ADDRESS": ""}
    run = Run(state, "local", "--sim-days", "1", "--config", str(config), env=env)
    try:
        code, _, err = run.wait()
    finally:
        if run.proc.poll() is None:
            run.kill()

    assert code == 0, err[-3000:]
    assert "[CRITICAL] breaker_tripped" in err
    sms = [parse_qs(req.get_data(as_text=True)) for req, _ in httpserver.log
           if req.path == MESSAGES]
    calls = [parse_qs(req.get_data(as_text=True)) for req, _ in httpserver.log
             if req.path == CALLS]
    breaker_sms = [m for m in sms if "breaker_tripped" in m["Body"][0]]
    assert len(breaker_sms) == 1, sms
    assert len(calls) == 1, calls
    assert "breaker tripped" in calls[0]["Twiml"][0]

    ledger = Ledger(state / LEDGER_FILE)
    try:
        rows = [r for r in ledger.deliveries() if r["status"] == "delivered"]
        assert {r["channel"] for r in rows} >= {"sms", "voice"}
        assert not ledger.deliveries(status="pending")
        assert TOKEN not in "\n".join(ledger._conn.iterdump())
    finally:
        ledger.close()
    assert TOKEN not in err
    for log in (p for p in (state / "logs").rglob("*") if p.is_file()):
        assert TOKEN not in log.read_text(errors="replace"), log
