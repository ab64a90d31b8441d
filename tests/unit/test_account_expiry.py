"""Specifications of the account engine at expiry: positions held to the close are closed from
the broker's settlements, assigned shares are booked and closed with a share order, and the
ledger's P&L equals the broker's cash, across a restart too.

The seeded simulated market is a pure function of time, so the tests look up the underlying's
price at the expiry close first and pick strikes that end where each case needs them.
"""

import math
from datetime import datetime, time, timedelta

import pytest

from tests.unit.conftest import MORNING
from thetadesk.account import AccountEngine, AccountRules
from thetadesk.chain import NEW_YORK, expiry_instant
from thetadesk.clock import MarketCalendar
from thetadesk.exits import ExitRules
from thetadesk.messages import Severity, TradeIntent
from thetadesk.models import Contract, Right
from thetadesk.strategies.spreads import bull_put_credit

HOLD = AccountRules("paper", ("SPY", "QQQ"), 1000.0, ExitRules(2.0, 100.0, -1))  # to expiry


def intent_ending(market, expiry, short_itm_by, width=10.0):
    """A bull put on SPY whose short strike ends ``short_itm_by`` dollars (rounded up to the
    strike grid) in the money at the expiry close; the long strike ``width`` lower."""
    settle = market.spot("SPY", expiry_instant(expiry))
    short = math.ceil((settle + short_itm_by) / 5.0) * 5.0
    spread = bull_put_credit(Contract("SPY", expiry, Right.PUT, short),
                             Contract("SPY", expiry, Right.PUT, short - width))
    natural = sum(-leg.ratio * (q.ask if leg.is_long else q.bid)
                  for leg in spread.legs for q in [market.quote(leg.contract, MORNING)])
    limit = math.floor(natural * 100 + 1e-9) / 100
    return TradeIntent(
        intent_id=f"test-{short}", symbol="SPY", spread=spread, limit_price=limit,
        natural_price=natural, max_loss_per_spread=(width - limit) * 100,
        max_profit_per_spread=limit * 100, margin_per_spread=width * 100,
        decided_at=MORNING,
    ), settle


def expiry_of(market):
    return market.chain("SPY", MORNING).nearest_expiry(10)


def hold_to_expiry(make_engine, broker, market, short_itm_by):
    expiry = expiry_of(market)
    intent, settle = intent_ending(market, expiry, short_itm_by)
    engine = make_engine(broker, rules=HOLD)
    tick = engine.tick(MORNING, [intent])
    assert tick.opened == 1, tick
    close = expiry_instant(expiry)
    engine.tick(close - timedelta(minutes=5), [])
    return engine, intent, settle, close


def test_position_expiring_worthless_is_closed_at_zero(make_engine, broker, market, ledger):
    engine, _, _, close = hold_to_expiry(make_engine, broker, market, short_itm_by=-20.0)

    tick = engine.tick(close, [])

    assert tick.closed == 1
    (closed,) = ledger.positions("paper", status="closed")
    assert (closed["exit_reason"], closed["exit_price"]) == ("expired", 0.0)
    assert closed["realized_pnl"] == pytest.approx(broker.account().cash - 100_000.0)
    assert ledger.share_positions("paper") == []
    assert {s["kind"] for s in ledger.settlements("paper")} == {"expired"}
    assert engine.fail_closed is None


def test_assigned_short_put_is_booked_and_the_shares_are_closed(make_engine, broker, market,
                                                                ledger):
    engine, intent, settle, close = hold_to_expiry(make_engine, broker, market,
                                                   short_itm_by=3.0)
    short = intent.spread.legs[0].contract if intent.spread.legs[0].ratio < 0 else (
        intent.spread.legs[1].contract)
    quantity = ledger.positions("paper")[0]["quantity"]

    at_close = engine.tick(close, [])  # the close: settled, the sale waits for the open

    (closed,) = ledger.positions("paper", status="closed")
    assert closed["exit_reason"] == "assigned"
    assert closed["exit_price"] == pytest.approx(-(short.strike - settle))
    (shares,) = ledger.share_positions("paper")
    assert (shares["symbol"], shares["quantity"], shares["avg_price"]) == (
        "SPY", 100 * quantity, settle)
    assert [(s.symbol, s.quantity) for s in broker.share_positions()] == [("SPY", 100 * quantity)]
    assert ("assignment", Severity.WARNING) in {(a.kind, a.severity) for a in at_close.alerts}
    (sale,) = [o for o in ledger.orders("paper") if o["instrument"] == "shares"]
    assert (sale["side"], sale["quantity"], sale["purpose"], sale["status"]) == (
        "sell", 100 * quantity, "close_shares", "new")
    assert broker.get_order_by_client_id(sale["client_order_id"]).time_in_force == "day"
    assert "SPY" in engine._busy_symbols()  # no new SPY entries while shares are held

    session = MarketCalendar().next_session(close.astimezone(NEW_YORK).date()
                                            + timedelta(days=1))
    engine.tick(datetime.combine(session, time(9, 35), NEW_YORK), [])

    assert ledger.order(sale["client_order_id"])["status"] == "filled"
    assert ledger.share_positions("paper") == []
    assert broker.share_positions() == []
    (book,) = ledger.share_positions("paper", open_only=False)
    realized = closed["realized_pnl"] + book["realized_pnl"]
    assert realized == pytest.approx(broker.account().cash - 100_000.0, abs=0.01)
    assert engine.fail_closed is None
    assert sum(1 for _ in ledger.orders("paper")) == 2  # the entry and one sale: nothing re-sent


def test_settlement_missed_by_a_crash_is_booked_on_recovery(make_engine, broker, market, ledger,
                                                            risk):
    _, _, settle, close = hold_to_expiry(make_engine, broker, market, short_itm_by=3.0)
    broker.poll(close)  # the broker settled; the account process died before booking it

    engine = AccountEngine(HOLD, ledger, broker, market, risk.check, close + timedelta(minutes=1))

    assert engine.fail_closed is None  # the shares are explained by the settlement
    (closed,) = ledger.positions("paper", status="closed")
    assert closed["exit_reason"] == "assigned"
    assert ledger.share_positions("paper")[0]["avg_price"] == settle
    again = AccountEngine(HOLD, ledger, broker, market, risk.check, close + timedelta(minutes=2))
    assert len(ledger.settlements("paper")) == 2  # booked once
    assert again.fail_closed is None


def test_unexplained_shares_at_the_broker_fail_the_account_closed(make_engine, broker, ledger,
                                                                  risk, market):
    from thetadesk.models import ShareOrder

    broker.submit(ShareOrder("outside", "paper", "SPY", 10, opening=True), MORNING)

    engine = make_engine(broker)

    assert engine.fail_closed is not None
    assert "SPY shares: ledger 0 vs broker 10" in engine.fail_closed


def test_an_expired_share_sale_is_sent_again(make_engine, broker, market, ledger):
    engine, _, _, close = hold_to_expiry(make_engine, broker, market, short_itm_by=3.0)
    engine.tick(close, [])
    (first,) = [o for o in ledger.orders("paper") if o["instrument"] == "shares"]
    calendar = MarketCalendar()
    session = calendar.next_session(close.astimezone(NEW_YORK).date() + timedelta(days=1))
    after = calendar.session_close(session) + timedelta(hours=1)  # the day order lapsed unfilled

    engine.tick(after, [])

    assert ledger.order(first["client_order_id"])["status"] == "expired"
    sales = [o for o in ledger.orders("paper") if o["instrument"] == "shares"]
    assert [s["status"] for s in sales] == ["expired", "new"]
    assert broker.submission_count(first["client_order_id"]) == 1


def test_ambiguous_share_sale_is_resolved_by_lookup_never_resent(make_engine, broker, market,
                                                                 ledger):
    from tests.unit.test_account import RecordingBroker

    rec = RecordingBroker(broker, ledger)
    engine, _, _, close = hold_to_expiry(make_engine, rec, market, short_itm_by=3.0)
    rec.fail = "after"  # the sale reaches the broker, the reply is lost

    engine.tick(close, [])

    (sale,) = [o for o in ledger.orders("paper") if o["instrument"] == "shares"]
    assert rec.status_at_submit[-1] == "pending_submit"  # written ahead
    assert sale["status"] == "new"  # found by its client order id
    rec.fail = None
    engine.tick(close + timedelta(minutes=5), [])
    assert broker.submission_count(sale["client_order_id"]) == 1
    assert len([o for o in ledger.orders("paper") if o["instrument"] == "shares"]) == 1
