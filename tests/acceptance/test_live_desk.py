"""Acceptance: the desk as ``examples/alpaca-paper.yaml`` builds it (Polygon data, an Alpaca
paper account), driven tick by tick without Ray against a local server that answers like both
vendors (``tests/fakes/vendors.py``). The adapters come from ``thetadesk.wiring`` with the
environment a user would set, so what is checked is what a user would run: the real
polygon-api-client and alpaca-py clients, the symbol and account engines, the risk engine and
a real ledger.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.fakes.vendors import FakeVendors
from thetadesk.account import AccountEngine, AccountRules
from thetadesk.adapters.sim_market import SimMarket, SimSymbol
from thetadesk.chain import NEW_YORK
from thetadesk.config import parse_config
from thetadesk.messages import Severity
from thetadesk.risk.breakers import breaker_limits_from_config
from thetadesk.risk.engine import RiskEngine, limits_from_config
from thetadesk.risk.gate import SnapshotBuilder, portfolio_limits_from_config
from thetadesk.store import Ledger
from thetadesk.symbol import BullPutRules, SymbolEngine
from thetadesk.wiring import build_broker, build_market, dividend_yields_of

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "alpaca-paper.yaml"
T0 = datetime(2026, 8, 20, 10, 30, tzinfo=NEW_YORK)  # a Thursday, inside the entry window


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def vendors(clock):
    market = SimMarket(seed=11, symbols={"SPY": SimSymbol(580.0, 0.16, 0.013, 1.0)},
                       rate=0.04, start=date(2026, 8, 3))
    fake = FakeVendors(market, clock).start()
    yield fake
    fake.stop()


@pytest.fixture
def config():
    data = yaml.safe_load(EXAMPLE.read_text())
    data["market"]["polygon"]["requests_per_minute"] = 10_000  # a paid plan: no waiting here
    data["accounts"][0]["alpaca"]["stream"] = False  # REST polling (the stream has its own tests)
    data["strategy"]["min_iv"] = 0.0
    return parse_config(data, env={})


class Desk:
    """What the supervisor's actors hold for one account and SPY, built the way they build it."""

    def __init__(self, config, vendors: FakeVendors, state: Path, clock: Clock) -> None:
        self.config, self.vendors, self.state, self.clock = config, vendors, state, clock
        self.ledger = Ledger(state / "thetadesk.db")
        env = vendors.env()
        self.market = build_market(config, state_dir=state, env=env)
        account = config.accounts[0]
        self.broker = build_broker(account, self.market, state, env=env,
                                   dividend_yields=dividend_yields_of(config),
                                   recorded_fills=self.ledger.account_fills(account.name))
        self.risk = RiskEngine(self.ledger, limits_from_config(config),
                               portfolio_limits_from_config(config),
                               SnapshotBuilder.from_config(config, self.market),
                               breakers=breaker_limits_from_config(config))
        self.symbol = SymbolEngine("SPY", BullPutRules.from_config(config.strategy), self.market)
        self.account = AccountEngine(AccountRules.from_config(account, config.exits),
                                     self.ledger, self.broker, self.market, self.risk.check,
                                     clock.now)

    def tick(self):
        now = self.clock.now
        self.account.prepare(now)
        intents = ()
        if self.account.entry_symbols():
            intents = self.symbol.tick(now).intents
        return self.account.enter(now, intents)

    def close(self) -> None:
        self.ledger.close()


@pytest.fixture
def make_desk(config, vendors, tmp_path, clock):
    desks = []

    def make() -> Desk:
        desk = Desk(config, vendors, tmp_path, clock)
        desks.append(desk)
        return desk

    yield make
    for desk in desks:
        desk.close()


def test_an_entry_goes_to_alpaca_as_one_multi_leg_order_and_fills_into_the_ledger(
        make_desk, vendors, clock):
    desk = make_desk()
    vendors.fill_on_read = False  # the order works at first

    first = desk.tick()

    (cid,) = first.submitted
    (sent,) = vendors.posted_orders()
    row = desk.ledger.order(cid)
    assert sent["client_order_id"] == cid  # the ledger's deterministic id, written first
    assert sent["order_class"] == "mleg"
    assert sent["type"] == "limit"
    assert [(leg["side"], leg["position_intent"]) for leg in sent["legs"]] == [
        ("sell", "sell_to_open"), ("buy", "buy_to_open")]
    assert float(sent["limit_price"]) == pytest.approx(-row["limit_price"])  # a credit
    assert row["limit_price"] > 0
    # Every chain page and quote came from the Polygon routes, with the key as a bearer token.
    polygon = [r for r in vendors.requests if r["path"].startswith(("/v3/", "/v2/aggs"))]
    assert polygon
    assert all(r["headers"]["Authorization"].startswith("Bearer ")
                           for r in polygon)
    assert len([r for r in polygon if r["args"].get("cursor")]) >= 1  # paged chain
    assert (first.opened, row["status"]) == (0, "new")

    vendors.fill_on_read = True  # it fills; the next tick's poll finds it
    clock.now += timedelta(minutes=5)
    second = desk.tick()

    (position,) = desk.ledger.positions("alpaca_paper")
    assert second.opened == 1
    assert position["quantity"] == row["quantity"]
    assert desk.account.fail_closed is None  # the ledger and Alpaca agree leg by leg
    assert len(vendors.posted_orders()) == 1


def test_a_submission_that_times_out_is_found_by_client_order_id_and_never_resent(
        make_desk, vendors, clock):
    desk = make_desk()
    vendors.fail_next_post = "timeout"  # Alpaca records the order; its reply comes too late
    vendors.timeout_s = desk.config.accounts[0].alpaca.timeout_s + 1.0

    tick = desk.tick()

    (cid,) = tick.submitted
    assert len(vendors.posted_orders()) == 1
    assert desk.ledger.order(cid)["status"] in ("new", "filled")
    lookups = [r for r in vendors.requests if r["path"] == "/v2/orders:by_client_order_id"]
    assert lookups
    assert lookups[0]["args"]["client_order_id"] == cid


def open_a_spread_trade_by_hand_and_restart(make_desk, vendors, clock, external_id):
    """The desk opens a spread; then someone places an order and sells a call by hand in the
    Alpaca app while it is down; it restarts. Returns the new desk and the external order."""
    desk = make_desk()
    desk.tick()
    clock.now += timedelta(minutes=5)
    desk.tick()
    desk.close()
    external = vendors.add_external_order(external_id, "SPY260918P00500000")
    vendors.set_position("SPY260918C00700000", -1, 0.45)  # not in the ledger
    clock.now += timedelta(minutes=5)
    return make_desk(), external


def test_a_restart_reports_an_external_order_and_fails_closed_on_a_position_it_cannot_explain(
        make_desk, vendors, clock):
    restarted, _ = open_a_spread_trade_by_hand_and_restart(make_desk, vendors, clock,
                                                           "manual-by-phone-1")
    tick = restarted.tick()

    kinds = {(a.kind, a.severity) for a in tick.alerts}
    assert ("external_order", Severity.WARNING) in kinds
    assert ("reconciliation_mismatch", Severity.CRITICAL) in kinds
    assert "SPY260918C00700000: ledger 0 vs broker -1" in restarted.account.fail_closed
    assert restarted.account.entry_symbols() == ()  # no new entries; cancels still allowed
    (external,) = restarted.ledger.external_orders("alpaca_paper")
    assert external["client_order_id"] == "manual-by-phone-1"
    assert len(vendors.posted_orders()) == 1  # nothing was sent on the restart


def test_close_all_closes_the_spread_cancels_the_external_order_and_liquidates_the_rest(
        make_desk, vendors, clock):
    desk, external = open_a_spread_trade_by_hand_and_restart(make_desk, vendors, clock,
                                                             "manual-by-phone-2")
    # What /closeall does through the supervisor: halt entries, then close everything.
    desk.risk.halt("alpaca_paper", "telegram:42", clock.now, "close-all from Telegram")
    desk.account.request_close_all(clock.now, "telegram:42")

    alerts = []
    for _ in range(3):
        clock.now += timedelta(minutes=5)
        alerts += desk.tick().alerts

    closing = vendors.posted_orders()[-1]
    assert [leg["position_intent"] for leg in closing["legs"]] == ["buy_to_close",
                                                                    "sell_to_close"]
    assert vendors.orders[external.id].status == "canceled"
    assert desk.ledger.positions("alpaca_paper") == []
    assert vendors.positions == {}
    kinds = [a.kind for a in alerts]
    assert kinds.count("close_all_liquidation") == 1  # the hand-sold call, closed by Alpaca
    assert [r["args"] for r in vendors.requests
            if r["method"] == "DELETE" and r["path"] == "/v2/positions"] == [
        {"cancel_orders": "True"}]
    assert "close_all_done" in kinds
    assert len(vendors.posted_orders()) == 2  # the entry and its close: halted since
