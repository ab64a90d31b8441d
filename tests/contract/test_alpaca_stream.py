"""Contract tests: ``AlpacaTradeUpdates`` (alpaca-py's ``TradingStream``) against a local
websocket server speaking the trade_updates frames in ``fixtures/alpaca`` (binary frames, as
paper-api sends them), with ``AlpacaBroker``'s REST side on pytest-httpserver.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from websockets.asyncio.server import ServerConnection, serve
from werkzeug import Request, Response

from thetadesk.adapters.alpaca import AlpacaBroker, AlpacaSettings
from thetadesk.adapters.alpaca_stream import AlpacaTradeUpdates
from thetadesk.models import Fill

FIXTURES = Path(__file__).parent / "fixtures" / "alpaca"
KEY = "PKTEST00000000000000"
SECRET = "TESTSECRET0000000000000000000000000000000"
NOW = datetime(2026, 8, 20, 14, 10, tzinfo=UTC)
IC_ID = "00000000-0000-4000-8000-0000000b0001"
PCS_ID = "00000000-0000-4000-8000-0000000a0001"


def frame(name: str) -> bytes:
    return json.dumps(json.loads((FIXTURES / name).read_text())).encode()


def rest_order(name: str):
    return json.loads((FIXTURES / name).read_text())


NEW_IC = "05_server_to_client.trade_updates.new.mleg_4leg.json"
PARTIAL_IC = "06_server_to_client.trade_updates.partial_fill.mleg_4leg.json"
FILL_PCS = "07_server_to_client.trade_updates.fill.mleg_2leg.json"
CANCELED_IC = "08_server_to_client.trade_updates.canceled.mleg_4leg.json"


class FakeStream:
    """A trade_updates server: one script of frames per connection, then it drops the socket
    (or, for the last script, keeps it open). Records what clients sent."""

    def __init__(self, scripts: list[list[bytes]], authorize: bool = True) -> None:
        self.scripts = scripts
        self.authorize = authorize
        self.received: list[dict] = []
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self):
        return await serve(self.handle, "127.0.0.1", 0)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    async def handle(self, ws: ServerConnection) -> None:
        index = self.connections
        self.connections += 1
        auth = json.loads(await ws.recv())
        self.received.append(auth)
        key, secret = ((auth.get("key"), auth.get("secret")) if auth.get("action") == "auth"
                       else (auth.get("data", {}).get("key_id"),
                             auth.get("data", {}).get("secret_key")))
        if not self.authorize or (key, secret) != (KEY, SECRET):
            await ws.send(frame("02b_server_to_client.authorization.unauthorized.json"))
            await ws.close()
            return
        await ws.send(frame("02a_server_to_client.authorization.authorized.json"))
        listen = json.loads(await ws.recv())
        self.received.append(listen)
        await ws.send(frame("04a_server_to_client.listening.json"))
        script = self.scripts[index] if index < len(self.scripts) else []
        for item in script:
            await ws.send(item)
        if index + 1 < len(self.scripts):
            await ws.close()  # the drop: the client must reconnect for the next script
        else:
            await ws.wait_closed()

    def close(self) -> None:
        self.server.close()
        asyncio.run_coroutine_threadsafe(self.server.wait_closed(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def rest_server(httpserver: HTTPServer, open_orders: list, all_orders: list) -> None:
    def orders(request: Request) -> Response:
        body = open_orders if request.args["status"] == "open" else all_orders
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/v2/orders", method="GET").respond_with_handler(orders)


def poll_until(broker: AlpacaBroker, done: Callable[[list[Fill]], bool],
               deadline_s: float = 15.0) -> list[Fill]:
    """Poll like the trading loop until ``done`` holds or the deadline passes."""
    got: list[Fill] = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and not done(got):
        got.extend(broker.poll(NOW))
        time.sleep(0.05)
    return got


@pytest.fixture
def broker(httpserver: HTTPServer) -> AlpacaBroker:
    return AlpacaBroker(AlpacaSettings(KEY, SECRET), account_name="paper1",
                        url_override=httpserver.url_for("").rstrip("/"), timeout_s=2.0)


@pytest.fixture
def stream_factory(broker: AlpacaBroker) -> Iterator[Callable[..., AlpacaTradeUpdates]]:
    made: list[AlpacaTradeUpdates] = []

    def make(url: str, grace_s: float = 30.0) -> AlpacaTradeUpdates:
        stream = AlpacaTradeUpdates(AlpacaSettings(KEY, SECRET), broker, url_override=url,
                                    grace_s=grace_s, reconnect_min_s=0.05, reconnect_max_s=0.2)
        stream.start()
        made.append(stream)
        return stream

    yield make
    for stream in made:
        stream.stop(timeout_s=10)


def test_stream_fills_once_across_a_drop_and_a_duplicate_event(httpserver, broker,
                                                               stream_factory):
    # REST agrees with the stream: the condor has 1 of 2 filled. The stream sends the partial
    # fill, drops, and after the reconnect sends it again before the spread's fill.
    partial = rest_order("GET_v2_orders_by_client_order_id.mleg_4leg_partially_filled.200.json")
    rest_server(httpserver, open_orders=[partial], all_orders=[partial])
    server = FakeStream([[frame(NEW_IC), frame(PARTIAL_IC)],
                         [frame(PARTIAL_IC), frame(FILL_PCS)]])
    try:
        stream = stream_factory(server.url)
        fills = poll_until(broker, lambda got: any(f.exec_id == f"{PCS_ID}:1" for f in got))
        fills += broker.poll(NOW)
    finally:
        server.close()

    assert sorted((f.exec_id, f.quantity, f.price) for f in fills) == [
        (f"{PCS_ID}:1", 1, 0.55),
        (f"{IC_ID}:1", 1, 1.15),
    ]
    assert server.connections == 2
    assert stream.connects == 2
    auth, listen = server.received[:2]
    assert auth == {"action": "authenticate", "data": {"key_id": KEY, "secret_key": SECRET}}
    assert listen == {"action": "listen", "data": {"streams": ["trade_updates"]}}


def test_live_stream_spares_rest_and_cancel_event_closes_the_order(httpserver, broker,
                                                                   stream_factory):
    rest_server(httpserver, open_orders=[], all_orders=[])
    server = FakeStream([[frame(NEW_IC), frame(PARTIAL_IC), frame(CANCELED_IC)]])
    try:
        stream = stream_factory(server.url)
        # Connected first: a poll that overlaps the connection re-syncs over REST once more
        # afterwards (by design), which would make the count below depend on thread timing.
        end = time.monotonic() + 15
        while stream.connects < 1 and time.monotonic() < end:
            time.sleep(0.01)
        fills = poll_until(broker, lambda got: bool(got))
        requests_after_first_fill = len(httpserver.log)
        for _ in range(3):
            fills += broker.poll(NOW)
    finally:
        server.close()

    assert [(f.exec_id, f.quantity) for f in fills] == [(f"{IC_ID}:1", 1)]
    # Once connected and synced, polls are served from the stream without any REST request.
    assert len(httpserver.log) == requests_after_first_fill


def test_unreachable_stream_falls_back_to_rest(httpserver, broker, stream_factory):
    partial = rest_order("GET_v2_orders_by_client_order_id.mleg_4leg_partially_filled.200.json")
    rest_server(httpserver, open_orders=[partial], all_orders=[partial])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stream = stream_factory(f"ws://127.0.0.1:{port}/stream", grace_s=0.0)

    fills = broker.poll(NOW)
    again = broker.poll(NOW)

    assert not stream.is_live()
    assert [(f.exec_id, f.quantity, f.price) for f in fills] == [(f"{IC_ID}:1", 1, 1.15)]
    assert again == []
    assert sum(1 for req, _ in httpserver.log if req.path == "/v2/orders") >= 2


def test_unauthorized_stream_is_never_live(httpserver, broker, stream_factory):
    rest_server(httpserver, open_orders=[], all_orders=[])
    server = FakeStream([[]], authorize=False)
    try:
        stream = stream_factory(server.url)
        end = time.monotonic() + 5.0
        while server.connections < 2 and time.monotonic() < end:
            time.sleep(0.05)  # wait for a retry, proof the first attempt was handled
        live = stream.is_live()
    finally:
        server.close()

    assert server.connections >= 2
    assert not live
    assert stream.connects == 0
