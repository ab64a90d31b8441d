"""Contract tests: the real ``polygon-api-client`` SDK, through ``PolygonMarketData``, against a
local server (pytest-httpserver) answering with Polygon's wire format.

The bodies in ``fixtures/polygon`` are copies of the vendor samples (a two-page SPY chain for
the 2026-09-18 expiry, one contract snapshot, daily bars, trades, error bodies). Every test
checks what the server received or what the adapter made of the reply. Time never passes for
real: the budget and the cache run on a fake monotonic clock whose ``sleep`` only records.
"""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs

from tests.fakes.clock import FakeTime
from thetadesk.adapters.polygon import (
    AggregateBar,
    OptionTrade,
    PolygonMarketData,
    PolygonSettings,
)
from thetadesk.chain import expiry_instant
from thetadesk.errors import ConfigError, DataError, TemporaryError
from thetadesk.models import Contract, Quote, Right
from thetadesk.pricing import bsm_greeks, implied_vol

FIXTURES = Path(__file__).parent / "fixtures" / "polygon"
KEY = "pk_TEST_" + "x7Q2" * 6
CHAIN_PATH = "/v3/snapshot/options/SPY"
CURSOR = ("YXA9TzpTUFkyNjA5MThQMDA2MTUwMDAmYXM9JmV4cGlyYXRpb25fZGF0ZT0yMDI2LTA5LTE4JmxpbWl0PTImc29"
          "ydD10aWNrZXI")
# The samples' quotes were last updated at 14:02:10 UTC on Thursday 2026-08-20.
NOW = datetime(2026, 8, 20, 14, 5, tzinfo=UTC)
# DTE 20..40 from New York's 2026-08-20 brackets the 2026-09-18 expiry.
WINDOW = {"expiration_date.gte": "2026-09-09", "expiration_date.lte": "2026-09-29",
          "limit": "250"}


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())



@pytest.fixture
def make_md(httpserver: HTTPServer, fake_time: FakeTime):
    def make(**kwargs) -> PolygonMarketData:
        kwargs.setdefault("requests_per_minute", 100)
        return PolygonMarketData(
            PolygonSettings(KEY), base_url=httpserver.url_for("/"), timeout_s=5,
            clock=fake_time.clock, sleep=fake_time.sleep, **kwargs,
        )
    return make


def serve_chain(httpserver: HTTPServer) -> None:
    httpserver.expect_request(CHAIN_PATH, query_string={"cursor": CURSOR}).respond_with_json(
        load("chain_page2.json"))
    httpserver.expect_request(CHAIN_PATH, query_string=WINDOW).respond_with_json(
        load("chain_page1.json"))


def put_row(strike: int, **quote) -> dict:
    """A copy of the sample's 620 put moved to ``strike``, its quote fields overridden."""
    row = copy.deepcopy(load("chain_page1.json")["results"][1])
    row["details"]["strike_price"] = strike
    row["details"]["ticker"] = f"O:SPY260918P{strike * 1000:08d}"
    row["last_quote"].update(quote)
    return row


def serve_rows(httpserver: HTTPServer, rows: list[dict]) -> None:
    # json.dumps writes float("nan") as NaN, which is what a vendor emitting NaN sends.
    body = json.dumps({"status": "OK", "request_id": "1", "results": rows})
    httpserver.expect_request(CHAIN_PATH).respond_with_data(
        body, content_type="application/json")


# -- settings -------------------------------------------------------------------------------


def test_from_env_names_the_missing_variable():
    with pytest.raises(ConfigError, match="POLYGON_API_KEY"):
        PolygonSettings.from_env({})


def test_settings_keep_the_key_out_of_repr():
    settings = PolygonSettings.from_env({"POLYGON_API_KEY": KEY})
    assert settings.api_key == KEY
    assert KEY not in repr(settings)


# -- chain ----------------------------------------------------------------------------------


def test_chain_follows_the_cursor_and_sends_the_key_as_a_bearer_header(httpserver, make_md):
    serve_chain(httpserver)
    chain = make_md().chain("SPY", NOW, min_dte=20, max_dte=40)

    assert chain.expiries() == [date(2026, 9, 18)]
    assert chain.spot == 645.3
    puts = chain.rows(date(2026, 9, 18), Right.PUT)
    calls = chain.rows(date(2026, 9, 18), Right.CALL)
    assert [r.contract.strike for r in puts] == [615.0, 620.0]
    assert [r.contract.strike for r in calls] == [670.0, 675.0]
    p620 = puts[1]
    assert p620.quote == Quote(2.38, 2.42, 530, 611, datetime(
        2026, 8, 20, 14, 2, 10, 4117, tzinfo=UTC))
    assert (p620.delta, p620.iv, p620.open_interest, p620.volume) == (
        -0.1806, 0.1724, 31904, 3105)

    requests = [req for req, _ in httpserver.log]
    assert len(requests) == 2
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in requests)
    assert dict(requests[0].args) == WINDOW
    # The SDK follows next_url's path and query against our base: only the cursor is sent.
    assert dict(requests[1].args) == {"cursor": CURSOR}


def test_rows_are_rejected_with_counted_reasons_in_one_summary_line(httpserver, make_md):
    good = [put_row(strike) for strike in range(600, 630)]
    no_quote = put_row(580)
    del no_quote["last_quote"]
    bad = [
        no_quote,
        put_row(581, bid=float("nan")),
        put_row(582, bid=2.50, ask=2.40),
        put_row(583, bid=0, ask=0),
        put_row(584, last_updated=1787233600000000000),  # 13:46:40 UTC: 1100 s old, kept
        put_row(585, last_updated=1787220000000000000),  # 10:00 UTC: 4 hours old
    ]
    serve_rows(httpserver, good + bad)
    with capture_logs() as logs:
        chain = make_md(max_quote_age_s=1200).chain("SPY", NOW)

    strikes = [r.contract.strike for r in chain.rows(date(2026, 9, 18))]
    assert strikes == [float(s) for s in range(600, 630)] + [584.0]
    summaries = [e for e in logs if "rejected" in e["event"]]
    assert len(summaries) == 1
    assert summaries[0]["log_level"] == "warning"
    assert summaries[0]["rejected"] == 5
    assert summaries[0]["rows"] == 36
    assert summaries[0]["reasons"] == {"crossed": 1, "missing_field": 1, "not_finite": 1,
                                       "stale": 1, "zero_quote": 1}


def test_a_chain_with_too_many_bad_rows_is_not_traded_on(httpserver, make_md):
    rows = [put_row(600), put_row(605), put_row(610, bid=3.0, ask=2.0),
            put_row(615, last_updated=1787220000000000000)]
    serve_rows(httpserver, rows)
    with pytest.raises(DataError, match=r"2 of 4 rows unusable.*not traded on"):
        make_md(max_reject_fraction=0.2).chain("SPY", NOW)


def test_missing_greeks_are_computed_from_the_mid(httpserver, make_md):
    row = put_row(620)
    del row["greeks"]
    del row["implied_volatility"]
    serve_rows(httpserver, [row])
    chain = make_md(rate=0.04, dividend_yields={"SPY": 0.012}).chain("SPY", NOW)

    (got,) = chain.rows(date(2026, 9, 18), Right.PUT)
    years = (expiry_instant(date(2026, 9, 18)) - NOW).total_seconds() / (365 * 86400)
    vol = float(implied_vol(2.40, 645.3, 620.0, years, 0.04, 0.012, False))
    delta = float(bsm_greeks(645.3, 620.0, years, 0.04, vol, 0.012, False).delta)
    assert -1.0 < got.delta < 0.0
    assert got.delta == pytest.approx(delta, abs=1e-9)
    assert got.iv == pytest.approx(vol, abs=1e-9)
    assert 0.05 < got.iv < 0.5


def test_nan_greeks_count_as_missing_and_are_computed(httpserver, make_md):
    row = put_row(620)
    row["greeks"]["delta"] = float("nan")
    serve_rows(httpserver, [row])
    (got,) = make_md().chain("SPY", NOW).rows(date(2026, 9, 18), Right.PUT)
    assert got.iv == 0.1724  # the vendor's IV is kept and used for the delta
    assert got.delta == pytest.approx(-0.18, abs=0.02)
    assert math.isfinite(got.delta)


def test_spot_falls_back_to_the_last_minute_bar_when_the_snapshot_has_none(
        httpserver, make_md):
    row = put_row(620)
    del row["underlying_asset"]
    serve_rows(httpserver, [row])
    bar_start_ms = int(datetime(2026, 8, 20, 14, 3, tzinfo=UTC).timestamp() * 1000)
    httpserver.expect_request(
        f"/v2/aggs/ticker/SPY/range/1/minute/{int((NOW.timestamp() - 4 * 86400) * 1000)}"
        f"/{int(NOW.timestamp() * 1000)}",
        query_string={"sort": "desc", "limit": "1"},
    ).respond_with_json({"ticker": "SPY", "status": "OK", "resultsCount": 1, "results": [
        {"o": 645.1, "h": 645.4, "l": 645.0, "c": 645.22, "v": 91230, "t": bar_start_ms}]})
    assert make_md().chain("SPY", NOW).spot == 645.22


# -- errors -----------------------------------------------------------------------------------


def test_429_backs_off_through_the_budget_then_succeeds(httpserver, make_md, fake_time):
    httpserver.expect_oneshot_request(CHAIN_PATH).respond_with_json(
        load("error.429_rate_limited.json"), status=429, headers={"Retry-After": "7"})
    serve_chain(httpserver)
    chain = make_md().chain("SPY", NOW, min_dte=20, max_dte=40)

    assert len(chain.rows(date(2026, 9, 18))) == 4
    assert len(httpserver.log) == 3  # the 429, then both pages
    assert fake_time.sleeps == [7.0]


def test_429_that_never_ends_is_a_temporary_error(httpserver, make_md, fake_time):
    httpserver.expect_request(CHAIN_PATH).respond_with_json(
        load("error.429_rate_limited.json"), status=429)
    with pytest.raises(TemporaryError, match="429"):
        make_md(max_rate_limit_retries=2).chain("SPY", NOW)
    assert len(httpserver.log) == 3
    # Two waits between three attempts; the last backoff is left on the budget for whoever
    # asks next.
    assert fake_time.sleeps == [5.0, 10.0]


def test_500_is_a_temporary_error_without_hidden_sdk_retries(httpserver, make_md):
    httpserver.expect_request(CHAIN_PATH).respond_with_data("upstream down", status=500)
    with pytest.raises(TemporaryError, match="server error 500"):
        make_md().chain("SPY", NOW)
    assert len(httpserver.log) == 1


def test_malformed_json_is_a_data_error(httpserver, make_md):
    httpserver.expect_request(CHAIN_PATH).respond_with_data(
        '{"status": "OK", "results": [', content_type="application/json")
    with pytest.raises(DataError, match="not valid JSON"):
        make_md().chain("SPY", NOW)


@pytest.mark.parametrize(("fixture", "status", "says"), [
    ("error.401_unknown_api_key.json", 401, "Unknown API Key"),
    ("error.403_not_authorized_plan.json", 403, "plan doesn't include"),
])
def test_refused_key_or_plan_is_a_config_error(httpserver, make_md, fixture, status, says):
    httpserver.expect_request(CHAIN_PATH).respond_with_json(load(fixture), status=status)
    with pytest.raises(ConfigError, match="POLYGON_API_KEY") as info:
        make_md().chain("SPY", NOW)
    assert says in str(info.value)
    assert KEY not in str(info.value)


# -- budget and cache -------------------------------------------------------------------------


def test_budget_waits_between_pages_and_warns_once(httpserver, make_md, fake_time):
    serve_chain(httpserver)
    md = make_md(requests_per_minute=3, cache_ttl_s=0)
    with capture_logs() as logs:
        md.chain("SPY", NOW, min_dte=20, max_dte=40)  # two requests at t=1000
        fake_time.now += 10
        md.chain("SPY", NOW, min_dte=20, max_dte=40)  # t=1010, then waits 50 s for page 2
        md.chain("SPY", NOW, min_dte=20, max_dte=40)  # t=1060, then waits 10 s for page 2

    assert fake_time.sleeps == [50.0, 10.0]
    assert len(httpserver.log) == 6
    warnings = [e for e in logs if "requests/minute" in e["event"]]
    assert [w["event"] for w in warnings] == [
        "Polygon free tier allows 3 requests/minute; waited 50.0 s for SPY chain; raise "
        "market.polygon.requests_per_minute if your plan allows more",
    ]


def test_cache_answers_repeats_within_the_ttl(httpserver, make_md, fake_time):
    serve_chain(httpserver)
    md = make_md(cache_ttl_s=30)
    first = md.chain("SPY", NOW, min_dte=20, max_dte=40)
    fake_time.now += 29
    assert md.chain("SPY", NOW, min_dte=20, max_dte=40) is first
    assert len(httpserver.log) == 2
    fake_time.now += 2
    assert md.chain("SPY", NOW, min_dte=20, max_dte=40) is not first
    assert len(httpserver.log) == 4


# -- quote, bars, trades ----------------------------------------------------------------------


def test_quote_reads_the_contract_snapshot(httpserver, make_md):
    httpserver.expect_request("/v3/snapshot/options/SPY/O:SPY260918P00620000").respond_with_json(
        load("snapshot_SPY260918P00620000.json"))
    quote = make_md().quote(Contract.from_occ("SPY260918P00620000"), NOW)
    assert (quote.bid, quote.ask, quote.bid_size, quote.ask_size) == (2.38, 2.42, 530, 611)
    assert httpserver.log[0][0].headers["Authorization"] == f"Bearer {KEY}"


def test_a_stale_quote_is_a_data_error(httpserver, make_md):
    httpserver.expect_request("/v3/snapshot/options/SPY/O:SPY260918P00620000").respond_with_json(
        load("snapshot_SPY260918P00620000.json"))
    later = datetime(2026, 8, 20, 15, 0, tzinfo=UTC)
    with pytest.raises(DataError, match="old"):
        make_md(max_quote_age_s=600).quote(Contract.from_occ("SPY260918P00620000"), later)


def test_daily_aggregates(httpserver, make_md):
    start = datetime(2026, 8, 17, 4, tzinfo=UTC)
    end = datetime(2026, 8, 20, 4, tzinfo=UTC)
    httpserver.expect_request(
        f"/v2/aggs/ticker/SPY/range/1/day/{int(start.timestamp() * 1000)}"
        f"/{int(end.timestamp() * 1000)}").respond_with_json(load("aggs_SPY_1_day.json"))
    bars = make_md().aggregates("SPY", 1, "day", start, end)
    assert len(bars) == 3
    assert bars[0] == AggregateBar(datetime(2026, 8, 17, 4, tzinfo=UTC), 641.22, 646.05,
                                   640.18, 644.71, 58231744.0, 643.5892)
    with pytest.raises(DataError, match="timespan"):
        make_md().aggregates("SPY", 1, "week", start, end)


def test_option_trades_stop_paging_at_the_limit(httpserver, make_md):
    httpserver.expect_request("/v3/trades/O:SPY260918P00620000").respond_with_json(
        load("trades_SPY260918P00620000.json"))
    start = datetime(2026, 8, 20, 13, 30, tzinfo=UTC)
    trades = make_md().option_trades(Contract.from_occ("SPY260918P00620000"), start, NOW,
                                     limit=2)
    assert trades[0] == OptionTrade(datetime(2026, 8, 20, 14, 2, 3, 330981, tzinfo=UTC), 2.4,
                                    10, 302, (209,))
    assert len(trades) == 2
    assert len(httpserver.log) == 1  # the sample has a next_url; the limit was reached first
    args = httpserver.log[0][0].args
    assert args["limit"] == "2"
    assert args["timestamp.gte"] == str(int(start.timestamp() * 1e9))
