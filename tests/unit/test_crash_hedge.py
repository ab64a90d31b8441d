"""The simulated crash: the default desk trading its credit spreads into a -10% gap with a
volatility spike, once without hedging and once with the hedging actor's delta band and tail
puts, in the same seeded market. The hedged book must lose measurably less."""

import copy
from datetime import date

import pytest
import yaml

from tests.configs import LADDERED_EXITS
from thetadesk.config import DEFAULT_CONFIG, parse_config
from thetadesk.lockstep import LockstepDesk

CRASH = date(2025, 1, 27)  # the 14th session from the default start (2025-01-06)
SESSIONS = 16  # through 2025-01-29
HEDGING = {"enabled": True, "delta": {"band": 50}, "tail": {"premium_fraction": 0.5}}


def _config(hedged: bool):
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["market"]["tick_seconds"] = 900  # 27 ticks a session: the same story, faster
    data["market"]["sim"]["shocks"] = [
        {"date": CRASH.isoformat(), "gap": -0.10, "vol_multiplier": 2.0}]
    data["exits"].update(LADDERED_EXITS)  # the spreads are stopped in the gap
    if hedged:
        data["hedging"] = copy.deepcopy(HEDGING)
    return parse_config(data, env={})


def _run(tmp_path, hedged: bool):
    desk = LockstepDesk(_config(hedged), tmp_path / ("hedged" if hedged else "plain"))
    try:
        days = {r.session: r for r in desk.run(SESSIONS)}
        decisions = desk.ledger.decisions("paper")
    finally:
        desk.close()
    return days, decisions


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash")
    return _run(tmp, hedged=False), _run(tmp, hedged=True)


def test_the_crash_hurts_the_unhedged_book(runs):
    (plain, _), _ = runs
    before = max(d for d in plain if d < CRASH)
    assert plain[before].open_positions > 0  # short put spreads into the gap
    assert plain[CRASH].day_pnl < -500


def test_the_strategies_trade_the_same_with_and_without_hedges(runs):
    (plain, _), (hedged, _) = runs
    assert plain.keys() == hedged.keys()
    # Through the crash: after it the account's drawdown breaker reads the equity hedges
    # included, so the unhedged desk (down about 11% from its peak, past the breaker's warning
    # level) enters nothing while the hedged one may.
    for session in (s for s in plain if s <= CRASH):
        assert hedged[session].strategy_realized == pytest.approx(plain[session].strategy_realized)
        if session < CRASH:  # after the gap the unhedged desk's loss holds its entries back
            assert hedged[session].open_positions == plain[session].open_positions
    assert plain[CRASH].hedge_realized == plain[CRASH].hedge_unrealized == 0.0


def test_the_hedged_book_loses_measurably_less(runs):
    (plain, _), (hedged, _) = runs
    crash_plain, crash_hedged = plain[CRASH].day_pnl, hedged[CRASH].day_pnl
    # At least $1,000 and half the unhedged loss better on the day of the gap ...
    assert crash_hedged > crash_plain + max(1000.0, 0.5 * abs(crash_plain))
    # ... and after it: the hedges' cost before the crash does not undo that.
    last = max(plain)
    assert hedged[last].equity > plain[last].equity + 1000.0


def test_the_gain_is_the_hedge_books(runs):
    _, (hedged, decisions) = runs
    before = max(d for d in hedged if d < CRASH)
    book_gain = (hedged[CRASH].hedge_unrealized + hedged[CRASH].hedge_realized
                 - hedged[before].hedge_unrealized - hedged[before].hedge_realized)
    strategy_change = hedged[CRASH].strategy_realized - hedged[before].strategy_realized
    assert book_gain > 1000.0
    assert strategy_change < 0  # the spreads lost as they did unhedged
    done = [(d["decided_at"][:10], d["kind"]) for d in decisions if d["status"] == "done"]
    assert any(k == "hedge_tail" and at < CRASH.isoformat() for at, k in done)  # held puts
    assert (CRASH.isoformat(), "stop") in done  # the spreads were stopped in the gap
