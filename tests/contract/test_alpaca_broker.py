"""Contract tests: ``AlpacaBroker`` (real alpaca-py) against a local server speaking Alpaca's
Trading API v2 with the documented bodies in ``fixtures/alpaca`` (copied from the shared vendor
samples). Every test checks what the server received as well as what the adapter returned.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from thetadesk.adapters.alpaca import AlpacaBroker, AlpacaSettings, map_order_status
from thetadesk.errors import (
    AmbiguousOrderState,
    ConfigError,
    DataError,
    OrderRejected,
    TemporaryError,
)
from thetadesk.models import (
    BrokerPosition,
    Contract,
    Leg,
    OrderRequest,
    OrderStatus,
    Right,
    ShareOrder,
    SharePosition,
)

FIXTURES = Path(__file__).parent / "fixtures" / "alpaca"
KEY = "PKTEST00000000000000"
SECRET = "TESTSECRET0000000000000000000000000000000"
NOW = datetime(2026, 8, 20, 14, 2, 11, tzinfo=UTC)
EXPIRY = date(2026, 9, 18)
PCS_CID = "td-SPY-20260820-pcs-7f3a9c"
IC_CID = "td-SPY-20260820-ic-2b81d4"
IC_ID = "00000000-0000-4000-8000-0000000b0001"
PCS_ID = "00000000-0000-4000-8000-0000000a0001"
BY_CID = "/v2/orders:by_client_order_id"


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def put(strike: float) -> Contract:
    return Contract("SPY", EXPIRY, Right.PUT, strike)


def call(strike: float) -> Contract:
    return Contract("SPY", EXPIRY, Right.CALL, strike)


def credit_spread(cid: str = PCS_CID) -> OrderRequest:
    return OrderRequest(cid, "paper1", (Leg(put(620), -1), Leg(put(615), 1)), 1, 0.55,
                        time_in_force="day")


def iron_condor() -> OrderRequest:
    legs = (Leg(put(615), 1), Leg(put(620), -1), Leg(call(670), -1), Leg(call(675), 1))
    return OrderRequest(IC_CID, "paper1", legs, 2, 1.14, time_in_force="day")


@pytest.fixture
def broker(httpserver: HTTPServer) -> AlpacaBroker:
    return AlpacaBroker(AlpacaSettings(KEY, SECRET), paper=True, account_name="paper1",
                        url_override=httpserver.url_for("").rstrip("/"), timeout_s=1.0)


def posts(httpserver: HTTPServer) -> list[Request]:
    return [req for req, _ in httpserver.log if req.method == "POST"]


def number(value) -> float:
    """The docs send strings, alpaca-py sends numbers: compare either as a number."""
    return float(value)


# -- settings ---------------------------------------------------------------------------------


def test_settings_from_env_names_missing_variables_without_values():
    with pytest.raises(ConfigError) as err:
        AlpacaSettings.from_env({"ALPACA_API_KEY": KEY})
    assert "ALPACA_SECRET_KEY" in str(err.value)
    assert KEY not in str(err.value)
    settings = AlpacaSettings.from_env({"ALPACA_API_KEY": KEY, "ALPACA_SECRET_KEY": SECRET})
    assert settings.secret_key == SECRET
    assert SECRET not in repr(settings)
    assert KEY not in repr(settings)


# -- submit -----------------------------------------------------------------------------------


def test_submit_two_leg_credit_spread_sends_mleg_with_negative_limit(httpserver, broker):
    httpserver.expect_request("/v2/orders", method="POST").respond_with_json(
        fixture("POST_v2_orders.mleg_2leg_put_credit_spread.200.json"))

    order = broker.submit(credit_spread(), NOW)

    assert order.client_order_id == PCS_CID
    assert order.broker_order_id == PCS_ID
    assert order.status is OrderStatus.NEW  # pending_new is still open
    assert order.limit_price == pytest.approx(0.55)  # Alpaca's -0.55 is our +0.55 credit
    [req] = posts(httpserver)
    assert req.headers["APCA-API-KEY-ID"] == KEY
    assert req.headers["APCA-API-SECRET-KEY"] == SECRET
    body = req.get_json()
    assert body["order_class"] == "mleg"
    assert body["type"] == "limit"
    assert body["time_in_force"] == "day"
    assert body["client_order_id"] == PCS_CID
    assert number(body["qty"]) == 1
    assert number(body["limit_price"]) == pytest.approx(-0.55)
    assert "symbol" not in body
    assert "side" not in body
    assert [(leg["symbol"], number(leg["ratio_qty"]), leg["side"], leg["position_intent"])
            for leg in body["legs"]] == [
        ("SPY260918P00620000", 1, "sell", "sell_to_open"),
        ("SPY260918P00615000", 1, "buy", "buy_to_open"),
    ]


def test_submit_four_leg_iron_condor(httpserver, broker):
    httpserver.expect_request("/v2/orders", method="POST").respond_with_json(
        fixture("POST_v2_orders.mleg_4leg_iron_condor.200.json"))

    order = broker.submit(iron_condor(), NOW)

    assert (order.broker_order_id, order.quantity, order.limit_price) == (IC_ID, 2, 1.14)
    body = posts(httpserver)[0].get_json()
    assert number(body["qty"]) == 2
    assert number(body["limit_price"]) == pytest.approx(-1.14)
    assert [(leg["symbol"], leg["side"], leg["position_intent"]) for leg in body["legs"]] == [
        ("SPY260918P00615000", "buy", "buy_to_open"),
        ("SPY260918P00620000", "sell", "sell_to_open"),
        ("SPY260918C00670000", "sell", "sell_to_open"),
        ("SPY260918C00675000", "buy", "buy_to_open"),
    ]


def test_closing_debit_spread_uses_close_intents_and_positive_limit(httpserver, broker):
    answer = fixture("POST_v2_orders.mleg_2leg_put_credit_spread.200.json")
    answer["client_order_id"] = "td-close-1"
    answer["limit_price"] = "0.20"
    httpserver.expect_request("/v2/orders", method="POST").respond_with_json(answer)
    closing = OrderRequest("td-close-1", "paper1", (Leg(put(620), 1), Leg(put(615), -1)), 1,
                           -0.20, opening=False, time_in_force="day")

    order = broker.submit(closing, NOW)

    assert order.limit_price == pytest.approx(-0.20)  # a debit paid
    body = posts(httpserver)[0].get_json()
    assert number(body["limit_price"]) == pytest.approx(0.20)
    assert [leg["position_intent"] for leg in body["legs"]] == ["buy_to_close", "sell_to_close"]


def test_share_market_order_sells_shares(httpserver, broker):
    answer = fixture("GET_v2_orders_id.mleg_2leg_filled.200.json")
    answer.update(client_order_id="td-shares-1", order_class="simple", asset_class="us_equity",
                  symbol="SPY", side="sell", type="market", order_type="market", qty="100",
                  filled_qty="0", filled_avg_price=None, limit_price=None, status="accepted",
                  legs=None)
    httpserver.expect_request("/v2/orders", method="POST").respond_with_json(answer)

    order = broker.submit(ShareOrder("td-shares-1", "paper1", "SPY", -100), NOW)

    assert (order.status, order.quantity, order.order_type) == (OrderStatus.NEW, 100, "market")
    body = posts(httpserver)[0].get_json()
    assert (body["symbol"], body["side"], body["type"], number(body["qty"])) == (
        "SPY", "sell", "market", 100)
    assert body["client_order_id"] == "td-shares-1"


def test_429_is_temporary_and_not_resent(httpserver, broker):
    httpserver.expect_request("/v2/orders", method="POST").respond_with_json(
        fixture("error.429_rate_limited.json"), status=429)

    with pytest.raises(TemporaryError, match="rate limit"):
        broker.submit(credit_spread(), NOW)

    assert len(posts(httpserver)) == 1


@pytest.mark.parametrize("status", [500, 504])
def test_5xx_is_ambiguous_and_lookup_finds_the_order(httpserver, broker, status):
    httpserver.expect_request("/v2/orders", method="POST").respond_with_data(
        "upstream trouble", status=status)
    httpserver.expect_request(BY_CID, query_string={"client_order_id": PCS_CID}).respond_with_json(
        fixture("POST_v2_orders.mleg_2leg_put_credit_spread.200.json"))

    with pytest.raises(AmbiguousOrderState):
        broker.submit(credit_spread(), NOW)
    found = broker.get_order_by_client_id(PCS_CID)

    assert len(posts(httpserver)) == 1  # 504 is in alpaca-py's default retry list: not here
    assert found is not None
    assert found.broker_order_id == PCS_ID


def test_post_that_times_out_is_ambiguous_then_found(httpserver, broker):
    # The local server answers one request at a time: the POST's handler holds it until the
    # client has given up (timeout_s is 1 s), then lets go, so the lookup is served at once
    # rather than queueing behind a fixed sleep and racing the same 1 s timeout.
    client_gave_up = threading.Event()

    def slow(request: Request) -> Response:
        client_gave_up.wait(10.0)
        return Response(json.dumps(fixture("POST_v2_orders.mleg_2leg_put_credit_spread.200.json")),
                        content_type="application/json")

    httpserver.expect_request("/v2/orders", method="POST").respond_with_handler(slow)
    httpserver.expect_request(BY_CID, query_string={"client_order_id": PCS_CID}).respond_with_json(
        fixture("POST_v2_orders.mleg_2leg_put_credit_spread.200.json"))

    with pytest.raises(AmbiguousOrderState, match="look the order up"):
        broker.submit(credit_spread(), NOW)
    client_gave_up.set()
    found = broker.get_order_by_client_id(PCS_CID)

    assert found is not None
    assert found.client_order_id == PCS_CID
    assert len(posts(httpserver)) == 1


def test_duplicate_client_order_id_is_ambiguous(httpserver, broker):
    httpserver.expect_request("/v2/orders", method="POST").respond_with_json(
        fixture("error.422_client_order_id_not_unique.json"), status=422)

    with pytest.raises(AmbiguousOrderState, match="already has an order"):
        broker.submit(credit_spread(), NOW)


def test_403_insufficient_buying_power_is_rejected_with_message(httpserver, broker):
    httpserver.expect_request("/v2/orders", method="POST").respond_with_json(
        fixture("error.403_insufficient_buying_power.json"), status=403)

    with pytest.raises(OrderRejected, match="insufficient buying power"):
        broker.submit(credit_spread(), NOW)


def test_connection_refused_is_temporary():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    broker = AlpacaBroker(AlpacaSettings(KEY, SECRET), account_name="paper1",
                          url_override=f"http://127.0.0.1:{port}", timeout_s=1.0)

    with pytest.raises(TemporaryError, match="not sent"):
        broker.submit(credit_spread(), NOW)


def test_malformed_json_is_a_data_error(httpserver, broker):
    httpserver.expect_request("/v2/account").respond_with_data(
        '{"cash": "36432.15", "equity":', content_type="application/json")

    with pytest.raises(DataError, match="not JSON"):
        broker.account()


def test_unreadable_answer_to_an_order_is_ambiguous(httpserver, broker):
    httpserver.expect_request("/v2/orders", method="POST").respond_with_data(
        "<html>ok</html>", content_type="application/json")

    with pytest.raises(AmbiguousOrderState):
        broker.submit(credit_spread(), NOW)


# -- fills ------------------------------------------------------------------------------------


def test_partial_fill_then_fill_gives_two_fills_with_stable_ids(httpserver, broker):
    partial = fixture("GET_v2_orders_by_client_order_id.mleg_4leg_partially_filled.200.json")
    filled = copy.deepcopy(partial)
    filled.update(status="filled", filled_qty="2", filled_avg_price="-1.16",
                  filled_at="2026-08-20T14:07:00.000000000Z",
                  updated_at="2026-08-20T14:07:00.100000000Z")
    open_answers = iter([[partial], [], []])

    def orders(request: Request) -> Response:
        # Open orders first; the filled order then shows up only in the status=all listing.
        body = next(open_answers) if request.args["status"] == "open" else [filled]
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/v2/orders", method="GET").respond_with_handler(orders)
    broker.observe_order(fixture("POST_v2_orders.mleg_4leg_iron_condor.200.json"))

    first = broker.poll(NOW)
    second = broker.poll(NOW)
    third = broker.poll(NOW)

    assert [(f.exec_id, f.quantity, f.price) for f in first] == [(f"{IC_ID}:1", 1, 1.15)]
    assert [(f.exec_id, f.quantity, f.price) for f in second] == [(f"{IC_ID}:2", 1, 1.17)]
    assert second[0].time == datetime(2026, 8, 20, 14, 7, tzinfo=UTC)
    assert third == []
    httpserver.expect_request(BY_CID).respond_with_json(filled)
    assert [f.exec_id for f in broker.fills(IC_CID)] == [f"{IC_ID}:1", f"{IC_ID}:2"]
    lists = [req for req, _ in httpserver.log if req.path == "/v2/orders"]
    assert [req.args["status"] for req in lists] == ["open", "open", "all", "open"]
    assert all(req.args.get("nested") in ("true", "True") for req in lists)


def test_restored_fills_keep_the_baseline_after_a_restart(httpserver, broker):
    partial = fixture("GET_v2_orders_by_client_order_id.mleg_4leg_partially_filled.200.json")
    filled = copy.deepcopy(partial)
    filled.update(status="filled", filled_qty="2", filled_avg_price="-1.16")
    httpserver.expect_request(BY_CID).respond_with_json(partial)
    [earlier] = broker.fills(IC_CID)
    restarted = AlpacaBroker(AlpacaSettings(KEY, SECRET), account_name="paper1",
                             url_override=httpserver.url_for("").rstrip("/"), timeout_s=1.0)
    restarted.restore_fills([earlier])
    httpserver.clear()
    httpserver.expect_request(BY_CID).respond_with_json(filled)

    fills = restarted.fills(IC_CID)

    assert [(f.exec_id, f.quantity, f.price) for f in fills] == [
        (f"{IC_ID}:1", 1, 1.15), (f"{IC_ID}:2", 1, 1.17)]


# -- orders, positions, account -----------------------------------------------------------------


def test_cancel_open_order_sends_delete(httpserver, broker):
    partial = fixture("GET_v2_orders_by_client_order_id.mleg_4leg_partially_filled.200.json")
    canceled = fixture("GET_v2_orders_id.mleg_4leg_canceled.200.json")
    answers = iter([partial, canceled])
    httpserver.expect_request(BY_CID).respond_with_handler(
        lambda request: Response(json.dumps(next(answers)), content_type="application/json"))
    httpserver.expect_request(f"/v2/orders/{IC_ID}", method="DELETE").respond_with_data(
        "", status=204)

    order = broker.cancel(IC_CID, NOW)

    assert (order.status, order.filled_quantity) == (OrderStatus.CANCELED, 1)
    assert [req.method for req, _ in httpserver.log] == ["GET", "DELETE", "GET"]


def test_cancel_of_a_filled_order_returns_its_state(httpserver, broker):
    partial = fixture("GET_v2_orders_by_client_order_id.mleg_4leg_partially_filled.200.json")
    filled = copy.deepcopy(partial)
    filled.update(status="filled", filled_qty="2", filled_avg_price="-1.16")
    answers = iter([partial, filled])
    httpserver.expect_request(BY_CID).respond_with_handler(
        lambda request: Response(json.dumps(next(answers)), content_type="application/json"))
    httpserver.expect_request(f"/v2/orders/{IC_ID}", method="DELETE").respond_with_json(
        fixture("error.422_order_not_cancelable.json"), status=422)

    order = broker.cancel(IC_CID, NOW)

    assert order.status is OrderStatus.FILLED


def test_lookup_of_unknown_order_is_none(httpserver, broker):
    httpserver.expect_request(BY_CID).respond_with_json(
        fixture("error.404_order_not_found.json"), status=404)

    assert broker.get_order_by_client_id("td-never-sent") is None


def test_cancel_all_and_close_all(httpserver, broker):
    httpserver.expect_request("/v2/orders", method="DELETE").respond_with_json(
        fixture("DELETE_v2_orders.207.json"), status=207)
    httpserver.expect_request("/v2/positions", method="DELETE").respond_with_json(
        [{"symbol": "SPY", "status": 200, "body": {}}], status=207)

    canceled = broker.cancel_all()
    closed = broker.close_all_positions(cancel_orders=True)

    assert canceled == {"497f6eca-6276-4993-bfeb-53cbbbba6f08": 200,
                        "72249bb6-6c89-4ea7-b8cf-73f1a140812b": 404}
    assert closed == {"SPY": 200}
    close_req = next(req for req, _ in httpserver.log if req.path == "/v2/positions")
    assert close_req.args.get("cancel_orders") in ("true", "True")


def test_positions_short_options_and_shares(httpserver, broker):
    httpserver.expect_request("/v2/positions").respond_with_json(
        fixture("GET_v2_positions.200.json"))

    options = broker.positions()
    shares = broker.share_positions()

    assert BrokerPosition(put(620), -2, 2.43) in options
    assert BrokerPosition(put(615), 2, 1.885) in options
    assert BrokerPosition(call(670), -1, 1.60) in options
    assert len(options) == 4
    assert shares == [SharePosition("SPY", 100, 631.12)]


def test_account_prefers_options_buying_power(httpserver, broker):
    httpserver.expect_request("/v2/account").respond_with_json(fixture("GET_v2_account.200.json"))

    account = broker.account()

    assert (account.cash, account.buying_power, account.equity) == (
        36432.15, 93210.25, 100793.15)


def test_settlements_from_option_activities(httpserver, broker):
    httpserver.expect_request("/v2/account/activities").respond_with_json(
        fixture("GET_v2_account_activities.options.200.json"))

    assigned, expired = broker.settlements()

    req = httpserver.log[0][0]
    assert set(req.args["activity_types"].split(",")) == {"OPEXP", "OPEXC", "OPASN"}
    assert (assigned.kind, assigned.contract, assigned.quantity, assigned.shares) == (
        "assigned", put(620), -1, 100)
    assert assigned.activity_id.endswith("0000000e0001")
    assert (expired.kind, expired.contract, expired.shares) == ("expired", put(615), 0)


def test_status_mapping():
    assert map_order_status("pending_new", 0) is OrderStatus.NEW
    assert map_order_status("pending_cancel", 1) is OrderStatus.PARTIALLY_FILLED
    assert map_order_status("done_for_day", 0) is OrderStatus.NEW
    assert map_order_status("replaced", 0) is OrderStatus.REPLACED
    assert map_order_status("expired", 1) is OrderStatus.EXPIRED
    with pytest.raises(DataError, match="unknown"):
        map_order_status("teleported", 0)


def test_replace_patches_limit_with_alpaca_sign_and_new_client_id(httpserver, broker):
    partial = fixture("GET_v2_orders_by_client_order_id.mleg_4leg_partially_filled.200.json")
    replacement = copy.deepcopy(partial)
    replacement.update(id="00000000-0000-4000-8000-0000000b0009", client_order_id="td-ic-r1",
                       limit_price="-1.10", filled_qty="0", filled_avg_price=None,
                       status="pending_new", replaces=IC_ID, qty="1")
    httpserver.expect_request(BY_CID).respond_with_json(partial)
    httpserver.expect_request(f"/v2/orders/{IC_ID}", method="PATCH").respond_with_json(
        replacement)

    new = broker.replace(IC_CID, "td-ic-r1", NOW, limit_price=1.10)

    assert (new.client_order_id, new.limit_price, new.replaces) == ("td-ic-r1", 1.10, IC_CID)
    body = next(req for req, _ in httpserver.log if req.method == "PATCH").get_json()
    assert body["client_order_id"] == "td-ic-r1"
    assert number(body["limit_price"]) == pytest.approx(-1.10)


# -- the option contracts list ------------------------------------------------------------------


def test_option_contracts_follow_the_page_token_and_carry_open_interest(httpserver, broker):
    page1 = fixture("GET_v2_options_contracts.underlying_symbols_SPY.page1.200.json")
    page2 = fixture("GET_v2_options_contracts.underlying_symbols_SPY.page2.200.json")
    httpserver.expect_ordered_request(
        "/v2/options/contracts", query_string={"underlying_symbols": "SPY", "status": "active",
                                               "expiration_date_gte": "2026-09-01",
                                               "expiration_date_lte": "2026-09-30",
                                               "limit": "10000"}).respond_with_json(page1)
    httpserver.expect_ordered_request("/v2/options/contracts").respond_with_json(page2)

    listed = broker.option_contracts("SPY", expiry_gte=date(2026, 9, 1),
                                     expiry_lte=date(2026, 9, 30))

    by_occ = {row.contract.occ: row for row in listed}
    assert len(listed) == len(page1["option_contracts"]) + len(page2["option_contracts"])
    assert by_occ["SPY260918P00615000"].open_interest == 24117
    assert by_occ["SPY260918P00615000"].open_interest_date == date(2026, 8, 19)
    assert by_occ["SPY260918P00615000"].close_price == 1.80
    assert by_occ["SPY260918P00615000"].tradable
    second = httpserver.log[1][0]
    assert second.args["page_token"] == page1["next_page_token"]


def test_option_contracts_leave_out_unusable_rows_and_reject_a_bad_page(httpserver, broker):
    page = fixture("GET_v2_options_contracts.underlying_symbols_SPY.page2.200.json")
    page["option_contracts"].append({"symbol": "NOT-AN-OCC", "open_interest": "5"})
    httpserver.expect_ordered_request("/v2/options/contracts").respond_with_json(page)
    httpserver.expect_ordered_request("/v2/options/contracts").respond_with_json(
        {"option_contracts": "nope"})

    listed = broker.option_contracts("SPY")

    assert len(listed) == len(page["option_contracts"]) - 1
    with pytest.raises(DataError, match="expected a JSON list"):
        broker.option_contracts("SPY")
