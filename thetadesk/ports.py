"""The ports between ThetaDesk's domain and the outside world.

The simulator (``adapters/sim_market.py``, ``adapters/sim_broker.py``), Polygon
(``adapters/polygon.py``) and Alpaca (``adapters/alpaca.py``, ``adapters/alpaca_data.py``)
implement them. Every method takes ``now`` from the
caller's clock where time matters: adapters never read the wall clock to decide what is true.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from thetadesk.chain import OptionChain
from thetadesk.models import (
    BrokerAccount,
    BrokerOrder,
    BrokerPosition,
    Contract,
    Fill,
    OrderRequest,
    Quote,
    Settlement,
    ShareOrder,
    SharePosition,
)


class MarketData(Protocol):
    def spot(self, symbol: str, now: datetime) -> float:
        """The underlying's price at ``now`` (last trade or mid). Raises DataError if unknown."""
        ...

    def quote(self, contract: Contract, now: datetime) -> Quote:
        """One contract's quote at ``now``. Raises DataError if it is unusable."""
        ...

    def chain(self, symbol: str, now: datetime, min_dte: int | None = None,
              max_dte: int | None = None) -> OptionChain:
        """The listed options with quotes at ``now``, only the expiries with
        ``min_dte <= DTE <= max_dte`` (calendar days from ``now``'s New York date) when given.
        Rows whose quote is unusable (NaN, negative, crossed) are left out and logged, never
        passed on."""
        ...


class Broker(Protocol):
    def submit(self, order: OrderRequest | ShareOrder, now: datetime) -> BrokerOrder:
        """Submit an option order or a share order. Raises OrderRejected (definitive),
        TemporaryError (nothing was accepted), or AmbiguousOrderState (it may have been
        accepted: look it up)."""
        ...

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client order id, or None if the broker never accepted it."""
        ...

    def cancel(self, client_order_id: str, now: datetime) -> BrokerOrder:
        """Cancel an open order (no-op on a final one); returns its state after the attempt."""
        ...

    def replace(self, client_order_id: str, new_client_order_id: str, now: datetime,
                limit_price: float | None = None, quantity: int | None = None) -> BrokerOrder:
        """Replace an open order's limit price and/or quantity with a new order carrying
        ``new_client_order_id``. Failures as ``submit``'s: when the outcome is unknown, look
        up ``new_client_order_id``."""
        ...

    def open_orders(self) -> list[BrokerOrder]: ...

    def fills(self, client_order_id: str) -> list[Fill]:
        """Every execution of one order, oldest first."""
        ...

    def poll(self, now: datetime) -> list[Fill]:
        """Advance to ``now`` (the simulator matches resting orders here) and return the
        executions not returned by an earlier poll, oldest first."""
        ...

    def positions(self) -> list[BrokerPosition]:
        """Option positions."""
        ...

    def share_positions(self) -> list[SharePosition]:
        """Share positions (from exercise and assignment, or share orders)."""
        ...

    def settlements(self, since: datetime | None = None) -> list[Settlement]:
        """Expirations, exercises and assignments booked at or after ``since`` (all if None),
        oldest first. Idempotent: callers de-duplicate on ``activity_id``."""
        ...

    def account(self) -> BrokerAccount: ...
