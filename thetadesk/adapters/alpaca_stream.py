"""Alpaca's ``trade_updates`` stream as the fast path for ``AlpacaBroker``'s fills.

Every trade event carries the whole order object; it is fed to ``AlpacaBroker.observe_order``,
the same fill tracker REST polling feeds, so an execution seen on both paths has one ``exec_id``
(``"{broker_order_id}:{cumulative qty}"``) and is returned by ``poll`` once.

The stream can miss events: Alpaca does not replay what happened while a socket was down. So
``AlpacaBroker.poll`` asks the REST API again after every (re)connection (``connects`` changes)
and whenever the stream has been down longer than ``grace_s``; while it is live, ``poll`` makes
no request at all.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from thetadesk.adapters._alpaca_sdk import sdk_import

with sdk_import():  # see thetadesk.adapters._alpaca_sdk
    from alpaca.trading.stream import TradingStream

from thetadesk.adapters.alpaca import AlpacaBroker, AlpacaSettings
from thetadesk.errors import ConfigError, DataError
from thetadesk.logging import get_logger

__all__ = ["AlpacaTradeUpdates"]


class _Stream(TradingStream):
    """alpaca-py's stream with hooks for connection state, which it does not expose."""

    def __init__(self, owner: AlpacaTradeUpdates, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner

    async def _start_ws(self) -> None:
        await super()._start_ws()
        self._owner._connected()

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._owner._disconnected()


class AlpacaTradeUpdates:
    """Runs alpaca-py's ``TradingStream`` on a daemon thread and feeds ``broker``.

    ``start()`` also attaches the stream to the broker. ``grace_s``: how long a drop may last
    before ``poll`` stops trusting the stream and polls REST again (a reconnection triggers one
    REST poll in any case). ``url_override`` points at another websocket server (tests).
    """

    def __init__(
        self,
        settings: AlpacaSettings,
        broker: AlpacaBroker,
        *,
        paper: bool = True,
        url_override: str | None = None,
        grace_s: float = 30.0,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
    ) -> None:
        if not (grace_s >= 0 and 0 < reconnect_min_s <= reconnect_max_s):
            raise ConfigError(
                f"stream timings must satisfy grace_s >= 0 and 0 < reconnect_min_s <= "
                f"reconnect_max_s, got {grace_s}, {reconnect_min_s}, {reconnect_max_s}"
            )
        self._broker = broker
        self._grace_s = grace_s
        self._lock = threading.Lock()
        self._live = False
        self._down_since: float | None = None  # monotonic; None before the first connection
        self._connects = 0
        self._thread: threading.Thread | None = None
        self._log = get_logger("thetadesk.adapters.alpaca_stream").bind(paper=paper)
        self._stream = _Stream(self, settings.api_key, settings.secret_key, paper=paper,
                               raw_data=True, url_override=url_override)
        self._stream._reconnect_min_backoff = reconnect_min_s
        self._stream._reconnect_max_backoff = reconnect_max_s
        self._stream.subscribe_trade_updates(self._on_update)

    # -- what AlpacaBroker.poll asks -----------------------------------------------------------

    @property
    def connects(self) -> int:
        """How many times the stream has (re)connected and subscribed."""
        with self._lock:
            return self._connects

    def is_live(self) -> bool:
        """Connected, or down for less than ``grace_s`` after having been connected.

        Transport health is measured on the monotonic clock: it is about sockets, not about
        the trading clock that ``now`` arguments carry.
        """
        with self._lock:
            if self._live:
                return True
            if self._down_since is None:
                return False
            return time.monotonic() - self._down_since < self._grace_s

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._broker.attach_stream(self)
        self._thread = threading.Thread(target=self._stream.run, name="alpaca-trade-updates",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the stream to stop and wait up to ``timeout_s`` for its thread."""
        if self._thread is None:
            return
        loop = self._stream._loop
        if loop is not None and loop.is_running():
            self._stream.stop()
        self._thread.join(timeout_s)
        with self._lock:
            self._live = False

    # -- callbacks (the stream's thread) -------------------------------------------------------

    def _connected(self) -> None:
        with self._lock:
            self._live = True
            self._down_since = None
            self._connects += 1
        self._log.info("trade_stream_connected", connects=self._connects)

    def _disconnected(self) -> None:
        with self._lock:
            if self._live:
                self._down_since = time.monotonic()
            self._live = False

    async def _on_update(self, message: Any) -> None:
        data = message.get("data") if isinstance(message, dict) else None
        order = data.get("order") if isinstance(data, dict) else None
        if order is None:
            self._log.warning("trade_update_without_order", message=str(message)[:300])
            return
        try:
            seen = self._broker.observe_order(order)
        except DataError as exc:
            self._log.warning("trade_update_rejected", error=str(exc))
            return
        self._log.debug("trade_update", trade_event=data.get("event"),
                        client_order_id=seen.client_order_id, status=seen.status.value,
                        filled_quantity=seen.filled_quantity)
