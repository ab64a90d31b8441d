"""The risk gate's batch of one account's entries (``RiskEngine.check_many``): each request is
checked as if the ones approved before it had been placed, the verdicts are recorded together,
or handed back for the account to record with its orders."""

import json
from dataclasses import replace

from tests.unit.conftest import LIMITS, make_market
from tests.unit.risk.test_gate import builder, hold, request, spy_put_spread
from thetadesk.risk.engine import RiskEngine
from thetadesk.risk.gate import PortfolioLimits
from thetadesk.risk.limits import RiskLimits
from thetadesk.store import verdict_request


def gate(ledger, market, limits=LIMITS, global_limits=None, **own):
    return RiskEngine(ledger, {"paper": limits, "ira": limits},
                      {"paper": PortfolioLimits(**own), "ira": PortfolioLimits(**own)},
                      builder(market), global_limits=global_limits)


def test_a_batch_sees_the_max_loss_of_the_orders_approved_before_it(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    engine = gate(ledger, market, max_total_loss=1000.0)

    verdicts = engine.check_many([request(spread.legs, cid=f"c{i}") for i in range(3)])

    assert [v.approved for v in verdicts] == [True, True, False]
    assert verdicts[2].check == "max_total_loss"
    assert verdicts[2].reason == ("paper: open max loss would be $1,200.00 (now $800.00), the "
                                  "limit is $1,000.00")


def test_a_batch_decides_as_the_same_orders_one_at_a_time_would(tmp_path):
    """The batch's third request against two approved ones equals a lone check against the
    same two held: same verdict, same reason."""
    from thetadesk.store import Ledger

    market = make_market()
    spread = spy_put_spread(market)
    batch_ledger = Ledger(tmp_path / "a.db")
    alone_ledger = Ledger(tmp_path / "b.db")
    try:
        limits = {"max_total_loss": 1000.0, "max_delta_shares": 60.0}
        batch = gate(batch_ledger, market, **limits).check_many(
            [request(spread.legs, cid=f"c{i}") for i in range(3)])
        hold(alone_ledger, spread, 2)  # the first two, held
        alone = gate(alone_ledger, market, **limits).check(request(spread.legs, cid="c2"))
        assert (batch[2].approved, batch[2].check, batch[2].reason) == (
            alone.approved, alone.check, alone.reason)
    finally:
        batch_ledger.close()
        alone_ledger.close()


def test_a_refused_request_does_not_count_against_the_next(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    engine = gate(ledger, market, max_total_loss=1000.0)

    verdicts = engine.check_many([
        request(spread.legs, cid="c0", max_loss=600.0),
        request(spread.legs, cid="c1", max_loss=1600.0),  # beyond the limit per trade
        request(spread.legs, cid="c2", max_loss=400.0),  # 600 + 400: at the limit, not over
    ])

    assert [(v.approved, v.check) for v in verdicts] == [
        (True, None), (False, "max_loss_per_trade"), (True, None)]


def test_buying_power_and_open_positions_count_the_approved_orders_of_the_batch(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    engine = gate(ledger, market, RiskLimits(1500, 2, 10_000, 2000))
    base = replace(request(spread.legs), buying_power=40_000.0, buying_power_needed=12_000.0,
                   open_positions=0)

    verdicts = engine.check_many([replace(base, client_order_id=f"c{i}") for i in range(3)])

    assert [v.approved for v in verdicts] == [True, True, False]
    assert verdicts[2].check == "max_open_positions"
    assert verdicts[2].reason == "paper: 2 positions already open, the limit is 2"
    stored = json.loads(ledger.verdicts("paper")[2]["request"])
    assert (stored["buying_power"], stored["open_positions"]) == (16_000.0, 2)

    more = engine.check_many([replace(base, client_order_id=f"d{i}", buying_power=30_000.0)
                              for i in range(2)])
    assert [v.check for v in more] == [None, "buying_power"]
    assert "needs $12,000.00 of $18,000.00 buying power" in more[1].reason


def test_positions_per_symbol_count_the_batch(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    engine = gate(ledger, market, max_positions_per_symbol=1)

    verdicts = engine.check_many([request(spread.legs, cid="c0"), request(spread.legs, cid="c1")])

    assert [v.check for v in verdicts] == [None, "max_positions_per_symbol"]


def test_the_global_limits_see_the_batch_and_the_other_accounts(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    ledger.open_position(position_id="p-ira", account="ira", symbol="SPY",
                         strategy="bull_put_credit", legs=spread.legs, quantity=1,
                         entry_price=1.0, max_loss_per_spread=400.0, max_profit_per_spread=100.0,
                         commission=0.0, now=request().now)
    engine = gate(ledger, market, global_limits=PortfolioLimits(max_total_loss=1000.0))

    verdicts = engine.check_many([request(spread.legs, cid=f"c{i}") for i in range(2)])

    assert [v.check for v in verdicts] == [None, "global_max_total_loss"]
    assert "(now $800.00)" in verdicts[1].reason  # ira's 400 and the batch's first 400


def test_every_verdict_of_a_batch_is_recorded_in_order(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    engine = gate(ledger, market, max_total_loss=1000.0)

    engine.check_many([request(spread.legs, cid=f"c{i}") for i in range(3)])

    rows = ledger.verdicts("paper")
    assert [(r["client_order_id"], r["approved"]) for r in rows] == [
        ("c0", 1), ("c1", 1), ("c2", 0)]
    assert json.loads(rows[2]["request"])["figures"]["after"]["total_max_loss"] == 1200.0


def test_record_false_writes_nothing_and_hands_back_what_would_be_recorded(tmp_path):
    from thetadesk.store import Ledger

    market = make_market()
    spread = spy_put_spread(market)
    one, two = Ledger(tmp_path / "a.db"), Ledger(tmp_path / "b.db")
    try:
        requests = [request(spread.legs, cid=f"c{i}") for i in range(3)]
        recorded = gate(one, market, max_total_loss=1000.0).check_many(requests)
        handed = gate(two, market, max_total_loss=1000.0).check_many(requests, record=False)

        assert two.verdicts() == []
        assert [replace(v, request=None) for v in handed] == recorded
        assert [v.request for v in handed] == [r["request"] for r in one.verdicts()]
        assert all(v.request is None for v in recorded)
        assert verdict_request(json.loads(handed[0].request)) == handed[0].request
    finally:
        one.close()
        two.close()


def test_an_empty_batch_is_no_verdicts(ledger):
    assert gate(ledger, make_market()).check_many([]) == []
    assert ledger.verdicts() == []
