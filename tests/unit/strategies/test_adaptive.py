"""The adaptive strategy on the simulator: timing, the event blackout, warm-up, the regime and
IV rank behind each structure, the decision's record, and the ledger's regime history."""

import itertools
from datetime import UTC, date, datetime, time

import numpy as np
import pytest
import yaml

from tests.configs import LADDERED_EXITS, adaptive
from thetadesk.adapters.sim_market import SimMarket, SimSymbol
from thetadesk.chain import NEW_YORK
from thetadesk.clock import MarketCalendar
from thetadesk.config import DEFAULT_CONFIG, load_config
from thetadesk.signals.events import EventCalendar
from thetadesk.signals.regime import Regime
from thetadesk.signals.timing import EntryTiming
from thetadesk.store import Ledger
from thetadesk.strategies.adaptive import AdaptiveEngine, AdaptiveRules, RegimeParams
from thetadesk.strategies.selector import structure_for
from thetadesk.strategies.spreads import SpreadKind
from thetadesk.symbol import Profiles, SymbolEngine

RULES = AdaptiveRules(target_dte=35, min_dte=21, short_delta=0.25, width=5.0, min_iv=0.0,
                      min_credit_fraction=0.05, entry_start=time(9, 45),
                      entry_end=time(15, 45))


def market(start=date(2024, 1, 2), seed=7):
    return SimMarket(seed=seed, symbols={"SPY": SimSymbol(580.0, 0.16, 0.013, 5.0)},
                     rate=0.04, start=start)


def utc(*a):
    return datetime(*a, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim():
    return market()


def ny(d, hh=10, mm=30):
    return datetime.combine(d, time(hh, mm), NEW_YORK)


def test_an_intent_follows_from_the_regime_and_iv_rank(sim, tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")
    engine = AdaptiveEngine("SPY", sim, ledger)
    days = MarketCalendar().sessions(date(2025, 1, 2), 60)
    proposals = [engine.propose(ny(d), "default", RULES) for d in days]
    made = [t for t in proposals if t.intents]
    assert len({t.intents[0].spread.kind for t in made}) >= 3, [t.note for t in proposals]
    for tick in proposals:
        if not tick.intents:
            continue
        intent = tick.intents[0]
        ctx = intent.context
        regime = Regime.parse(ctx["regime"])
        rank = float("nan") if ctx["iv_rank"] is None else ctx["iv_rank"]
        assert structure_for(regime, rank)[0] is intent.spread.kind
        assert ctx["chosen"]["kind"] == intent.spread.kind.value
        assert ctx["chosen"]["limit"] == intent.limit_price
        assert all("why" in r for r in ctx["rejected"])
        assert set(ctx["regime_inputs"]) >= {"close", "sma_fast", "sma_slow", "adx",
                                             "vol_percentile", "vol_source"}
        assert ctx["regime_inputs"]["vol_source"] == "iv_percentile"
        surface = ctx["surface"]
        assert surface["expiry"] == ctx["chosen"]["expiry"]
        assert surface["skew_25d"] > 0  # the simulator's puts are richer than its calls
        assert surface["iv_minus_realised"] == pytest.approx(
            surface["atm_iv"] - ctx["realised_vol"], abs=1e-5)
        assert intent.max_loss_per_spread > 0
        assert (intent.limit_price > 0) == intent.spread.kind.is_credit
        assert intent.size_multiplier == 1.0
    history = ledger.regimes("SPY")
    assert len(history) >= 2  # the regime found first, then each change
    last = Regime.parse(made[-1].intents[0].context["regime"])
    assert (history[-1]["trend"], history[-1]["volatility"]) == (last.trend, last.volatility)
    assert all(h["previous"] == f"{g['trend']}/{g['volatility']}"
               for g, h in itertools.pairwise(history))
    ledger.close()


def test_timing_blackouts_and_warm_up_say_why_nothing_is_proposed(sim):
    engine = AdaptiveEngine("SPY", sim)
    assert engine.propose(utc(2025, 2, 12, 17, 0), "default", RULES).note == \
        "outside the entry windows"  # 12:00 New York: the lunch lull
    with_events = AdaptiveRules(**{**{f: getattr(RULES, f) for f in RULES.__slots__},
                                   "events": EventCalendar.from_files()})
    # The FOMC statement of 2025-01-29 at 14:00 New York: no entry that morning.
    tick = engine.propose(utc(2025, 1, 29, 15, 30), "default", with_events)
    assert tick.note.startswith("event blackout: FOMC at 2025-01-29 14:00")
    young = AdaptiveEngine("SPY", market(start=date(2025, 1, 2)))
    note = young.propose(utc(2025, 2, 12, 16, 0), "default", RULES).note
    assert note.startswith("regime warming up: 27 of 50 sessions")  # Jan 9 was closed


def test_regime_parameters_size_and_restrict(sim):
    engine = AdaptiveEngine("SPY", sim)
    for d in MarketCalendar().sessions(date(2025, 1, 2), 30):  # the first day with a trade
        at = ny(d)
        plain = engine.propose(at, "default", RULES)
        if plain.intents:
            break
    assert plain.intents, plain.note
    regime = Regime.parse(plain.intents[0].context["regime"])
    kw = {f: getattr(RULES, f) for f in RULES.__slots__}
    smaller = AdaptiveRules(**{**kw, "regimes": {
        regime.trend.value: RegimeParams(size=0.5), regime.volatility.value:
        RegimeParams(size=0.5, width=10.0, stop_multiple=1.5),
        regime.name: RegimeParams(take_profit=0.4, stop_multiple=1.2)}})
    tick = engine.propose(at, "default", smaller)
    intent = tick.intents[0]
    assert intent.size_multiplier == 0.25  # sizes multiply
    # Exit levels: the most specific key wins (trend, then volatility, then both).
    assert intent.context["exits"] == {"take_profit": 0.4, "stop_multiple": 1.2}
    assert plain.intents[0].context["exits"] == {}
    strikes = intent.spread.strikes
    assert max(strikes) - min(strikes) >= 10.0 - 1e-9
    kind = plain.intents[0].spread.kind
    others = frozenset(SpreadKind) - {kind}
    barred = AdaptiveRules(**{**kw, "regimes": {regime.name: RegimeParams(strategies=others)}})
    assert "not allowed in this regime" in engine.propose(at, "default", barred).note


def test_the_config_builds_adaptive_profiles_for_the_symbol_engine(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(adaptive(yaml.safe_load(DEFAULT_CONFIG.read_text()))))
    cfg = load_config(path)
    profiles = Profiles.from_config(cfg)
    assert profiles.adaptive()
    rules = profiles["default"]
    assert isinstance(rules, AdaptiveRules)
    assert rules.events is not None
    assert rules.timing.windows[0] == (time(10, 0), time(11, 30))
    engine = SymbolEngine("SPY", profiles, market())
    tick = engine.tick(utc(2025, 1, 29, 15, 30))
    assert tick.note.startswith("event blackout")


def test_a_year_the_calendar_does_not_know_is_said_not_assumed_calm(sim):
    engine = AdaptiveEngine("SPY", sim)
    kw = {f: getattr(RULES, f) for f in RULES.__slots__}
    rules = AdaptiveRules(**{**kw, "events": EventCalendar.from_files()})
    assert engine._unknown_events(rules.events, date(2025, 6, 2)) == ()
    assert engine._unknown_events(rules.events, date(2027, 6, 1)) == ("cpi", "jobs")
    assert engine._unknown_events(rules.events, date(2016, 6, 1)) == ("fomc", "cpi", "jobs")
    for d in MarketCalendar().sessions(date(2025, 1, 2), 30):
        tick = engine.propose(ny(d), "default", rules)
        if tick.intents:
            assert tick.intents[0].context["events_unknown"] == []
            break
    else:
        pytest.fail("no intent in 30 sessions")


@pytest.mark.parametrize("working", [False, True])
def test_the_whole_desk_trades_the_adaptive_strategy_after_its_warm_up(tmp_path, working):
    """80 simulated sessions through the lockstep desk: nothing while the regime warms up,
    then intents the accounts size and the risk gate passes, positions managed to a close;
    ``working``: entries as limit ladders from mid, on a paper broker that fills inside the
    spread."""
    import json

    from thetadesk.config import load_config_data, parse_config
    from thetadesk.lockstep import LockstepDesk

    data = load_config_data(DEFAULT_CONFIG)
    adaptive(data)
    data["exits"].update(LADDERED_EXITS)  # positions managed to a close within the run
    if working:
        data["decision"]["timing"]["ladder"] = {"enabled": True, "max_steps": 30}
        data["accounts"][0]["fill_model"]["mid_fill_probability"] = True
    desk = LockstepDesk(parse_config(data, env={}), tmp_path, durable=False)
    try:
        desk.run(80)
        first = MarketCalendar().sessions(desk.config.market.start, 51)[-1]
        intents = desk.ledger._rows("SELECT * FROM intents ORDER BY decided_at")
        assert intents
        assert all(r["decided_at"] >= first.isoformat() for r in intents)
        for r in intents:
            ctx = json.loads(r["context"])
            assert ctx["profile"] == "default"
            assert r["strategy"] == ctx["chosen"]["kind"]
        positions = desk.ledger._rows("SELECT * FROM positions")
        assert positions
        assert any(p["status"] == "closed" for p in positions)
        assert desk.ledger.regimes("SPY")
        assert desk.ledger.regimes("QQQ")
        ladders = desk.ledger.decisions("paper", kind="ladder")
        if working:
            assert {d["status"] for d in ladders} <= {"done", "abandoned"}
            assert any(d["status"] == "done" for d in ladders)
            for p in positions:  # each filled at its own step's price, inside the spread
                (intent,) = [r for r in intents if r["client_order_id"] == p["position_id"]]
                ctx = json.loads(intent["context"])
                assert ctx["ladder"]["natural"] - 1e-9 <= p["entry_price"] <= \
                    ctx["ladder"]["mid"] + 0.01
        else:
            assert ladders == []
    finally:
        desk.close()


def test_a_working_entry_is_priced_on_its_ladder_and_held_to_the_floors_at_its_last_step(sim):
    from thetadesk.account import _Ladder
    from thetadesk.signals.timing import LimitLadder

    engine = AdaptiveEngine("SPY", sim)
    kw = {f: getattr(RULES, f) for f in RULES.__slots__}
    coarse = AdaptiveRules(**{**kw, "ladder": LimitLadder(5, 0.05, 4)})
    for d in MarketCalendar().sessions(date(2025, 1, 2), 40):
        tick = engine.propose(ny(d), "default", coarse)
        if tick.intents and tick.intents[0].spread.kind.is_credit:
            break
    intent = tick.intents[0]
    ladder = _Ladder.parse(intent.context["ladder"])
    assert intent.limit_price == ladder.price(0)  # the account accepts it as its first step
    assert round(intent.limit_price / 0.05, 6) == round(intent.limit_price / 0.05)
    last = ladder.price(4)
    assert intent.max_loss_per_spread == pytest.approx(intent.spread.max_loss(last))
    width = max(intent.spread.strikes) - min(intent.spread.strikes)
    between = (last / width + intent.limit_price / width) / 2  # above the last step's credit
    strict = AdaptiveRules(**{**kw, "ladder": LimitLadder(5, 0.05, 4),
                              "min_credit_fraction": between})
    note = engine.propose(tick.now, "default", strict).note
    assert "below" in note, note


def test_sizes_multiply_up_to_twice_the_budget(sim):
    kw = {f: getattr(RULES, f) for f in RULES.__slots__}
    big = AdaptiveRules(**{**kw, "regimes": {t: RegimeParams(size=2.0)
                                             for t in ("up", "down", "range", "low", "normal",
                                                       "high")}})
    assert big.effective(Regime.parse("up/high")).size == 2.0


def test_every_intent_records_the_timeframes_and_a_required_alignment_filters(sim):
    from thetadesk.signals.history import minute_bars

    engine = AdaptiveEngine("SPY", sim)
    at = None
    for d in MarketCalendar().sessions(date(2025, 1, 2), 40):
        tick = engine.propose(ny(d, 11, 0), "default", RULES)
        if tick.intents and tick.intents[0].spread.kind in (SpreadKind.BULL_PUT_CREDIT,
                                                            SpreadKind.BEAR_CALL_CREDIT,
                                                            SpreadKind.BULL_CALL_DEBIT,
                                                            SpreadKind.BEAR_PUT_DEBIT):
            at = ny(d, 11, 0)
            break
    assert at is not None, "no directional trade in 40 sessions"
    views = tick.intents[0].context["alignment"]
    assert set(views["directions"]) == {"1d", "1h", "5m", "1m"}
    assert -1.0 <= views["score"] <= 1.0
    kind = tick.intents[0].spread.kind
    want = 1.0 if kind in (SpreadKind.BULL_PUT_CREDIT, SpreadKind.BULL_CALL_DEBIT) else -1.0
    kw = {f: getattr(RULES, f) for f in RULES.__slots__}
    loose = AdaptiveRules(**{**kw, "min_alignment": want * views["score"] - 0.01})
    assert engine.propose(at, "default", loose).intents
    strict = AdaptiveRules(**{**kw, "min_alignment": want * views["score"] + 0.01})
    assert "the timeframes do not confirm it" in engine.propose(at, "default", strict).note
    # The minutes are point in time: none after ``at``, today's from the open.
    bars = minute_bars(sim, "SPY", at, MarketCalendar())
    last = np.datetime64(at.astimezone(UTC).replace(tzinfo=None), "s")
    assert bars.end[-1] == last
    assert len(bars.end) == 4 * 390 + 90  # four earlier sessions and 90 minutes of today


class VendorLike:
    """A live-style source over the simulator: chains, quotes and spot, and OHLCV aggregates
    (daily and minute, as Polygon's adapter returns them), but no minute paths and no IV
    history. Minute volume is 1,000 a minute, with a burst of 5,000 a minute from 10:50 to
    10:55 New York on every session."""

    def __init__(self, sim):
        self.sim = sim
        self.cal = MarketCalendar()
        self.calls = []
        self.sim_start = date(2024, 1, 2)  # a vendor has no bars before its data begins

    def chain(self, *a, **k):
        return self.sim.chain(*a, **k)

    def quote(self, *a, **k):
        return self.sim.quote(*a, **k)

    def spot(self, *a, **k):
        return self.sim.spot(*a, **k)

    def aggregates(self, symbol, multiplier, timespan, start, end):
        from datetime import timedelta

        from thetadesk.adapters.polygon import AggregateBar

        self.calls.append(timespan)
        out = []
        d = start.astimezone(NEW_YORK).date()
        while d <= end.astimezone(NEW_YORK).date():
            if self.cal.is_session(d) and d >= self.sim_start:
                path = self.sim.day_path(symbol, d)
                opened = self.cal.session_open(d)
                if timespan == "day":
                    out.append(AggregateBar(datetime.combine(d, time(0), NEW_YORK), path[0],
                                            path.max(), path.min(), path[-1], 1e6))
                else:
                    for i in range(len(path) - 1):
                        t = opened + timedelta(minutes=i)
                        local = t.astimezone(NEW_YORK).time()
                        v = 5000.0 if time(10, 50) <= local < time(10, 55) else 1000.0
                        lo, hi = sorted((path[i], path[i + 1]))
                        out.append(AggregateBar(t, path[i], hi, lo, path[i + 1], v))
            d += timedelta(days=1)
        return [b for b in out if start <= b.start < end]


def test_a_vendor_source_gives_the_history_and_the_volume_confirmation(sim):
    from datetime import timedelta

    vendor = VendorLike(sim)
    engine = AdaptiveEngine("SPY", vendor)
    kw = {f: getattr(RULES, f) for f in RULES.__slots__}
    tick = None
    for d in MarketCalendar().sessions(date(2025, 1, 2), 40):
        tick = engine.propose(ny(d, 10, 56), "default", RULES)
        if tick.intents:
            break
    assert tick.intents, tick.note
    ctx = tick.intents[0].context
    assert ctx["regime_inputs"]["vol_source"] == "realised_vol_percentile"  # no IV history
    assert ctx["iv_rank"] is None
    assert ctx["alignment"]["volume_ratio"] == pytest.approx(5.0)  # 10:50-10:55, the burst
    assert vendor.calls.count("day") <= 40  # one daily request per session at most
    at = tick.now
    spike = AdaptiveRules(**{**kw, "timing": EntryTiming(volume_spike=3.0)})
    assert engine.propose(at, "default", spike).intents  # the burst confirms
    later = at + timedelta(minutes=10)  # 11:06: an ordinary bar
    quiet = engine.propose(later, "default", spike)
    assert "below the 3x confirmation" in quiet.note, quiet.note
    # The simulator's own minutes carry no volume: nothing confirms there.
    own = AdaptiveEngine("SPY", sim)
    for d in MarketCalendar().sessions(date(2025, 1, 2), 40):
        if own.propose(ny(d), "default", RULES).intents:
            assert "no volume history" in own.propose(ny(d), "default", spike).note
            break
    else:
        pytest.fail("no simulator trade in 40 sessions")
