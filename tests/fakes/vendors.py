"""A local server that answers like Alpaca's Trading API v2 and Polygon's option snapshot and
aggregate endpoints, with state: a fake with real behaviour (STYLE.md §6), for tests that drive
the whole desk through the real vendor clients.

* Market data comes from a ``SimMarket`` at the fake's clock (``FakeVendors.now``), shaped as
  Polygon's ``/v3/snapshot/options/{underlying}`` (paged through ``next_url`` cursors),
  ``/v3/snapshot/options/{underlying}/{ticker}`` and ``/v2/aggs/ticker/...`` replies.
* Orders: ``POST /v2/orders`` (multi-leg, single-leg and share orders, in alpaca-py's JSON)
  records an order, refusing a repeated ``client_order_id`` with Alpaca's 422. An order fills
  completely at its limit the first time anything reads it after submission (``fill_on_read``;
  False leaves orders working), which moves the positions leg by leg. Cancel, cancel-all,
  close-all, the order lookups, positions, the account and the option contracts list answer
  from that state.
* Faults for one request: ``fail_next_post`` = "timeout" (the order is recorded, the reply comes
  after the client has given up), "500", "504" or "429" (nothing recorded).
* ``requests`` records every request (method, path, query, JSON body) for assertions.

The reply shapes follow the documented payloads in ``../shared/vendor-samples`` (see
``tests/contract/fixtures``); prices are strings as in Alpaca's docs, multi-leg prices negative
for a credit.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from thetadesk.adapters.sim_market import SimMarket
from thetadesk.chain import NEW_YORK
from thetadesk.models import Contract

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(t: datetime) -> int:
    return int((t - _EPOCH) / timedelta(microseconds=1)) * 1000


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _money(x: float) -> str:
    return f"{x:.2f}"


@dataclass
class FakeOrder:
    body: dict
    id: str
    created: datetime
    status: str = "new"
    filled_qty: int = 0
    filled_avg: float | None = None
    filled_at: datetime | None = None
    updated: datetime | None = None
    reads: int = 0

    @property
    def client_order_id(self) -> str:
        return self.body["client_order_id"]

    @property
    def qty(self) -> int:
        return int(float(self.body["qty"]))

    @property
    def mleg(self) -> bool:
        return self.body.get("order_class") == "mleg"

    @property
    def is_open(self) -> bool:
        return self.status in ("new", "accepted", "pending_new", "partially_filled")


@dataclass
class FakeVendors:
    market: SimMarket
    now: Callable[[], datetime]
    cash: float = 100_000.0
    fill_on_read: bool = True
    fail_next_post: str | None = None
    timeout_s: float = 2.0
    page_limit_cap: int = 250
    orders: dict[str, FakeOrder] = field(default_factory=dict)
    positions: dict[str, dict] = field(default_factory=dict)  # symbol -> {qty, avg, option}
    requests: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._server = None
        self._thread = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeVendors:
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment a desk needs to use this server for everything."""
        return {
            "ALPACA_API_KEY": "PKFAKE0000000000TEST", "ALPACA_SECRET_KEY": "fake" + "s" * 36,
            "POLYGON_API_KEY": "polyfake" + "k" * 24,
            "THETADESK_POLYGON_BASE_URL": self.url,
            "THETADESK_ALPACA_TRADING_URL": self.url,
            "THETADESK_ALPACA_DATA_URL": self.url,
            **extra,
        }

    # -- what tests set up --------------------------------------------------------------------

    def add_external_order(self, client_order_id: str, occ: str, qty: int = 1,
                           limit: float = 0.05) -> FakeOrder:
        """An order someone placed by hand: it stays open (never fills)."""
        body = {"client_order_id": client_order_id, "symbol": occ, "qty": str(qty),
                "side": "buy", "type": "limit", "time_in_force": "day",
                "limit_price": str(limit), "position_intent": "buy_to_open",
                "_external": True}
        with self._lock:
            order = FakeOrder(body, str(uuid.uuid4()), self.now())
            self.orders[order.id] = order
        return order

    def set_position(self, symbol: str, qty: int, avg: float) -> None:
        with self._lock:
            if qty == 0:
                self.positions.pop(symbol, None)
            else:
                self.positions[symbol] = {"qty": qty, "avg": avg,
                                          "option": len(symbol) > 10}

    def posted_orders(self) -> list[dict]:
        return [r["json"] for r in self.requests if r["method"] == "POST"
                and r["path"] == "/v2/orders"]

    # -- the server ------------------------------------------------------------------------------

    def _app(self, environ, start_response):
        request = Request(environ)
        body = None
        if request.data:
            try:
                body = json.loads(request.data)
            except ValueError:
                body = None
        with self._lock:
            self.requests.append({"method": request.method, "path": request.path,
                                  "args": request.args.to_dict(), "json": body,
                                  "headers": dict(request.headers)})
        try:
            response = self._route(request, body)
        except Exception:  # a bug in the fake: say so in the reply and keep it for the test
            self.errors.append(traceback.format_exc())
            response = _json({"message": "the fake failed", "trace": self.errors[-1]}, 500)
        return response(environ, start_response)

    def _route(self, request: Request, body: Any) -> Response:
        path, method = request.path, request.method
        if path.startswith("/v3/snapshot/options/"):
            parts = path.split("/")[4:]
            if len(parts) == 1:
                return self._chain(parts[0], request.args.to_dict())
            return self._one_snapshot(parts[0], parts[1])
        if path.startswith("/v2/aggs/ticker/"):
            return self._aggs(path.split("/")[4])
        if path == "/v2/account":
            return _json(self._account())
        if path == "/v2/orders" and method == "POST":
            return self._submit(body or {})
        if path == "/v2/orders" and method == "GET":
            return _json(self._list_orders(request.args.get("status", "open")))
        if path == "/v2/orders" and method == "DELETE":
            return _json(self._cancel_all(), 207)
        if path == "/v2/orders:by_client_order_id":
            return self._by_client_id(request.args.get("client_order_id", ""))
        if path.startswith("/v2/orders/"):
            oid = path.rsplit("/", 1)[1]
            if method == "DELETE":
                return self._cancel(oid)
            with self._lock:
                order = self.orders.get(oid)
                if order is None:
                    return _json({"code": 40410000, "message": "order not found"}, 404)
                return _json(self._order_json(self._touch(order)))
        if path == "/v2/positions" and method == "GET":
            return _json(self._positions_json())
        if path == "/v2/positions" and method == "DELETE":
            return _json(self._close_all(), 207)
        if path == "/v2/account/activities":
            return _json([])
        if path == "/v2/options/contracts":
            return _json(self._contracts(request.args.to_dict()))
        return _json({"message": f"no such route in the fake: {method} {path}"}, 404)

    # -- Polygon ---------------------------------------------------------------------------------

    def _chain(self, underlying: str, args: dict) -> Response:
        if "cursor" in args:
            args = json.loads(base64.urlsafe_b64decode(args["cursor"]).decode())
        now = self.now()
        chain = self.market.chain(underlying, now)
        low = date.fromisoformat(args["expiration_date.gte"]) if (
            "expiration_date.gte" in args) else None
        high = date.fromisoformat(args["expiration_date.lte"]) if (
            "expiration_date.lte" in args) else None
        rows = [r for e in chain.expiries() if (low is None or e >= low)
                and (high is None or e <= high) for r in chain.rows(e)]
        offset = int(args.get("offset", 0))
        limit = min(int(args.get("limit", 10)), self.page_limit_cap)
        page = rows[offset:offset + limit]
        reply: dict[str, Any] = {
            "status": "OK", "request_id": uuid.uuid4().hex,
            "results": [self._snapshot(r, chain.spot, now) for r in page],
        }
        if offset + limit < len(rows):
            cursor = base64.urlsafe_b64encode(json.dumps(
                {**args, "offset": offset + limit}).encode()).decode()
            reply["next_url"] = (f"https://api.polygon.io/v3/snapshot/options/{underlying}?"
                                 + urlencode({"cursor": cursor}))
        return _json(reply)

    def _one_snapshot(self, underlying: str, ticker: str) -> Response:
        now = self.now()
        contract = Contract.from_occ(ticker.removeprefix("O:"))
        chain = self.market.chain(underlying, now)
        for row in chain.rows(contract.expiry):
            if row.contract == contract:
                return _json({"status": "OK", "request_id": uuid.uuid4().hex,
                              "results": self._snapshot(row, chain.spot, now)})
        return _json({"status": "NOT_FOUND", "message": "not found"}, 404)

    @staticmethod
    def _snapshot(row, spot: float, now: datetime) -> dict:
        c, q = row.contract, row.quote
        return {
            "details": {"contract_type": "call" if c.is_call else "put",
                        "exercise_style": "american", "expiration_date": c.expiry.isoformat(),
                        "shares_per_contract": c.multiplier, "strike_price": c.strike,
                        "ticker": f"O:{c.occ}"},
            "day": {"volume": row.volume or 0, "close": round(q.mid, 2),
                    "last_updated": _ns(now)},
            "greeks": ({} if row.delta is None else {"delta": round(row.delta, 4)}),
            **({} if row.iv is None else {"implied_volatility": round(row.iv, 4)}),
            "last_quote": {"bid": q.bid, "ask": q.ask, "bid_size": q.bid_size,
                           "ask_size": q.ask_size, "midpoint": round(q.mid, 3),
                           "last_updated": _ns(q.ts or now), "timeframe": "REAL-TIME"},
            "open_interest": row.open_interest or 0,
            "underlying_asset": {"price": spot, "ticker": c.underlying,
                                 "last_updated": _ns(now), "timeframe": "REAL-TIME"},
        }

    def _aggs(self, ticker: str) -> Response:
        now = self.now()
        minute = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
        price = self.market.spot(ticker, now)
        t = int((minute - _EPOCH) / timedelta(milliseconds=1))
        return _json({"ticker": ticker, "status": "OK", "resultsCount": 1, "adjusted": True,
                      "results": [{"o": price, "h": price, "l": price, "c": price, "v": 1000,
                                   "t": t, "n": 10}]})

    # -- Alpaca ------------------------------------------------------------------------------

    def _account(self) -> dict:
        with self._lock:
            value = self.cash + sum(p["qty"] * p["avg"] * (100 if p["option"] else 1)
                                    for p in self.positions.values())
        return {"id": "00000000-0000-4000-8000-000000000001", "account_number": "PA0FAKE",
                "status": "ACTIVE", "currency": "USD", "cash": _money(self.cash),
                "buying_power": _money(self.cash * 2), "options_buying_power":
                _money(self.cash), "equity": _money(value), "options_trading_level": 3}

    def _submit(self, body: dict) -> Response:
        fault, self.fail_next_post = self.fail_next_post, None
        if fault in ("500", "504"):
            return _json({"message": "internal server error"}, int(fault))
        if fault == "429":
            return _json({"code": 42910000, "message": "rate limit exceeded"}, 429)
        with self._lock:
            cid = body.get("client_order_id")
            if not cid or any(o.client_order_id == cid for o in self.orders.values()):
                return _json({"code": 40010001, "message": "client_order_id must be unique"},
                             422)
            order = FakeOrder(body, str(uuid.uuid4()), self.now())
            self.orders[order.id] = order
            reply = self._order_json(order)
        if fault == "timeout":
            time.sleep(self.timeout_s)
        return _json(reply)

    def _touch(self, order: FakeOrder) -> FakeOrder:
        """A read of an order: it fills at its limit the first time it is read after being
        sent, when the fake fills at all. External orders never fill."""
        order.reads += 1
        if (self.fill_on_read and order.is_open and not order.body.get("_external")):
            self._fill(order)
        return order

    def _fill(self, order: FakeOrder) -> None:
        now = self.now()
        body = order.body
        limit = float(body.get("limit_price") or 0.0)
        if order.mleg:
            for leg in body["legs"]:
                sign = 1 if leg["side"] == "buy" else -1
                contract = Contract.from_occ(leg["symbol"])
                mid = self.market.quote(contract, now).mid
                self._move(leg["symbol"], sign * int(float(leg["ratio_qty"])) * order.qty, mid)
            self.cash -= limit * 100 * order.qty  # Alpaca's sign: > 0 a debit
        elif body.get("symbol", "").isalpha():  # shares
            sign = 1 if body["side"] == "buy" else -1
            price = limit or self.market.spot(body["symbol"], now)
            self._move(body["symbol"], sign * order.qty, price, option=False)
            self.cash -= sign * price * order.qty
            limit = price
        else:
            sign = 1 if body["side"] == "buy" else -1
            self._move(body["symbol"], sign * order.qty, limit)
            self.cash -= sign * limit * 100 * order.qty
        order.status, order.filled_qty, order.filled_avg = "filled", order.qty, limit
        order.filled_at = order.updated = now

    def _move(self, symbol: str, change: int, price: float, option: bool = True) -> None:
        held = self.positions.get(symbol, {"qty": 0, "avg": price, "option": option})
        qty = held["qty"] + change
        if qty == 0:
            self.positions.pop(symbol, None)
        else:
            self.positions[symbol] = {"qty": qty, "avg": held["avg"] if held["qty"] else price,
                                      "option": option}

    def _order_json(self, order: FakeOrder) -> dict:
        b = order.body
        kind = "us_option" if (order.mleg or not b.get("symbol", "").isalpha()) else "us_equity"
        out = {
            "id": order.id, "client_order_id": order.client_order_id,
            "created_at": _iso(order.created), "updated_at": _iso(order.updated or order.created),
            "submitted_at": _iso(order.created),
            "filled_at": order.filled_at and _iso(order.filled_at),
            "expired_at": None, "canceled_at": None, "failed_at": None,
            "asset_id": "", "symbol": "" if order.mleg else b.get("symbol", ""),
            "asset_class": kind, "qty": str(order.qty), "filled_qty": str(order.filled_qty),
            "filled_avg_price": None if order.filled_avg is None else str(order.filled_avg),
            "order_class": "mleg" if order.mleg else "simple",
            "order_type": b.get("type", "limit"), "type": b.get("type", "limit"),
            "side": "" if order.mleg else b.get("side", ""),
            "time_in_force": b.get("time_in_force", "day"),
            "limit_price": None if b.get("limit_price") is None else str(b["limit_price"]),
            "status": order.status, "extended_hours": False,
            "replaced_by": None, "replaces": None, "expires_at": None,
            "position_intent": b.get("position_intent"),
        }
        if order.mleg:
            out["legs"] = [{"symbol": leg["symbol"], "side": leg["side"],
                            "ratio_qty": str(leg["ratio_qty"]),
                            "position_intent": leg.get("position_intent"),
                            "status": order.status, "asset_class": "us_option"}
                           for leg in b["legs"]]
        return out

    def _list_orders(self, status: str) -> list[dict]:
        with self._lock:
            orders = [self._touch(o) for o in self.orders.values()]
            return [self._order_json(o) for o in orders if status != "open" or o.is_open]

    def _by_client_id(self, cid: str) -> Response:
        with self._lock:
            for order in self.orders.values():
                if order.client_order_id == cid:
                    return _json(self._order_json(self._touch(order)))
        return _json({"code": 40410000, "message": "order not found"}, 404)

    def _cancel(self, oid: str) -> Response:
        with self._lock:
            order = self.orders.get(oid)
            if order is None:
                return _json({"code": 40410000, "message": "order not found"}, 404)
            if not order.is_open:
                return _json({"code": 42210000,
                              "message": f'order is already in "{order.status}" state'}, 422)
            order.status, order.updated = "canceled", self.now()
        return Response(status=204)

    def _cancel_all(self) -> list[dict]:
        with self._lock:
            out = []
            for order in self.orders.values():
                if order.is_open:
                    order.status, order.updated = "canceled", self.now()
                    out.append({"id": order.id, "status": 200, "body": None})
            return out

    def _positions_json(self) -> list[dict]:
        with self._lock:
            return [{"asset_id": "", "symbol": s, "exchange": "" if p["option"] else "ARCA",
                     "asset_class": "us_option" if p["option"] else "us_equity",
                     "qty": str(p["qty"]), "side": "long" if p["qty"] > 0 else "short",
                     "avg_entry_price": f"{p['avg']:.4f}", "qty_available": str(p["qty"]),
                     "market_value": "0", "cost_basis": "0"}
                    for s, p in sorted(self.positions.items())]

    def _close_all(self) -> list[dict]:
        self._cancel_all()
        with self._lock:
            out = [{"symbol": s, "status": 200, "body": {}} for s in self.positions]
            self.positions.clear()
            return out

    def _contracts(self, args: dict) -> dict:
        now = self.now()
        underlying = args.get("underlying_symbols", "SPY")
        chain = self.market.chain(underlying, now)
        low = date.fromisoformat(args["expiration_date_gte"]) if (
            "expiration_date_gte" in args) else None
        high = date.fromisoformat(args["expiration_date_lte"]) if (
            "expiration_date_lte" in args) else None
        day = (now.astimezone(NEW_YORK).date() - timedelta(days=1)).isoformat()
        rows = [r for e in chain.expiries() if (low is None or e >= low)
                and (high is None or e <= high) for r in chain.rows(e)]
        return {"option_contracts": [
            {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, r.contract.occ)), "symbol": r.contract.occ,
             "status": "active", "tradable": True, "expiration_date": r.contract.expiry.isoformat(),
             "root_symbol": underlying, "underlying_symbol": underlying,
             "type": "call" if r.contract.is_call else "put", "style": "american",
             "strike_price": str(r.contract.strike), "multiplier": "100", "size": "100",
             "open_interest": str(r.open_interest or 0), "open_interest_date": day,
             "close_price": f"{r.quote.mid:.2f}", "close_price_date": day} for r in rows],
            "next_page_token": None}


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, content_type="application/json")
