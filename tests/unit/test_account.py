"""Specifications of the account engine: sizing, the risk gate, write-ahead orders, ambiguous
outcomes resolved by lookup, recovery on start, exits and reconciliation.

Real parts throughout: a seeded SimMarket, a SimBroker on its own SQLite file, the ledger and the
risk engine. The broker is wrapped by a recorder that can fail on purpose.
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from tests.unit.conftest import MORNING, account_rules, make_market
from thetadesk.account import AccountEngine, entry_order_id
from thetadesk.errors import AmbiguousOrderState, TemporaryError
from thetadesk.messages import Severity
from thetadesk.models import OrderRequest
from thetadesk.risk.engine import RiskEngine
from thetadesk.risk.limits import RiskLimits


class RecordingBroker:
    """Delegates to a real broker; records what the ledger said at each submit; can fail
    before sending (nothing lands) or after sending (it landed, the reply is lost)."""

    def __init__(self, inner, ledger):
        self.inner = inner
        self.ledger = ledger
        self.fail: str | None = None
        self.status_at_submit: list[str | None] = []

    def submit(self, order, now):
        row = self.ledger.order(order.client_order_id)
        self.status_at_submit.append(None if row is None else row["status"])
        if self.fail == "before":
            raise TemporaryError("connection reset before the request was sent")
        result = self.inner.submit(order, now)
        if self.fail == "after":
            raise AmbiguousOrderState("read timeout after the request was sent")
        return result

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def rec(broker, ledger):
    return RecordingBroker(broker, ledger)


def test_account_entry_writes_ahead_sizes_by_budget_and_opens_position(rec, make_engine, intent,
                                                                       ledger):
    engine = make_engine(rec)

    tick = engine.tick(MORNING, [intent])

    cid = entry_order_id("paper", intent)
    assert tick.submitted == (cid,)
    assert rec.status_at_submit == ["pending_submit"]  # the ledger knew before the broker did
    order = ledger.order(cid)
    assert order["quantity"] == int(1000 // intent.max_loss_per_spread)
    assert order["status"] == "filled"
    (position,) = ledger.positions("paper")
    assert position["quantity"] == order["quantity"]
    assert position["entry_price"] == pytest.approx(intent.limit_price)
    assert tick.opened == 1
    assert rec.submission_count(cid) == 1


def test_account_same_intent_twice_is_one_order(rec, make_engine, intent, ledger):
    engine = make_engine(rec)
    engine.tick(MORNING, [intent])
    engine.tick(MORNING + timedelta(minutes=5), [intent])

    assert len(ledger.orders("paper")) == 1
    assert rec.submission_count(entry_order_id("paper", intent)) == 1


def test_account_risk_rejection_is_recorded_and_nothing_is_sent(rec, make_engine, intent, ledger):
    strict = RiskEngine(ledger, {"paper": RiskLimits(100.0, 4, 0.0, 2000.0)})
    engine = make_engine(rec, gate=strict.check)

    tick = engine.tick(MORNING, [intent])

    assert tick.submitted == ()
    assert rec.status_at_submit == []
    (verdict,) = ledger.verdicts("paper")
    assert verdict["approved"] == 0
    assert verdict["check_name"] == "max_loss_per_trade"
    assert ledger.orders("paper") == []


def test_account_ambiguous_submit_is_resolved_by_lookup_never_resent(rec, make_engine, intent,
                                                                      ledger):
    engine = make_engine(rec)
    rec.fail = "after"

    tick = engine.tick(MORNING, [intent])

    cid = entry_order_id("paper", intent)
    assert rec.submission_count(cid) == 1
    assert ledger.order(cid)["status"] == "filled"  # learned from the lookup
    assert len(ledger.positions("paper")) == 1
    assert tick.submitted == (cid,)


def test_account_temporary_error_before_sending_marks_order_not_submitted(rec, make_engine,
                                                                          intent, ledger):
    engine = make_engine(rec)
    rec.fail = "before"

    engine.tick(MORNING, [intent])

    cid = entry_order_id("paper", intent)
    assert rec.submission_count(cid) == 0
    assert ledger.order(cid)["status"] == "not_submitted"
    assert ledger.positions("paper") == []


def test_account_recovery_resolves_unknown_outcomes_by_client_order_id(rec, make_engine, intent,
                                                                        ledger, broker):
    # Two crashes' worth of leftovers: one order written ahead but never sent, one sent to the
    # broker (and filled there) whose reply never reached the ledger.
    def write_ahead(cid, decided_at):
        ledger.record_intent_and_order(
            intent_id=f"i-{cid}", account="paper", symbol="SPY", strategy=intent.strategy,
            decided_at=decided_at, context={"max_loss_per_spread": intent.max_loss_per_spread,
                                            "max_profit_per_spread": 1.0},
            client_order_id=cid, position_id=cid, opening=True, purpose="entry",
            legs=intent.spread.legs, quantity=1, limit_price=intent.limit_price, now=MORNING)

    write_ahead("td-never-sent", MORNING)
    write_ahead("td-sent", MORNING + timedelta(seconds=1))
    broker.submit(OrderRequest("td-sent", "paper", intent.spread.legs, 1, intent.limit_price),
                  MORNING)

    make_engine(rec)  # start-up is recovery

    assert ledger.order("td-never-sent")["status"] == "not_submitted"
    assert ledger.order("td-sent")["status"] == "filled"
    assert [p["position_id"] for p in ledger.positions("paper")] == ["td-sent"]
    assert len(ledger.fills(client_order_id="td-sent")) == 1
    assert rec.submission_count("td-never-sent") == 0
    assert rec.submission_count("td-sent") == 1
    assert rec.status_at_submit == []  # recovery never submits


def test_account_time_exit_closes_position_and_books_realized_pnl(rec, make_engine, intent,
                                                                  ledger, broker):
    engine = make_engine(rec)
    engine.tick(MORNING, [intent])
    cash_after_open = broker.account().cash
    expiry = intent.spread.expiry
    late = datetime(expiry.year, expiry.month, expiry.day, 16, 0, tzinfo=UTC) - timedelta(days=3)
    assert late.weekday() == 1  # a Tuesday, 3 days to expiry: inside the 7-day exit

    tick = engine.tick(late, [])

    assert tick.closed == 1
    (closed,) = ledger.positions("paper", status="closed")
    assert closed["exit_reason"] == "time"
    # Realised P&L = the cash the round trip left behind (both commissions included).
    assert closed["realized_pnl"] == pytest.approx(
        broker.account().cash - 100_000.0, abs=0.01)
    assert broker.account().cash != cash_after_open
    assert broker.positions() == []


def test_account_exit_is_skipped_when_a_leg_quote_is_bad(rec, ledger, risk, intent):
    AccountEngine(account_rules(), ledger, rec, make_market(), risk.check, MORNING).tick(
        MORNING, [intent])
    held = {leg.contract for leg in intent.spread.legs}
    bad = make_market(corrupt=lambda c, now: "crossed" if c in held else None)
    engine = AccountEngine(account_rules(close_dte=60), ledger, rec, bad, risk.check, MORNING)

    with capture_logs() as logs:
        tick = engine.tick(MORNING + timedelta(minutes=5), [])

    assert tick.submitted == ()
    assert any(e["event"] == "exit_skipped" and "crossed quote" in e["reason"] for e in logs)
    assert len(ledger.positions("paper")) == 1


def test_account_position_mismatch_fails_closed_with_critical_alert(rec, make_engine, intent,
                                                                    ledger, broker):
    # Someone traded the account behind ThetaDesk's back.
    broker.submit(OrderRequest("external-1", "paper", intent.spread.legs, 1, intent.limit_price),
                  MORNING)

    engine = make_engine(rec)
    tick = engine.tick(MORNING + timedelta(minutes=5), [intent])

    assert engine.fail_closed is not None
    assert "ledger 0 vs broker" in engine.fail_closed
    assert tick.submitted == ()
    assert {(a.kind, a.severity) for a in tick.alerts} == {
        ("reconciliation_mismatch", Severity.CRITICAL),
        ("unknown_fill", Severity.WARNING),  # the external order's fill, reported
    }


def test_account_close_all_closes_every_position_then_clears_with_an_alert(
        rec, make_engine, intent, ledger, market):
    engine = make_engine(rec)
    engine.tick(MORNING, [intent])
    later = MORNING + timedelta(minutes=5)

    open_count = engine.request_close_all(later, by="telegram:42")
    again = engine.request_close_all(later + timedelta(minutes=1), by="someone else")
    tick = engine.tick(later, [intent])

    assert (open_count, again) == (1, 1)
    (closed,) = ledger.positions("paper", status="closed")
    assert closed["exit_reason"] == "close_all"
    close_order = ledger.order(tick.submitted[0])
    assert (close_order["opening"], close_order["purpose"]) == (0, "close_all")
    assert rec.submission_count(entry_order_id("paper", intent)) == 1  # no new entry
    assert [a.kind for a in tick.alerts] == ["close_all_done"]
    assert "telegram:42" in tick.alerts[0].message  # the first request is the one kept
    assert engine.close_all_pending() is None
    assert ledger.get_state("close_all:paper") is None
    assert rec.positions() == []


def test_account_close_all_cancels_a_working_entry_and_survives_a_restart(
        rec, make_engine, intent, ledger):
    # A credit three times the mid: the entry order rests unfilled at the broker.
    greedy = replace(intent, limit_price=round(intent.limit_price * 3, 2))
    make_engine(rec).tick(MORNING, [greedy])
    cid = entry_order_id("paper", greedy)
    assert ledger.order(cid)["status"] == "new"
    make_engine(rec).request_close_all(MORNING, by="telegram:42")

    restarted = make_engine(rec, now=MORNING + timedelta(minutes=5))
    pending = restarted.close_all_pending()
    entry_symbols = restarted.entry_symbols()
    tick = restarted.tick(MORNING + timedelta(minutes=5), [intent])

    assert pending == {"requested_at": MORNING.isoformat(), "by": "telegram:42"}
    assert entry_symbols == ()  # the supervisor asks no symbol while it is pending
    assert ledger.order(cid)["status"] == "canceled"
    assert tick.submitted == ()
    assert [a.kind for a in tick.alerts] == ["close_all_done"]
    assert ledger.get_state("close_all:paper") is None


def test_account_hands_over_what_recovery_found_before_the_first_tick(rec, make_engine, intent,
                                                                     broker):
    broker.submit(OrderRequest("by-hand-0", "paper", intent.spread.legs, 1,
                               round(intent.limit_price * 3, 2)), MORNING)
    engine = make_engine(rec)

    found = engine.take_alerts()
    tick = engine.tick(MORNING, [])

    assert [a.kind for a in found] == ["external_order"]
    assert engine.take_alerts() == ()
    assert tick.alerts == ()  # handed over once: the tick does not report it again


def test_account_adopts_an_external_open_order_reports_it_once_and_closeall_cancels_it(
        rec, make_engine, intent, ledger, broker):
    # Someone placed an order by hand that rests at the broker (a credit three times the mid).
    broker.submit(OrderRequest("by-hand-1", "paper", intent.spread.legs, 1,
                               round(intent.limit_price * 3, 2)), MORNING)

    first = make_engine(rec)
    tick = first.tick(MORNING, [])
    again = make_engine(rec).tick(MORNING + timedelta(minutes=5), [])

    assert [(a.kind, a.severity) for a in tick.alerts] == [("external_order", Severity.WARNING)]
    assert "by-hand-1" in tick.alerts[0].message
    assert again.alerts == ()  # reported once
    (row,) = ledger.external_orders("paper")
    assert (row["client_order_id"], row["status"], row["quantity"]) == ("by-hand-1", "new", 1)
    assert broker.get_order_by_client_id("by-hand-1").status.value == "new"  # left alone

    engine = make_engine(rec)
    engine.request_close_all(MORNING + timedelta(minutes=10), by="telegram:42")
    engine.tick(MORNING + timedelta(minutes=10), [])

    assert broker.get_order_by_client_id("by-hand-1").status.value == "canceled"
    assert ledger.external_orders("paper")[0]["status"] == "canceled"


def test_close_all_on_a_broker_without_a_close_everything_call_names_the_leftovers_and_ends(
        make_engine, intent, broker, ledger):
    # A position the ledger does not hold (opened by hand at the paper broker).
    by_hand = OrderRequest("by-hand-9", "paper", intent.spread.legs, 1,
                           round(intent.limit_price - 0.05, 2))
    broker.submit(by_hand, MORNING)
    engine = make_engine(broker)
    assert not hasattr(broker, "close_all_positions")
    engine.request_close_all(MORNING, by="telegram:42")

    tick = engine.tick(MORNING + timedelta(minutes=5), [])

    kinds = [a.kind for a in tick.alerts]
    assert "close_all_leftovers" in kinds
    assert "close_all_done" in kinds
    assert engine.close_all_pending() is None


@pytest.mark.parametrize("own", [None, {"stop_multiple": 0.01}])
def test_a_positions_own_exit_levels_come_with_its_intent(rec, make_engine, intent, ledger, own):
    """The adaptive strategy's regime parameters ride on the intent (``context["exits"]``)
    and stay with the position: a hair-trigger stop of its own closes it on the next tick,
    where the account's 2x stop leaves the same position open."""
    if own is not None:
        intent = replace(intent, context={**intent.context, "exits": own})
    engine = make_engine(rec)
    engine.tick(MORNING, [intent])
    (position,) = ledger.positions("paper")
    assert position["exit_rules"] == (None if own is None else '{"stop_multiple": 0.01}')
    engine.tick(MORNING + timedelta(minutes=5), [])
    if own is None:
        assert ledger.positions("paper")
    else:
        (closed,) = ledger.positions("paper", status="closed")
        assert closed["exit_reason"] == "stop"


def test_own_take_profit_replaces_the_last_rung_and_drops_rungs_above_it(make_engine, rec):
    from thetadesk.positions import ManageRules

    engine = make_engine(rec)
    engine.rules = replace(engine.rules, manage=ManageRules(take_profit=0.75,
                                                            ladder=(0.25, 0.5)))
    rules = engine._management_of({"exit_rules": '{"take_profit": 0.4, "stop_multiple": 1.5}'})
    assert rules.rungs == (0.25, 0.4)
    assert rules.stop_multiple == 1.5
    assert engine._management_of({"exit_rules": None}) is engine.rules.management


@pytest.mark.parametrize(("size", "quantity"), [(0.5, 0.5), (1.5, 1.5), (3.0, None)])
def test_the_size_multiplier_scales_the_budget_per_trade(rec, make_engine, intent, ledger,
                                                         size, quantity):
    engine = make_engine(rec)
    tick = engine.tick(MORNING, [replace(intent, size_multiplier=size)])
    if quantity is None:  # outside (0, 2]: refused, nothing sent
        assert tick.submitted == ()
        assert ledger.orders("paper") == []
        return
    order = ledger.order(entry_order_id("paper", intent))
    assert order["quantity"] == int(1000 * quantity // intent.max_loss_per_spread)


def _working(intent, max_steps, step_minutes=5):
    """The intent as a working entry: start at mid, a cent nearer natural every 5 minutes."""
    mid, natural = intent.context["mid_credit"], intent.context["natural_credit"]
    spec = {"mid": mid, "natural": natural, "credit": True, "step_minutes": step_minutes,
            "tick": 0.01, "max_steps": max_steps}
    from thetadesk.account import _Ladder

    start = _Ladder.parse(spec).price(0)
    return replace(intent, limit_price=start, context={**intent.context, "ladder": spec}), \
        _Ladder.parse(spec)


def test_a_working_entry_steps_toward_natural_then_cancels(rec, make_engine, intent, ledger):
    working, ladder = _working(intent, max_steps=2)
    assert working.limit_price - intent.limit_price > 0.03  # mid is well above natural here
    engine = make_engine(rec)
    engine.tick(MORNING, [working])
    cid = entry_order_id("paper", working)
    (decision,) = ledger.decisions("paper", kind="ladder")
    assert decision["status"] == "open"
    assert ledger.order(cid)["status"] == "new"  # at mid: resting
    for minutes in (5, 6, 10, 15):  # step 1 at 5 min, nothing new at 6, step 2, then the end
        engine.tick(MORNING + timedelta(minutes=minutes), [])
        working_now = [o for o in ledger.orders("paper") if o["status"] in ("new",
                                                                            "pending_submit")]
        assert len(working_now) <= 1  # never two steps at once
    orders = sorted(ledger.orders("paper"), key=lambda o: o["created_at"])
    assert [o["client_order_id"] for o in orders] == [cid, f"{cid}.1", f"{cid}.2"]
    assert [o["limit_price"] for o in orders] == [ladder.price(k) for k in range(3)]
    assert all(o["status"] == "canceled" for o in orders)
    assert all(o["position_id"] == cid for o in orders)
    assert rec.submission_count(cid) == 1
    (decision,) = ledger.decisions("paper", kind="ladder")
    assert decision["status"] == "abandoned"
    assert "unfilled after 2 steps" in decision["note"]
    assert ledger.positions("paper") == []
    # An entry that is not the ladder's would have timed out; the symbol was busy meanwhile,
    # and is free again now.
    assert engine.entry_symbols() == ("SPY", "QQQ")


def test_a_working_entry_fills_once_it_reaches_natural(rec, make_engine, intent, ledger):
    working, _ = _working(intent, max_steps=200, step_minutes=1)
    engine = make_engine(rec)
    engine.tick(MORNING, [working])
    cid = entry_order_id("paper", working)
    for minutes in range(1, 40):
        engine.tick(MORNING + timedelta(minutes=minutes), [])
        if ledger.decisions("paper", kind="ladder")[0]["status"] != "open":
            break
    (decision,) = ledger.decisions("paper", kind="ladder")
    assert decision["status"] == "done"
    (position,) = ledger.positions("paper")
    assert position["position_id"] == cid
    filled = [o for o in ledger.orders("paper") if o["status"] == "filled"]
    assert len(filled) == 1
    assert position["quantity"] == filled[0]["quantity"]
    assert position["entry_price"] == pytest.approx(filled[0]["limit_price"])
    assert filled[0]["limit_price"] < working.limit_price  # it had to give ground
    assert position["max_loss_per_spread"] == pytest.approx(intent.max_loss_per_spread,
                                                            rel=0.2)


def test_a_restart_between_a_steps_cancel_and_its_next_order_carries_on(
        rec, make_engine, intent, ledger, monkeypatch):
    from thetadesk import failpoints

    working, ladder = _working(intent, max_steps=3)
    engine = make_engine(rec)
    engine.tick(MORNING, [working])
    cid = entry_order_id("paper", working)

    class Killed(BaseException):
        pass

    def die(name):
        if name == "account.ladder_after_cancel":
            raise Killed(name)

    monkeypatch.setattr(failpoints, "hit", die)
    with pytest.raises(Killed):
        engine.tick(MORNING + timedelta(minutes=5), [])
    assert ledger.order(cid)["status"] == "canceled"
    assert ledger.order(f"{cid}.1") is None  # the process died before the next step
    monkeypatch.undo()
    again = make_engine(rec, now=MORNING + timedelta(minutes=7))  # the restart
    assert again.entry_symbols() == ("QQQ",)  # SPY's working entry is still under way
    again.tick(MORNING + timedelta(minutes=7), [])
    step = ledger.order(f"{cid}.1")
    assert step is not None
    assert step["limit_price"] == ladder.price(1)
    assert rec.submission_count(f"{cid}.1") == 1
    again.tick(MORNING + timedelta(minutes=8), [])
    assert rec.submission_count(f"{cid}.1") == 1  # never sent twice


def test_an_unusable_ladder_is_a_rejected_intent(rec, make_engine, intent, ledger):
    working, _ = _working(intent, max_steps=2)
    bad = replace(working, context={**working.context, "ladder": {"mid": "x"}})
    off = replace(working, limit_price=working.limit_price - 0.05)
    engine = make_engine(rec)
    with capture_logs() as logs:
        engine.tick(MORNING, [bad])
        engine.tick(MORNING + timedelta(minutes=1), [off])
    reasons = [e["reason"] for e in logs if e["event"] == "intent_rejected"]
    assert any("unusable limit ladder" in r for r in reasons)
    assert any("is not its ladder's first step" in r for r in reasons)
    assert ledger.orders("paper") == []


def test_failing_closed_ends_a_working_entry_at_its_next_step(rec, make_engine, intent, ledger):
    working, _ = _working(intent, max_steps=5)
    engine = make_engine(rec)
    engine.tick(MORNING, [working])
    cid = entry_order_id("paper", working)
    engine.fail_closed = "reconciliation failed"  # as a position mismatch would
    engine.tick(MORNING + timedelta(minutes=5), [])
    assert ledger.order(cid)["status"] == "canceled"
    assert ledger.order(f"{cid}.1") is None  # no new risk while failing closed
    (decision,) = ledger.decisions("paper", kind="ladder")
    assert decision["status"] == "abandoned"
    assert "entries halted" in decision["note"]


def test_a_broker_refusing_the_cancel_stops_the_ladder_with_an_alert(rec, make_engine, intent,
                                                                     ledger, monkeypatch):
    from thetadesk.errors import OrderRejected

    working, _ = _working(intent, max_steps=5)
    engine = make_engine(rec)
    engine.tick(MORNING, [working])

    def refuse(cid, now):
        raise OrderRejected(f"order {cid} not found")

    monkeypatch.setattr(rec.inner, "cancel", refuse)
    tick = engine.tick(MORNING + timedelta(minutes=5), [])  # does not raise: exits go on
    (decision,) = ledger.decisions("paper", kind="ladder")
    assert decision["status"] == "abandoned"
    assert "not found" in decision["note"]
    assert [a.kind for a in tick.alerts] == ["ladder_stopped"]


def test_a_step_after_a_partial_fill_adds_to_the_position(tmp_path, market, ledger, risk,
                                                         intent):
    """The rest of a partly filled working entry is an addition to its position: it does not
    count as another open position at the gate nor in the book's positions per symbol."""
    from thetadesk.adapters.sim_broker import FillModel, SimBroker

    requests = []

    def gate(req):
        requests.append(req)
        return risk.check(req)

    broker = SimBroker("paper", market, tmp_path / "partial.db", starting_cash=100_000,
                       commission_per_contract=0.65,
                       fill_model=FillModel(mid_fill_probability=True, max_display_share=0.004))
    risk.limits["paper"] = replace(risk.limits["paper"], max_open_positions=1)
    engine = AccountEngine(account_rules(max_risk=1500.0), ledger, broker, market, gate, MORNING)
    working, _ = _working(intent, max_steps=60, step_minutes=1)
    engine.tick(MORNING, [working])
    cid = entry_order_id("paper", working)
    assert ledger.decisions("paper", kind="ladder"), [v["reason"] for v in
                                                      ledger.verdicts("paper")]
    for minutes in range(1, 60):
        engine.tick(MORNING + timedelta(minutes=minutes), [])
        if ledger.decisions("paper", kind="ladder")[0]["status"] != "open":
            break
    steps = [r for r in requests if r.client_order_id.startswith(f"{cid}.")]
    partial = [o for o in ledger.orders("paper")
               if 0 < (o["filled_quantity"] or 0) < o["quantity"]]
    assert partial  # about one spread of the displayed size fills per poll
    after = [r for r in steps if ledger.position(cid) is not None and r.adds_to == cid]
    assert after, "the steps after the partial fill add to the position"
    assert all(r.open_positions == 0 for r in after)  # the position itself is not counted
    assert not [v for v in ledger.verdicts("paper") if v["check_name"] == "max_open_positions"]
    broker.close()
