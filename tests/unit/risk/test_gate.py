"""Specifications of the portfolio limits at the risk gate: each limit's rejection with its
numbers, the reduce-only exception, fail-closed on bad data, and verdicts recorded with figures.

Real parts: the seeded SimMarket (quotes, spots), the ledger on a temporary file, the engine.
"""

import json
import math
from datetime import timedelta

import pytest

from tests.unit.conftest import LIMITS, MORNING, make_market
from thetadesk.config import DEFAULT_CONFIG, load_config
from thetadesk.messages import RiskRequest
from thetadesk.models import Contract, Leg, Right
from thetadesk.pricing import bsm_price
from thetadesk.risk.engine import RiskEngine
from thetadesk.risk.gate import (
    Exposure,
    PortfolioLimits,
    SnapshotBuilder,
    check_portfolio,
    portfolio_limits_from_config,
)
from thetadesk.strategies.spreads import bull_put_credit

SYMBOLS = {"SPY": (0.16, 0.013), "QQQ": (0.20, 0.006)}


def builder(market=None):
    return SnapshotBuilder(market or make_market(), 0.04, SYMBOLS, 0.85)


def spy_put_spread(market, short_delta_strike_offset=20.0, width=5.0):
    chain = market.chain("SPY", MORNING)
    expiry = chain.nearest_expiry(35)
    spot = market.spot("SPY", MORNING)
    strike = math.floor((spot - short_delta_strike_offset) / 5) * 5
    short = Contract("SPY", expiry, Right.PUT, strike)
    return bull_put_credit(short, Contract("SPY", expiry, Right.PUT, short.strike - width))


def request(legs=(), quantity=1, opening=True, shares=0, symbol="SPY", max_loss=400.0, cid="c1"):
    return RiskRequest(account="paper", client_order_id=cid, intent_id=None, symbol=symbol,
                       opening=opening, quantity=quantity, max_loss=max_loss,
                       buying_power_needed=0.0, buying_power=100_000.0, open_positions=0,
                       now=MORNING, legs=tuple(legs), shares=shares)


def hold(ledger, spread, quantity):
    """An open SPY position "p1" of ``quantity`` spreads, $400 max loss each."""
    ledger.open_position(position_id="p1", account="paper", symbol="SPY",
                         strategy="bull_put_credit", legs=spread.legs, quantity=quantity,
                         entry_price=1.0, max_loss_per_spread=400.0, max_profit_per_spread=100.0,
                         commission=0.0, now=MORNING)


def engine(ledger, market=None, **limits):
    return RiskEngine(ledger, {"paper": LIMITS}, {"paper": PortfolioLimits(**limits)},
                      builder(market))


# -- the pure check ---------------------------------------------------------------------------


def test_each_scalar_limit_names_itself_with_the_numbers():
    before = Exposure(100.0, {"SPY": 1}, {"SPY": 10.0}, {"SPY": 1.0}, 12.0, -50.0, 20.0,
                      100.0, 200.0, 150.0, 260.0)
    after = Exposure(600.0, {"SPY": 2}, {"SPY": 80.0}, {"SPY": 9.0}, 95.0, -300.0, 90.0,
                     500.0, 900.0, 700.0, 1200.0)
    cases = {
        "max_total_loss": (dict(max_total_loss=500.0), "open max loss would be $600.00"),
        "max_positions_per_symbol": (dict(max_positions_per_symbol=1), "1 SPY positions"),
        "max_delta": (dict(max_delta_shares=50.0), "net SPY delta would be +80.0 shares"),
        "max_gamma": (dict(max_gamma_shares=5.0), "net SPY gamma would be +9.0"),
        "max_beta_weighted_delta": (dict(max_beta_weighted_delta=90.0), "+95.0 SPY shares"),
        "max_vega": (dict(max_vega_per_vol_point=250.0), "$-300.00 per vol point"),
        "max_theta": (dict(max_theta_per_day=50.0), "$+90.00 per day"),
        "max_var95": (dict(max_var95=400.0), "1-day 95% VaR would be $500.00 (now $100.00)"),
        "max_var99": (dict(max_var99=800.0), "the limit is $800.00"),
        "max_es95": (dict(max_es95=600.0), "95% ES would be $700.00"),
        "max_es99": (dict(max_es99=1000.0), "99% ES would be $1,200.00"),
    }
    for check, (limits, text) in cases.items():
        rejection = check_portfolio("paper", "SPY", PortfolioLimits(**limits), before, after)
        assert rejection is not None, check
        assert rejection.check == check
        assert text in rejection.reason, (check, rejection.reason)
    assert check_portfolio("paper", "SPY", PortfolioLimits(), before, after) is None


def test_a_trade_that_leaves_a_breached_measure_no_worse_passes():
    breached = Exposure(0.0, {}, {"SPY": 500.0}, {}, None, None, None, 100.0, 3000.0)
    better = Exposure(0.0, {}, {"SPY": 200.0}, {}, None, None, None, 90.0, 2500.0)
    limits = PortfolioLimits(max_delta_shares=100.0, max_var99=1000.0)
    assert check_portfolio("paper", "SPY", limits, breached, better) is None
    worse = Exposure(0.0, {}, {"SPY": 200.0}, {}, None, None, None, 90.0, 3100.0)
    assert check_portfolio("paper", "SPY", limits, breached, worse).check == "max_var99"


# -- the engine on a real ledger and market ---------------------------------------------------


def test_snapshot_prices_each_option_at_its_own_quote():
    market = make_market()
    spread = spy_put_spread(market)
    options = {leg.contract: leg.ratio for leg in spread.legs}
    portfolio = builder(market).build(options, {}, MORNING)
    a = portfolio.arrays()
    model = bsm_price(a.spot[a.underlying], a.strike, a.years, a.rate, a.iv,
                      a.dividend_yield[a.underlying], a.is_call)
    mids = [market.quote(Contract.from_occ(h.symbol), MORNING).mid for h in portfolio.holdings]
    assert list(model) == pytest.approx(mids, abs=1e-9)
    assert set(portfolio.symbols) == {"SPY"}  # the benchmark is always there


def test_var_limit_refuses_a_trade_and_records_the_figures(ledger):
    market = make_market()
    spread = spy_put_spread(market, short_delta_strike_offset=5.0)
    gate = engine(ledger, market, max_var99=50.0)

    verdict = gate.check(request(spread.legs, quantity=5))

    assert (verdict.approved, verdict.check) == (False, "max_var99")
    assert "1-day 99% VaR would be $" in verdict.reason
    (row,) = ledger.verdicts("paper")
    recorded = json.loads(row["request"])
    assert recorded["figures"]["before"]["var99"] == 0.0
    assert recorded["figures"]["after"]["var99"] > 50.0
    assert recorded["legs"] == [f"{leg.ratio:+d} {leg.contract.occ}" for leg in spread.legs]


def test_a_put_bought_against_long_shares_passes_a_breached_delta_limit(ledger):
    market = make_market()
    ledger.apply_shares(account="paper", symbol="SPY", change=200, price=580.0, commission=0.0,
                        now=MORNING)
    gate = engine(ledger, market, max_delta_shares=100.0)
    expiry = market.chain("SPY", MORNING).nearest_expiry(35)
    spot = market.spot("SPY", MORNING)
    put = Contract("SPY", expiry, Right.PUT, round(spot / 5) * 5)
    call = Contract("SPY", expiry, Right.CALL, round(spot / 5) * 5)

    hedge = gate.check(request([Leg(put, 1)], cid="hedge"))
    more = gate.check(request([Leg(call, 1)], cid="more"))
    closing = gate.check(request(shares=-200, opening=False, cid="sell"))

    assert hedge.approved, hedge.reason  # delta falls from 200 toward 150
    assert (more.approved, more.check) == (False, "max_delta")
    assert "net SPY delta would be +2" in more.reason
    assert closing.approved


def test_positions_per_symbol_and_total_loss_count_open_orders(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    ledger.record_intent_and_order(
        intent_id="i1", account="paper", symbol="SPY", strategy="bull_put_credit",
        decided_at=MORNING, context={"max_loss_per_spread": 380.0}, client_order_id="open-1",
        position_id="open-1", opening=True, purpose="entry", legs=spread.legs, quantity=2,
        limit_price=1.2, now=MORNING)
    gate = engine(ledger, market, max_positions_per_symbol=1, max_total_loss=1000.0)

    per_symbol = gate.check(request(spread.legs, max_loss=100.0, cid="c2"))
    total = gate.check(request(spread.legs, symbol="QQQ", max_loss=400.0, cid="c3"))

    assert (per_symbol.approved, per_symbol.check) == (False, "max_positions_per_symbol")
    assert (total.approved, total.check) == (False, "max_total_loss")
    assert "open max loss would be $1,160.00 (now $760.00)" in total.reason


def test_unusable_quote_refuses_an_opening_order(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    bad = make_market(corrupt=lambda c, now: "crossed" if c == spread.legs[0].contract else None)
    verdict = engine(ledger, bad, max_var99=10_000.0).check(request(spread.legs))
    assert (verdict.approved, verdict.check) == (False, "risk_data")
    assert "crossed" in verdict.reason


def test_closing_orders_are_never_measured(ledger):
    gate = RiskEngine(ledger, {"paper": LIMITS}, {"paper": PortfolioLimits(max_var99=1.0)},
                      snapshots=None)
    assert gate.check(request(opening=False)).approved
    opening = gate.check(request(spy_put_spread(make_market()).legs, cid="o"))
    assert (opening.approved, opening.check) == (False, "risk_data")


def test_exposure_of_the_current_book(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    hold(ledger, spread, 3)
    figures = engine(ledger, market).exposure("paper", MORNING + timedelta(minutes=5))
    assert figures.total_max_loss == 1200.0
    assert figures.positions == {"SPY": 1}
    assert figures.delta["SPY"] > 0  # a bull put spread is long delta
    assert figures.es99 >= figures.var99 > 0


def test_default_config_limits_reach_the_gate():
    config = load_config(DEFAULT_CONFIG)
    limits = portfolio_limits_from_config(config)["paper"]
    assert limits.max_var99 == config.accounts[0].risk.max_var99 is not None
    assert limits.needs_measures


def test_the_gate_prices_with_the_accounts_marks_before_asking_the_market(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    marks = tuple((leg.contract.occ, market.quote(leg.contract, MORNING).mid)
                  for leg in spread.legs)
    spots = (("SPY", market.spot("SPY", MORNING)),)
    broken = make_market(corrupt=lambda c, now: "crossed")  # the gate's own copy is unusable
    gate = engine(ledger, broken, max_var99=10_000.0)
    from dataclasses import replace

    with_marks = gate.check(replace(request(spread.legs), marks=marks, spots=spots))
    without = gate.check(request(spread.legs, cid="c2"))

    assert with_marks.approved, with_marks.reason
    assert (without.approved, without.check) == (False, "risk_data")
    recorded = json.loads(ledger.verdicts("paper")[0]["request"])
    assert recorded["marks"] == dict(marks)
    bad = gate.check(replace(request(spread.legs, cid="c3"),
                             marks=((marks[0][0], -1.0), marks[1]), spots=spots))
    assert (bad.approved, bad.check) == (False, "risk_data")
    assert "must be a finite number > 0" in bad.reason


def test_refresh_keeps_each_accounts_latest_figures(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    hold(ledger, spread, 2)
    gate = engine(ledger, market)
    seen = []

    def monte_carlo(portfolio):
        seen.append(len(portfolio.holdings))
        return {"var99": 123.0}

    out = gate.refresh(MORNING, monte_carlo)

    assert seen == [2]
    kept = gate.figures("paper")
    assert kept == out["paper"]
    assert kept["monte_carlo"] == {"var99": 123.0}
    assert kept["total_max_loss"] == 800.0
    assert kept["var99"] > 0
    assert kept["at"] == MORNING.isoformat()


def test_under_a_reducing_breaker_only_orders_the_measures_show_reducing_risk_pass(ledger):
    from tests.unit.risk.test_breakers import BREAKERS, tick

    market = make_market()
    ledger.apply_shares(account="paper", symbol="SPY", change=200, price=580.0, commission=0.0,
                        now=MORNING)
    gate = RiskEngine(ledger, {"paper": LIMITS}, {"paper": PortfolioLimits()}, builder(market),
                      breakers={"paper": BREAKERS})
    alerts = gate.update(MORNING, [tick(-1600.0, now=MORNING)])  # 80% of the daily loss limit
    assert [a.kind for a in alerts] == ["breaker_reducing"]
    expiry = market.chain("SPY", MORNING).nearest_expiry(35)
    strike = round(market.spot("SPY", MORNING) / 5) * 5
    put = Contract("SPY", expiry, Right.PUT, strike)

    protective = gate.check(request([Leg(put, 1)], cid="hedge"))
    more_risk = gate.check(request([Leg(put, -1)], cid="short-put"))

    assert protective.approved, protective.reason  # its VaR and ES fall: measured, not declared
    assert (more_risk.approved, more_risk.check) == (False, "daily_loss")
    assert "reducing" in more_risk.reason


def test_betas_come_from_recorded_closes_once_the_window_is_full(ledger):
    import numpy as np

    from thetadesk.clock import MarketCalendar

    market = make_market()
    gate = RiskEngine(ledger, {"paper": LIMITS}, {"paper": PortfolioLimits()}, builder(market),
                      beta_window=20)
    sessions = MarketCalendar().sessions(MORNING.date() - timedelta(days=40), 21)
    rng = np.random.default_rng(3)
    spy_r = rng.normal(0.0, 0.01, 20)
    qqq_r = 1.3 * spy_r + rng.normal(0.0, 0.002, 20)
    spy = 500.0 * np.exp(np.concatenate([[0.0], np.cumsum(spy_r)]))
    qqq = 400.0 * np.exp(np.concatenate([[0.0], np.cumsum(qqq_r)]))
    for day, a, b in zip(sessions[:-1], spy[:-1], qqq[:-1], strict=True):
        ledger.record_close("SPY", day, float(a))
        ledger.record_close("QQQ", day, float(b))
    assert gate.betas(MORNING) == {}  # 19 returns: not yet

    ledger.record_close("SPY", sessions[-1], float(spy[-1]))
    ledger.record_close("QQQ", sessions[-1], float(qqq[-1]))
    gate._betas = None

    beta = gate.betas(MORNING)["QQQ"]
    expected = np.polyfit(spy_r, qqq_r, 1)[0]
    assert beta == pytest.approx(expected, rel=1e-9)
    assert 1.2 < beta < 1.4


def test_refresh_at_the_close_records_closes_and_the_stress_table(ledger):
    market = make_market()
    spread = spy_put_spread(market)
    hold(ledger, spread, 1)
    close = MORNING.replace(hour=21)  # 16:00 New York
    figures = engine(ledger, market).refresh(close, at_close=True)["paper"]

    assert [d for d, _ in ledger.closes("SPY")] == [close.date()]
    assert ledger.closes("SPY")[0][1] == market.spot("SPY", close)
    table = dict(figures["stress"])
    assert table["spot -20% IV +100%"] < table["spot -5% IV +50%"] < 0
    assert "gap up" in table
