"""An account's entries checked by the risk gate in one batch (``risk_batch``): the same
outcome as one at a time, each verdict recorded in the transaction that writes its order ahead,
and the broker's answer recorded in one transaction after the submission.

Real parts: a seeded SimMarket, a SimBroker on its own file, the ledger, the risk engine.
"""

import json
from dataclasses import replace

import pytest

from tests.unit.conftest import LIMITS, MORNING, RULES, account_rules, make_market
from thetadesk.account import AccountEngine, entry_order_id
from thetadesk.adapters.sim_broker import SimBroker
from thetadesk.errors import TemporaryError
from thetadesk.messages import RiskVerdict
from thetadesk.risk.engine import RiskEngine
from thetadesk.risk.gate import PortfolioLimits
from thetadesk.risk.limits import RiskLimits
from thetadesk.store import Ledger
from thetadesk.symbol import SymbolEngine


def intents_of(market, *symbols):
    out = []
    for symbol in symbols:
        tick = SymbolEngine(symbol, RULES, market).tick(MORNING)
        assert tick.intents, tick.note
        out.extend(tick.intents)
    return out


class Desk:
    """A ledger, a paper broker and an account engine in ``directory``; ``batch``: the entries
    go to the gate together (recorded by the account), else one at a time."""

    def __init__(self, directory, batch, limits=LIMITS, record=True, **portfolio):
        self.market = make_market()
        self.ledger = Ledger(directory / "thetadesk.db")
        self.broker = SimBroker("paper", self.market, directory / "paper.db",
                                starting_cash=100_000, commission_per_contract=0.65)
        self.risk = RiskEngine(self.ledger, {"paper": limits},
                               {"paper": PortfolioLimits(**portfolio)} if portfolio else None,
                               _builder(self.market) if portfolio else None)
        self.batches: list[list[str]] = []

        def many(requests):
            self.batches.append([r.client_order_id for r in requests])
            return self.risk.check_many(requests, record=False)

        def one(request):  # record=False: the account records what the gate hands back
            return self.risk.check(request, record=record)

        self.engine = AccountEngine(account_rules(), self.ledger, self.broker, self.market,
                                    one, MORNING, risk_batch=many if batch else None)

    def close(self):
        self.broker.close()
        self.ledger.close()


def _builder(market):
    from tests.unit.risk.test_gate import builder

    return builder(market)


@pytest.fixture
def desks(tmp_path):
    made = []

    def make(name, batch, **kw):
        (tmp_path / name).mkdir()
        desk = Desk(tmp_path / name, batch, **kw)
        made.append(desk)
        return desk

    yield make
    for desk in made:
        desk.close()


def outcome(desk):
    orders = sorted((o["client_order_id"], o["status"], o["quantity"])
                    for o in desk.ledger.orders("paper"))
    positions = sorted((p["position_id"], p["quantity"]) for p in desk.ledger.positions("paper"))
    verdicts = sorted((v["client_order_id"], v["approved"], v["check_name"])
                      for v in desk.ledger.verdicts("paper"))
    return orders, positions, verdicts


@pytest.mark.parametrize("limits", [
    {},  # every entry goes
    {"max_total_loss": 1500.0},  # the second entry's max loss is one too many
])
def test_a_batch_gives_the_same_orders_positions_and_verdicts_as_one_at_a_time(desks, limits):
    alone, batch = desks("alone", False, **limits), desks("batch", True, **limits)
    handed = desks("handed", False, record=False, **limits)  # one at a time, account records
    intents = intents_of(alone.market, "SPY", "QQQ")

    a = alone.engine.tick(MORNING, intents)
    b = batch.engine.tick(MORNING, intents)
    h = handed.engine.tick(MORNING, intents)

    assert (b.submitted, b.rejected, b.opened) == (a.submitted, a.rejected, a.opened)
    assert (h.submitted, h.rejected, h.opened) == (a.submitted, a.rejected, a.opened)
    assert outcome(batch) == outcome(alone) == outcome(handed)  # each verdict once
    assert batch.batches == [[entry_order_id("paper", i) for i in intents]]  # one gate call
    if limits:
        assert len(b.rejected) == 1
        assert len(b.submitted) == 1


def test_of_two_intents_for_one_symbol_the_next_is_tried_only_when_the_first_is_refused(desks):
    desk = desks("d", True)
    spy = intents_of(desk.market, "SPY")[0]
    other = replace(spy, intent_id=spy.intent_id + ":alt", profile="alt")  # a second profile
    first, second = entry_order_id("paper", spy), entry_order_id("paper", other)
    assert first != second
    refuse = {first}

    def many(requests):
        desk.batches.append([r.client_order_id for r in requests])
        return [RiskVerdict(False, "test", "refused on purpose") if r.client_order_id in refuse
                else RiskVerdict(True) for r in requests]

    desk.engine.risk_batch = many
    tick = desk.engine.tick(MORNING, [spy, other])

    assert desk.batches == [[first], [second]]  # the second waited for the first's verdict
    assert (tick.rejected, tick.submitted) == ((first,), (second,))

    desk.batches.clear()
    refuse.clear()
    again = desk.engine.tick(MORNING, [spy, other])  # SPY is held now: neither is sent
    assert desk.batches == []
    assert again.submitted == ()


def test_the_verdict_is_written_with_the_order_it_approves(desks, monkeypatch):
    """A crash between the write-ahead and the submission leaves the order and its verdict;
    a write-ahead that fails leaves neither."""
    desk = desks("d", True)
    intent = intents_of(desk.market, "SPY")[0]
    cid = entry_order_id("paper", intent)

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(desk.ledger, "record_intent_and_order", fail)
    with pytest.raises(OSError, match="disk full"):
        desk.engine.tick(MORNING, [intent])
    assert desk.ledger.order(cid) is None
    assert desk.ledger.verdicts() == []

    monkeypatch.undo()
    from thetadesk import failpoints

    def crash(name):
        if name == "account.after_write_ahead":
            raise SystemExit("killed")

    monkeypatch.setattr(failpoints, "hit", crash)
    with pytest.raises(SystemExit):
        desk.engine.tick(MORNING, [intent])
    assert desk.ledger.order(cid)["status"] == "pending_submit"
    assert [(v["client_order_id"], v["approved"]) for v in desk.ledger.verdicts()] == [(cid, 1)]
    assert desk.broker.submission_count(cid) == 0


def test_refused_entries_of_a_batch_are_recorded_by_the_account(desks):
    desk = desks("d", True, limits=RiskLimits(1500, 0, 10_000, 2000))  # no position allowed
    intents = intents_of(desk.market, "SPY", "QQQ")

    tick = desk.engine.tick(MORNING, intents)

    assert tick.submitted == ()
    assert len(tick.rejected) == 2
    assert [(v["approved"], v["check_name"]) for v in desk.ledger.verdicts()] == [
        (0, "max_open_positions"), (0, "max_open_positions")]
    assert desk.ledger.orders("paper") == []


def test_a_broker_that_fails_after_the_submission_leaves_the_order_to_be_resolved(desks,
                                                                                   monkeypatch):
    """The broker's answer and fills are asked for, then recorded together: if asking for the
    fills fails, nothing of the answer is recorded, the order stays pending_submit and the next
    round resolves it by looking it up (never by sending it again)."""
    desk = desks("d", True)
    intent = intents_of(desk.market, "SPY")[0]
    cid = entry_order_id("paper", intent)
    real = desk.broker.fills

    def fills(client_order_id):
        raise TemporaryError("fills: connection reset")

    monkeypatch.setattr(desk.broker, "fills", fills)
    with pytest.raises(TemporaryError):
        desk.engine.tick(MORNING, [intent])
    assert desk.ledger.order(cid)["status"] == "pending_submit"
    assert desk.ledger.positions("paper") == []

    monkeypatch.setattr(desk.broker, "fills", real)
    later = desk.engine.tick(MORNING.replace(minute=5), [])
    assert desk.ledger.order(cid)["status"] == "filled"
    assert [p["position_id"] for p in desk.ledger.positions("paper")] == [cid]
    assert desk.broker.submission_count(cid) == 1
    assert later.opened == 1


def test_an_exit_verdict_handed_back_by_the_gate_is_recorded_once_before_the_close(desks):
    desk = desks("d", True, record=False)
    intent = intents_of(desk.market, "SPY")[0]
    desk.engine.tick(MORNING, [intent])
    desk.engine.rules = account_rules(close_dte=60)  # the time exit: close what is held

    tick = desk.engine.tick(MORNING.replace(minute=5), [])

    assert tick.closed == 1
    rows = desk.ledger.verdicts("paper")
    assert [(r["approved"], json.loads(r["request"])["opening"]) for r in rows] == [
        (1, True), (1, False)]
    closing = [o for o in desk.ledger.orders("paper") if not o["opening"]]
    assert [r["client_order_id"] for r in rows][1] == closing[0]["client_order_id"]


def test_prewarm_quotes_the_book_ahead_and_changes_nothing_the_tick_does(desks):
    """The night's prewarm makes the next round's quotes ahead of it: the ledger and the
    broker are untouched, and the round gives what it gives without it."""
    from datetime import timedelta

    warm, cold = desks("warm", True), desks("cold", True)
    for desk in (warm, cold):
        desk.engine.tick(MORNING, intents_of(desk.market, "SPY", "QQQ"))
    nxt = MORNING + timedelta(days=1, minutes=-90)  # the next session's 9:30
    before = (outcome(warm), warm.broker.account(), len(warm.ledger.verdicts()))

    made = warm.engine.prewarm(nxt)

    assert made == 4  # two spreads, two legs each
    assert (outcome(warm), warm.broker.account(), len(warm.ledger.verdicts())) == before
    a, b = warm.engine.tick(nxt, []), cold.engine.tick(nxt, [])
    assert (a.equity, a.cash, a.closed, a.submitted) == (b.equity, b.cash, b.closed, b.submitted)
    assert outcome(warm) == outcome(cold)
