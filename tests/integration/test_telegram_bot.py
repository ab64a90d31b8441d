"""The Telegram bot in a real supervisor, against a local fake Bot API (pytest-httpserver, the
real python-telegram-bot client): /stop sent while the desk was down halts it before the first
tick, a stranger's /stop does nothing, /status is answered, the update offset outlives the
process; in the next run /start (confirmed) resumes trading and /ack reaches the notification
actor; in the third, /closeall (confirmed) closes every position at the first tick and keeps
entries halted.

The supervisor runs its own local Ray cluster (``--address local``), as in the outbox test:
credentials come from the environment of the processes that run the actors.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.integration.conftest import Run
from thetadesk.config import DEFAULT_CONFIG
from thetadesk.risk.breakers import MANUAL_HALT
from thetadesk.store import LEDGER_FILE, Ledger

pytestmark = pytest.mark.integration

TOKEN = "123456789:AAH" + "tEsT" * 8
CHAT = 100000001
STRANGER = 555000111


class FakeBotApi:
    """getUpdates with Telegram's offset semantics (a short hold when there is nothing, like a
    long poll) and sendMessage; records what was asked and sent."""

    def __init__(self):
        self.updates: list[dict] = []
        self.offsets: list[int | None] = []
        self.sent: list[dict] = []
        self.lock = threading.Lock()

    def add(self, chat: int, text: str) -> None:
        with self.lock:
            update_id = 900 + len(self.updates)
            self.updates.append({"update_id": update_id, "message": {
                "message_id": update_id, "date": 1787234702, "text": text,
                "chat": {"id": chat, "type": "private", "first_name": "T"},
                "from": {"id": chat, "is_bot": False, "first_name": "T"},
                "entities": [{"offset": 0, "length": len(text.split()[0]),
                              "type": "bot_command"}]}})

    @staticmethod
    def _body(request: Request) -> dict:
        if request.form:
            return request.form.to_dict()
        data = request.get_data()
        return json.loads(data) if data else {}

    def get_updates(self, request: Request) -> Response:
        offset = self._body(request).get("offset")
        offset = None if offset is None else int(offset)
        with self.lock:
            self.offsets.append(offset)
            result = [u for u in self.updates if offset is None or u["update_id"] >= offset]
        if not result:
            time.sleep(0.3)
        return Response(json.dumps({"ok": True, "result": result}),
                        content_type="application/json")

    def send_message(self, request: Request) -> Response:
        body = self._body(request)
        with self.lock:
            self.sent.append(body)
            n = len(self.sent)
        return Response(json.dumps({"ok": True, "result": {
            "message_id": 5000 + n, "date": 1787234703, "text": "ok",
            "chat": {"id": int(body["chat_id"]), "type": "private", "first_name": "T"}}}),
            content_type="application/json")

    def texts_to(self, chat: int) -> list[str]:
        return [m["text"] for m in self.sent if int(m["chat_id"]) == chat]


@pytest.fixture
def bot_api():
    server = HTTPServer(threaded=True)
    server.start()
    api = FakeBotApi()
    server.expect_request(f"/bot{TOKEN}/getUpdates").respond_with_handler(api.get_updates)
    server.expect_request(f"/bot{TOKEN}/sendMessage").respond_with_handler(api.send_message)
    yield server, api
    server.clear()
    if server.is_running():
        server.stop()


def _run(state, config, server, days):
    env = {"TELEGRAM_BOT_TOKEN": TOKEN,
           "THETADESK_TELEGRAM_BASE_URL": server.url_for("/bot"), "RAY_ADDRESS": ""}
    run = Run(state, "local", "--sim-days", str(days), "--config", str(config), env=env)
    try:
        code, _, err = run.wait()
    finally:
        if run.proc.poll() is None:
            run.kill()
    assert code == 0, err[-3000:]
    return err


def test_stop_start_ack_and_closeall_from_telegram_steer_real_supervisor_runs(tmp_path, bot_api):
    server, api = bot_api
    config = tmp_path / "bot.yaml"
    config.write_text(DEFAULT_CONFIG.read_text().replace(
        "telegram_chat_ids: []", f"telegram_chat_ids: [{CHAT}]"))
    assert f"[{CHAT}]" in config.read_text()
    state = tmp_path / "s"
    api.add(STRANGER, "/stop")
    api.add(CHAT, "/stop")
    api.add(CHAT, "/status")

    _run(state, config, server, 1)

    ledger = Ledger(state / LEDGER_FILE)
    halts = [(e["kind"], e["by"]) for e in ledger.breaker_events("paper", MANUAL_HALT)]
    assert halts == [("tripped", f"telegram:{CHAT}")]  # one /stop: the stranger's did nothing
    assert ledger.positions("paper", status=None) == []  # halted before the first tick
    assert api.texts_to(STRANGER) == []
    replies = api.texts_to(CHAT)
    assert any("New entries halted on paper" in t for t in replies)
    assert any("ThetaDesk status" in t and "manual_halt" in t for t in replies)
    assert ledger.get_state("telegram_offset") == "903"
    ledger.close()

    api.add(CHAT, "/start")
    api.add(CHAT, "/start confirm")
    api.add(CHAT, "/ack")
    _run(state, config, server, 2)

    ledger = Ledger(state / LEDGER_FILE)
    assert api.offsets.count(None) == 1  # the second run polled from the kept offset
    events = [(e["kind"], e["by"]) for e in ledger.breaker_events("paper", MANUAL_HALT)]
    assert events == [("tripped", f"telegram:{CHAT}"), ("reset", f"telegram:{CHAT}")]
    held = [p["position_id"] for p in ledger.positions("paper")]
    assert held  # trading resumed on day 2, and positions are open at its close
    assert any("Resumed" in t for t in api.texts_to(CHAT))
    assert "No open alerts." in api.texts_to(CHAT)  # /ack answered by the notification actor
    assert ledger.get_state("telegram_offset") == "906"
    ledger.close()

    api.add(CHAT, "/closeall")
    api.add(CHAT, "/closeall confirm")
    _run(state, config, server, 3)

    ledger = Ledger(state / LEDGER_FILE)
    try:
        closed = {p["position_id"]: p for p in ledger.positions("paper", status="closed")}
        assert ledger.positions("paper") == []
        assert {closed[pid]["exit_reason"] for pid in held} == {"close_all"}
        assert ledger.get_state("close_all:paper") is None  # done, and cleared
        assert [e["kind"] for e in ledger.breaker_events("paper", MANUAL_HALT)][-1] == "tripped"
        opened_day3 = [p for p in ledger.positions("paper", status=None)
                       if p["opened_at"] > max(c["closed_at"] for c in closed.values())]
        assert opened_day3 == []  # entries stayed halted after the close-all
        assert any("Closing all" in t for t in api.texts_to(CHAT))
        assert any("close-all requested by telegram" in t for t in api.texts_to(CHAT))
    finally:
        ledger.close()
