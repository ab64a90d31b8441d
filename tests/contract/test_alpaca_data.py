"""Contract tests: the real alpaca-py data clients, through ``AlpacaMarketData``, against a
local server (pytest-httpserver) answering with Alpaca's market-data wire format.

``fixtures/alpaca_data/snapshots_page*.json`` are copies of the vendor samples (the SPY
2026-09-18 chain over two pages, ``next_page_token`` "U1BZMjYwOTE4QzAwNjcwMDAw").
``stocks_trades_latest_SPY.json`` has no vendor sample: it follows the documented latest-trades
shape (``{"trades": {symbol: {t, p, s, x, c, i, z}}}``) with the scenario's price. Time never
passes for real: the budget and cache run on a fake monotonic clock.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs

from tests.fakes.clock import FakeTime
from thetadesk.adapters.alpaca_data import AlpacaDataSettings, AlpacaMarketData
from thetadesk.chain import expiry_instant
from thetadesk.errors import ConfigError, DataError, TemporaryError
from thetadesk.models import Contract, Quote, Right
from thetadesk.pricing import bsm_greeks, implied_vol

FIXTURES = Path(__file__).parent / "fixtures" / "alpaca_data"
KEY = "PKTEST" + "Q7X2" * 4
SECRET = "sk" + "Zt9w" * 10
CHAIN_PATH = "/v1beta1/options/snapshots/SPY"
LATEST_TRADE_PATH = "/v2/stocks/trades/latest"
PAGE_TOKEN = "U1BZMjYwOTE4QzAwNjcwMDAw"
NOW = datetime(2026, 8, 20, 14, 5, tzinfo=UTC)
WINDOW = {"expiration_date_gte": "2026-09-09", "expiration_date_lte": "2026-09-29",
          "limit": "1000"}


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())



@pytest.fixture
def make_md(httpserver: HTTPServer, fake_time: FakeTime):
    def make(**kwargs) -> AlpacaMarketData:
        return AlpacaMarketData(
            AlpacaDataSettings(KEY, SECRET), url_override=httpserver.url_for("/"), timeout_s=5,
            trading_url_override=httpserver.url_for("/"),
            clock=fake_time.clock, sleep=fake_time.sleep, **kwargs,
        )
    return make


def serve_spot(httpserver: HTTPServer) -> None:
    httpserver.expect_request(LATEST_TRADE_PATH, query_string={"symbols": "SPY"}
                              ).respond_with_json(load("stocks_trades_latest_SPY.json"))


CONTRACTS_PATH = "/v2/options/contracts"
CONTRACTS = Path(__file__).parent / "fixtures" / "alpaca"


def serve_contracts(httpserver: HTTPServer) -> None:
    """The trading API's contracts list (open interest), as two pages."""
    page1, page2 = (json.loads((CONTRACTS / f"GET_v2_options_contracts.underlying_symbols_SPY"
                                            f".page{n}.200.json").read_text()) for n in (1, 2))
    httpserver.expect_request(CONTRACTS_PATH, query_string={
        "underlying_symbols": "SPY", "status": "active", **WINDOW, "limit": "10000",
        "page_token": page1["next_page_token"]}).respond_with_json(page2)
    httpserver.expect_request(CONTRACTS_PATH).respond_with_json(page1)


def data_requests(httpserver: HTTPServer) -> list:
    return [r for r, _ in httpserver.log if r.path != CONTRACTS_PATH]


def serve_chain(httpserver: HTTPServer) -> None:
    serve_contracts(httpserver)
    httpserver.expect_request(CHAIN_PATH, query_string={**WINDOW, "page_token": PAGE_TOKEN}
                              ).respond_with_json(load("snapshots_page2.json"))
    httpserver.expect_request(CHAIN_PATH, query_string=WINDOW).respond_with_json(
        load("snapshots_page1.json"))
    serve_spot(httpserver)


def put_snapshot(strike: int, **quote) -> tuple[str, dict]:
    snap = copy.deepcopy(load("snapshots_page1.json")["snapshots"]["SPY260918P00620000"])
    snap["latestQuote"].update(quote)
    return f"SPY260918P{strike * 1000:08d}", snap


def serve_snapshots(httpserver: HTTPServer, snaps: list[tuple[str, dict]]) -> None:
    serve_contracts(httpserver)
    body = json.dumps({"snapshots": dict(snaps), "next_page_token": None})
    httpserver.expect_request(CHAIN_PATH).respond_with_data(
        body, content_type="application/json")
    serve_spot(httpserver)


def test_from_env_names_the_missing_variables():
    with pytest.raises(ConfigError, match="ALPACA_API_KEY, ALPACA_SECRET_KEY"):
        AlpacaDataSettings.from_env({})
    with pytest.raises(ConfigError, match="ALPACA_SECRET_KEY"):
        AlpacaDataSettings.from_env({"ALPACA_API_KEY": KEY})
    settings = AlpacaDataSettings.from_env({"ALPACA_API_KEY": KEY, "ALPACA_SECRET_KEY": SECRET})
    assert SECRET not in repr(settings)
    assert KEY not in repr(settings)


def test_chain_follows_the_page_token_and_sends_the_key_headers(httpserver, make_md):
    serve_chain(httpserver)
    chain = make_md().chain("SPY", NOW, min_dte=20, max_dte=40)

    assert chain.spot == 645.3
    assert chain.expiries() == [date(2026, 9, 18)]
    puts = chain.rows(date(2026, 9, 18), Right.PUT)
    assert [r.contract.strike for r in puts] == [615.0, 620.0]
    assert [r.contract.strike for r in chain.rows(date(2026, 9, 18), Right.CALL)] == [
        670.0, 675.0]
    p620 = puts[1]
    assert p620.quote == Quote(2.38, 2.42, 530, 611, datetime(
        2026, 8, 20, 14, 2, 10, 4117, tzinfo=UTC))
    # Open interest from the trading API's contracts list (the snapshots have none).
    assert (p620.delta, p620.iv, p620.open_interest, p620.volume) == (
        -0.1806, 0.1724, 31904, 3105)

    requests = [req for req, _ in httpserver.log]
    assert [r.path for r in requests] == [CHAIN_PATH, CHAIN_PATH, CONTRACTS_PATH,
                                          CONTRACTS_PATH, LATEST_TRADE_PATH]
    for r in requests:
        assert r.headers["APCA-API-KEY-ID"] == KEY
        assert r.headers["APCA-API-SECRET-KEY"] == SECRET
    assert "page_token" not in requests[0].args
    assert requests[1].args["page_token"] == PAGE_TOKEN
    assert requests[3].args["page_token"] == "MTAw"


def test_open_interest_is_fetched_once_for_hours_and_its_failure_spares_the_chain(
        httpserver, make_md, fake_time):
    md = make_md(cache_ttl_s=30)
    serve_chain(httpserver)
    md.chain("SPY", NOW, min_dte=20, max_dte=40)
    fake_time.now += 60  # the chain's cache has expired; open interest's has not
    again = md.chain("SPY", NOW, min_dte=20, max_dte=40)

    assert [r.path for r, _ in httpserver.log].count(CONTRACTS_PATH) == 2  # one window, 2 pages
    assert again.rows(date(2026, 9, 18), Right.PUT)[1].open_interest == 31904

    httpserver.clear()
    fresh = make_md()
    httpserver.expect_request(CONTRACTS_PATH).respond_with_data("down", status=503)
    serve_chain(httpserver)
    with capture_logs() as logs:
        chain = fresh.chain("SPY", NOW, min_dte=20, max_dte=40)
    assert all(r.open_interest is None for r in chain.rows(date(2026, 9, 18)))
    assert any("open interest for SPY unavailable" in e["event"] for e in logs)


def test_rows_are_rejected_with_counted_reasons(httpserver, make_md):
    good = [put_snapshot(s) for s in range(600, 630)]
    no_quote = put_snapshot(580)
    del no_quote[1]["latestQuote"]
    bad = [
        no_quote,
        put_snapshot(581, bp=float("nan")),
        put_snapshot(582, bp=2.5, ap=2.4),
        put_snapshot(583, bp=0, ap=0),
        put_snapshot(585, t="2026-08-20T10:00:00Z"),
    ]
    serve_snapshots(httpserver, good + bad)
    with capture_logs() as logs:
        chain = make_md().chain("SPY", NOW)

    assert len(chain.rows(date(2026, 9, 18))) == 30
    (summary,) = [e for e in logs if "rejected" in e["event"]]
    assert summary["reasons"] == {"crossed": 1, "missing_field": 1, "not_finite": 1,
                                  "stale": 1, "zero_quote": 1}
    assert summary["rows"] == 35


def test_too_many_bad_rows_is_not_traded_on(httpserver, make_md):
    serve_snapshots(httpserver, [put_snapshot(600), put_snapshot(605, bp=3.0, ap=2.0)])
    with pytest.raises(DataError, match=r"1 of 2 rows unusable \(crossed 1\).*not traded on"):
        make_md().chain("SPY", NOW)


def test_missing_greeks_are_computed(httpserver, make_md):
    occ, snap = put_snapshot(620)
    del snap["greeks"]
    del snap["impliedVolatility"]
    serve_snapshots(httpserver, [(occ, snap)])
    (got,) = make_md().chain("SPY", NOW).rows(date(2026, 9, 18), Right.PUT)
    years = (expiry_instant(date(2026, 9, 18)) - NOW).total_seconds() / (365 * 86400)
    vol = float(implied_vol(2.40, 645.3, 620.0, years, 0.0, 0.0, False))
    assert -1.0 < got.delta < 0.0
    assert got.delta == pytest.approx(
        float(bsm_greeks(645.3, 620.0, years, 0.0, vol, 0.0, False).delta), abs=1e-9)


def test_429_backs_off_through_the_budget(httpserver, make_md, fake_time):
    httpserver.expect_oneshot_request(CHAIN_PATH).respond_with_json(
        {"message": "too many requests."}, status=429)
    serve_chain(httpserver)
    chain = make_md().chain("SPY", NOW, min_dte=20, max_dte=40)
    assert len(chain.rows(date(2026, 9, 18))) == 4
    assert fake_time.sleeps == [5.0]  # not alpaca-py's own time.sleep(3)
    assert len(data_requests(httpserver)) == 4


def test_500_is_temporary(httpserver, make_md):
    httpserver.expect_request(CHAIN_PATH).respond_with_data("oops", status=500)
    with pytest.raises(TemporaryError, match="server error 500"):
        make_md().chain("SPY", NOW)
    assert len(httpserver.log) == 1


def test_malformed_json_is_a_data_error(httpserver, make_md):
    httpserver.expect_request(CHAIN_PATH).respond_with_data(
        '{"snapshots": {', content_type="application/json")
    with pytest.raises(DataError, match="not valid JSON"):
        make_md().chain("SPY", NOW)


def test_refused_keys_are_a_config_error(httpserver, make_md):
    httpserver.expect_request(CHAIN_PATH).respond_with_json(
        {"message": "forbidden"}, status=403)
    with pytest.raises(ConfigError, match="ALPACA_API_KEY") as info:
        make_md().chain("SPY", NOW)
    assert SECRET not in str(info.value)


def test_budget_and_cache(httpserver, make_md, fake_time):
    serve_chain(httpserver)
    md = make_md(requests_per_minute=2, cache_ttl_s=30)
    with capture_logs() as logs:
        first = md.chain("SPY", NOW, min_dte=20, max_dte=40)
        again = md.chain("SPY", NOW, min_dte=20, max_dte=40)
    # Two chain pages fill the minute; the spot request waits for the window.
    assert fake_time.sleeps == [60.0]
    assert again is first
    assert len(data_requests(httpserver)) == 3  # the contracts list has its own budget
    (warning,) = [e for e in logs if "requests/minute" in e["event"]]
    assert warning["event"] == (
        "Alpaca market data allows 2 requests/minute; waited 60.0 s for SPY spot; raise "
        "market.alpaca.requests_per_minute if your plan allows more")


def test_quote_narrows_the_chain_to_one_contract(httpserver, make_md):
    occ, snap = put_snapshot(620)
    httpserver.expect_request(CHAIN_PATH, query_string={
        "expiration_date": "2026-09-18", "type": "put", "strike_price_gte": "620.0",
        "strike_price_lte": "620.0", "limit": "1000"}).respond_with_json(
        {"snapshots": {occ: snap}, "next_page_token": None})
    quote = make_md().quote(Contract.from_occ(occ), NOW)
    assert (quote.bid, quote.ask, quote.bid_size, quote.ask_size) == (2.38, 2.42, 530, 611)


def test_a_stale_spot_is_a_data_error(httpserver, make_md):
    serve_spot(httpserver)
    with pytest.raises(DataError, match="old"):
        make_md(max_spot_age_s=60).spot("SPY", NOW)
