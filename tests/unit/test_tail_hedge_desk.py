"""The whole desk (``LockstepDesk``) over the simulator with VIX options through a scheduled
crash (-20% gap, variance x 3^2), with the tail book's puts and VIX calls and gamma scalping of
them on (the delta band off): VIX calls are bought and held into the crash, the scalp trades,
every hedge order carries an approved risk verdict, and the book loses less than unhedged."""

from datetime import date

import pytest
import yaml

from thetadesk.config import DEFAULT_CONFIG, parse_config
from thetadesk.hedging import scalp_book
from thetadesk.lockstep import LockstepDesk
from thetadesk.store import legs_from_json

CRASH = date(2025, 1, 27)  # the 14th session from the default start (2025-01-06)
SESSIONS = 16
HEDGING = {
    "enabled": True, "delta": {"band": 1_000_000},
    "tail": {"premium_fraction": 1.0, "vix_calls": True, "vix_call_share": 0.25},
    "gamma_scalp": {"enabled": True, "band_shares": 50},
}


def _config(hedged: bool):
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["market"]["tick_seconds"] = 900
    data["market"]["sim"]["vix_options"] = True
    data["market"]["sim"]["shocks"] = [
        {"date": CRASH.isoformat(), "gap": -0.20, "vol_multiplier": 3.0}]
    if hedged:
        data["hedging"] = HEDGING
    return parse_config(data, env={})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tail")
    out = {}
    for hedged in (False, True):
        desk = LockstepDesk(_config(hedged), tmp / str(hedged), durable=False)
        try:
            days = {r.session: r for r in desk.run(SESSIONS)}
            out[hedged] = {
                "days": days, "positions": desk.ledger.positions("paper", status=None),
                "orders": desk.ledger.orders("paper"), "verdicts": desk.ledger.verdicts("paper"),
                "decisions": desk.ledger.decisions("paper"),
                "scalp": scalp_book(desk.ledger, "paper", "SPY")}
        finally:
            desk.close()
    return out


def _root(pos):
    return legs_from_json(pos["legs"])[0].contract.underlying


def test_vix_calls_are_bought_and_held_into_the_crash(runs):
    tails = [p for p in runs[True]["positions"] if p["strategy"] == "hedge_tail"]
    calls = [p for p in tails if _root(p) == "VIX"]
    assert calls
    assert any(p["opened_at"] < CRASH.isoformat() for p in calls)
    assert any(_root(p) == "SPY" for p in tails)  # puts with the rest of the budget
    assert all(legs_from_json(p["legs"])[0].contract.is_call for p in calls)


def test_gamma_scalp_trades_shares_in_round_lots(runs):
    scalp = runs[True]["scalp"]
    assert scalp["trades"] >= 1
    orders = [o for o in runs[True]["orders"] if o["purpose"] == "hedge_gamma"]
    assert orders
    assert all(o["quantity"] % 100 == 0 and o["symbol"] == "SPY" for o in orders)
    done = [d for d in runs[True]["decisions"] if d["kind"] == "hedge_gamma"
            and d["status"] == "done"]
    assert done


def test_every_hedge_order_has_an_approved_risk_verdict(runs):
    verdicts = {v["client_order_id"]: v["approved"] for v in runs[True]["verdicts"]}
    hedges = [o for o in runs[True]["orders"] if o["purpose"].startswith("hedge")]
    assert hedges
    assert all(verdicts.get(o["client_order_id"]) for o in hedges)


def test_the_tail_book_loses_less_in_the_crash(runs):
    plain, hedged = runs[False]["days"], runs[True]["days"]
    assert plain[CRASH].day_pnl < -1000
    assert hedged[CRASH].day_pnl > plain[CRASH].day_pnl + 1000
    before = max(d for d in hedged if d < CRASH)
    gain = (hedged[CRASH].hedge_realized + hedged[CRASH].hedge_unrealized
            - hedged[before].hedge_realized - hedged[before].hedge_unrealized)
    assert gain > 1000
