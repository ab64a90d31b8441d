"""Specifications of the symbol engine's first strategy (bull put credit spread)."""

from dataclasses import replace
from datetime import datetime, timedelta

from structlog.testing import capture_logs

from tests.unit.conftest import MORNING, RULES, make_market
from thetadesk.models import Right
from thetadesk.strategies.spreads import SpreadKind
from thetadesk.symbol import SymbolEngine


def test_symbol_engine_proposes_a_bull_put_near_target_delta_and_dte(market):
    tick = SymbolEngine("SPY", RULES, market).tick(MORNING)

    (intent,) = tick.intents
    short, long_ = intent.spread.legs
    assert intent.spread.kind is SpreadKind.BULL_PUT_CREDIT
    assert short.ratio == -1
    assert long_.ratio == 1
    assert short.contract.strike - long_.contract.strike == RULES.width
    assert 21 <= intent.context["dte"] <= 49
    assert abs(abs(intent.context["short_delta"]) - RULES.short_delta) < 0.05
    assert 0 < intent.limit_price <= intent.context["mid_credit"]
    assert intent.max_loss_per_spread == (RULES.width - intent.limit_price) * 100
    assert intent.intent_id == "SPY:bull_put_credit:20250106T1100"


def test_symbol_engine_is_deterministic_across_instances():
    a = SymbolEngine("SPY", RULES, make_market()).tick(MORNING)
    b = SymbolEngine("SPY", RULES, make_market()).tick(MORNING)
    assert a.intents == b.intents


def test_symbol_engine_outside_entry_window_proposes_nothing(market):
    tick = SymbolEngine("SPY", RULES, market).tick(MORNING - timedelta(hours=1, minutes=30))
    assert tick.intents == ()
    assert tick.note == "outside the entry window"


def test_symbol_engine_low_iv_proposes_nothing_and_says_why(market):
    tick = SymbolEngine("SPY", replace(RULES, min_iv=5.0), market).tick(MORNING)

    assert tick.intents == ()
    assert "below the 5.000 minimum" in tick.note


def test_symbol_engine_never_trades_on_nan_or_crossed_quotes():
    clean = SymbolEngine("SPY", RULES, make_market()).tick(MORNING).intents[0]
    picked = {leg.contract for leg in clean.spread.legs}

    def corrupt(contract, now):
        if contract in picked:
            return "nan" if contract.strike == max(c.strike for c in picked) else "crossed"
        return None

    with capture_logs() as logs:
        tick = SymbolEngine("SPY", RULES, make_market(corrupt=corrupt)).tick(MORNING)

    rejected = [e for e in logs if e["event"] == "quote_rejected"]
    assert len(rejected) == 2
    reasons = sorted(e["reason"] for e in rejected)
    assert reasons[0].startswith("crossed quote")
    assert "quote bid must be a finite number" in reasons[1]
    # Whatever it proposes instead (another strike, or nothing if no clean pair is left), it
    # never uses a contract whose quote was bad.
    for intent in tick.intents:
        assert not {leg.contract for leg in intent.spread.legs} & picked
        assert all(leg.contract.right is Right.PUT for leg in intent.spread.legs)


def test_entry_window_is_the_rules_window_in_new_york_time(market):
    engine = SymbolEngine("SPY", RULES, market)
    start = MORNING.replace(hour=RULES.entry_start.hour, minute=RULES.entry_start.minute)
    for now in (MORNING, MORNING - timedelta(hours=1, minutes=30), start,
                start - timedelta(minutes=1)):
        # The engine proposes nothing outside the window, so a caller may skip asking.
        inside = RULES.in_entry_window(now)
        assert inside or engine.tick(now).note == "outside the entry window"
    assert RULES.in_entry_window(MORNING)
    assert not RULES.in_entry_window(MORNING - timedelta(hours=1, minutes=30))


class _WideEngine(SymbolEngine):
    """The engine as it read chains before: every expiry that can be nearest the target."""

    def _chain(self, now, rules=None):
        rules = rules or self.rules
        chain = self.market.chain(self.symbol, now, min_dte=rules.min_dte,
                                  max_dte=2 * rules.target_dte)
        return chain if chain.expiries() else self.market.chain(self.symbol, now)


class _Counting:
    def __init__(self, market, keep=None):
        self.market, self.windows, self.keep = market, [], keep

    def chain(self, symbol, now, min_dte=None, max_dte=None):
        self.windows.append((min_dte, max_dte))
        chain = self.market.chain(symbol, now, min_dte=min_dte, max_dte=max_dte)
        if self.keep is None:
            return chain
        from thetadesk.chain import OptionChain
        rows = [r for e in chain.expiries() if self.keep(e) for r in chain.rows(e)]
        return OptionChain(chain.underlying, chain.spot, chain.as_of, rows, chain.rate,
                           chain.dividend_yield)


def _monthly(expiry):
    return expiry.weekday() == 4 and 15 <= expiry.day <= 21


def test_the_narrow_chain_read_proposes_exactly_what_the_wide_read_did():
    from thetadesk.adapters.replay import HistoricalReplay
    from thetadesk.chain import NEW_YORK

    replay = HistoricalReplay()
    checked = 0
    for keep in (None, _monthly):  # weeklies; then monthlies only (the narrow read misses)
        for rules in (RULES, replace(RULES, target_dte=45, min_dte=30),
                      replace(RULES, target_dte=25, min_dte=21)):
            for day in range(1, 28, 3):
                now = datetime(2016, 3, day, 11, 0, tzinfo=NEW_YORK)
                if now.weekday() >= 5:
                    continue
                narrow = _Counting(replay, keep)
                a = SymbolEngine("SPY", rules, narrow).tick(now)
                b = _WideEngine("SPY", rules, _Counting(replay, keep)).tick(now)
                assert (a.intents, a.note, a.atm_iv) == (b.intents, b.note, b.atm_iv)
                checked += bool(a.intents)
                first = narrow.windows[0]
                assert first == (max(rules.min_dte, rules.target_dte - 3),
                                 rules.target_dte + 3)
    assert checked > 5  # the comparison covered real proposals, not only refusals


def test_symbol_engine_width_pct_is_a_share_of_spot_on_listed_strikes(market):
    rules = replace(RULES, width_pct=1.7, min_credit_fraction=0.0)
    (intent,) = SymbolEngine("SPY", rules, market).tick(MORNING).intents
    short, long_ = intent.spread.legs
    spot = intent.context["spot"]
    width = short.contract.strike - long_.contract.strike
    assert intent.context["width"] == width
    assert abs(width - 0.017 * spot) <= 2.5  # the listed strike nearest it ($5 grid)
    assert intent.max_loss_per_spread == (width - intent.limit_price) * 100


def test_symbol_engine_width_sd_scales_with_the_expected_move(market):
    narrow = SymbolEngine("SPY", replace(RULES, width_sd=0.1, min_credit_fraction=0.0),
                          market).tick(MORNING).intents[0]
    wide = SymbolEngine("SPY", replace(RULES, width_sd=0.4, min_credit_fraction=0.0),
                        market).tick(MORNING).intents[0]
    assert wide.context["width"] > narrow.context["width"] > 0
    c = wide.context
    years = (datetime.fromisoformat(c["expiry"] + "T16:00:00-05:00")
             - MORNING).total_seconds() / (365 * 86400)
    expected = 0.4 * c["spot"] * c["atm_iv"] * years ** 0.5
    assert abs(c["width"] - expected) <= 2.5


def test_symbol_engine_with_a_ladder_starts_at_mid_and_sizes_by_its_last_step(market):
    from thetadesk.signals.timing import LimitLadder

    ladder = LimitLadder(step_minutes=5, tick=0.01, max_steps=4)
    plain = SymbolEngine("SPY", RULES, market).tick(MORNING).intents[0]
    (intent,) = SymbolEngine("SPY", replace(RULES, ladder=ladder), market).tick(
        MORNING).intents
    mid, natural = intent.context["mid_credit"], intent.context["natural_credit"]
    assert intent.limit_price == ladder.start(mid, natural, True)
    assert intent.limit_price > plain.limit_price  # asks for more than natural
    spec = intent.context["ladder"]
    assert (spec["step_minutes"], spec["max_steps"], spec["credit"]) == (5, 4, True)
    worst = ladder.net(mid, natural, 4)
    assert intent.max_loss_per_spread == (5.0 - worst) * 100


def _past_closes(market, day, n):
    from thetadesk.clock import MarketCalendar

    cal = MarketCalendar()
    out, d = [], cal.previous_session(day)
    while len(out) < n:
        out.append(float(market.day_path("SPY", d)[-1]))
        d = cal.previous_session(d)
    return out


def test_symbol_engine_trend_filter_compares_spot_with_the_average_of_past_closes(market):
    at = MORNING + timedelta(days=42)  # six weeks in: 29 sessions of history
    average = sum(_past_closes(market, at.date(), 20)) / 20
    engine = SymbolEngine("SPY", replace(RULES, trend_sma=20), market)

    tick = engine.tick(at)

    if market.spot("SPY", at) >= average:
        (intent,) = tick.intents
        assert intent.context["trend_sma"] == round(average, 4)
        assert intent.context["trend_sessions"] == 20
    else:
        assert tick.intents == ()
        assert "(trend filter)" in tick.note
    assert engine._trend(at, 20, average * 1.01)[1] is None
    assert "below its 20-session average" in engine._trend(at, 20, average * 0.99)[1]


def test_symbol_engine_trend_filter_without_enough_history_does_not_enter(market):
    tick = SymbolEngine("SPY", replace(RULES, trend_sma=200), market).tick(
        MORNING + timedelta(days=7))
    assert tick.intents == ()
    assert "too few for the 200-session trend filter" in tick.note


def _replay():
    from thetadesk.adapters.replay import HistoricalReplay

    return HistoricalReplay({"SPY": 0.1}, rate=0.02, dividend_yield=0.018)


REPLAY_MORNING = datetime(2015, 3, 10, 15, 0, tzinfo=MORNING.tzinfo)  # 11:00 New York


def test_symbol_engine_vrp_rule_enters_only_when_implied_is_rich_against_the_forecast():
    from thetadesk.symbol import VrpRule

    market = _replay()
    loose = SymbolEngine("SPY", replace(RULES, vrp=VrpRule("har", min_ratio=0.2)), market)
    (intent,) = loose.tick(REPLAY_MORNING).intents
    vrp = intent.context["vrp"]
    assert vrp["model"] == "har"
    assert 0.03 < vrp["forecast"] < 1.0
    assert vrp["horizon_sessions"] == -(-intent.context["dte"] * 252 // 365)
    strict = SymbolEngine("SPY", replace(RULES, vrp=VrpRule("har", min_ratio=5.0)), market)
    tick = strict.tick(REPLAY_MORNING)
    assert tick.intents == ()
    assert "below 5x (volatility premium)" in tick.note
    by_points = SymbolEngine("SPY", replace(RULES, vrp=VrpRule(
        "har", min_difference=intent.context["atm_iv"] - vrp["forecast"] + 0.01)), market)
    assert "(volatility premium)" in by_points.tick(REPLAY_MORNING).note


def test_symbol_engine_vrp_rule_without_enough_history_does_not_enter(market):
    from thetadesk.symbol import VrpRule

    tick = SymbolEngine("SPY", replace(RULES, vrp=VrpRule("har", min_ratio=0.5)), market).tick(
        MORNING + timedelta(days=7))
    assert tick.intents == ()
    assert "no har volatility forecast: too little history" in tick.note


def test_vrp_rule_problem_reads_ratio_and_difference():
    from thetadesk.signals.vrp import VolForecast
    from thetadesk.symbol import VrpRule

    f = VolForecast("garch", 0.15, 25, None)
    assert VrpRule("garch", min_ratio=1.2).problem(0.18, f) is None
    assert "1.13x the garch forecast" in VrpRule("garch", min_ratio=1.2).problem(0.17, f)
    assert VrpRule("garch", min_difference=0.02).problem(0.18, f) is None
    assert "+1.0 points over" in VrpRule("garch", min_difference=0.02).problem(0.16, f)
