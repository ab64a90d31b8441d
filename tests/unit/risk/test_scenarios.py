"""Specifications of stress scenarios: the default set, P&L by full revaluation, configuration."""

import warnings
from datetime import UTC, date, datetime

import numpy as np
import pytest

from thetadesk.chain import contract_arrays
from thetadesk.errors import DataError
from thetadesk.models import Contract
from thetadesk.pricing import bsm_price
from thetadesk.risk.portfolio import Holding, Portfolio, UnderlyingState
from thetadesk.risk.scenarios import (
    DEFAULT_SCENARIOS,
    StressScenario,
    scenarios_from_config,
    stress_table,
)

AS_OF = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)
UNDERLYINGS = {"SPY": UnderlyingState("SPY", 580.0, 0.16, 0.013),
               "QQQ": UnderlyingState("QQQ", 500.0, 0.20, 0.006)}


def make_portfolio(*holdings):
    return Portfolio(AS_OF, 0.04, UNDERLYINGS, holdings, {("SPY", "QQQ"): 0.85})


def by_name(table):
    return dict(table)


def test_default_scenarios_cover_the_grid_gap_up_vol_crush_and_historical_days():
    names = [s.name for s in DEFAULT_SCENARIOS]

    for spot in ("5%", "10%", "20%"):
        for vol in ("50%", "100%"):
            assert f"spot -{spot} IV +{vol}" in names
    for name in ("gap up", "vol crush", "1987-10-19", "2008-10-15", "2020-03-16", "2018-02-05"):
        assert name in names
    assert len(set(names)) == len(names)
    crash = next(s for s in DEFAULT_SCENARIOS if s.name == "1987-10-19")
    assert crash.spot_shock == pytest.approx(-0.2047, abs=1e-4)


def test_spot_minus_10pct_on_100_shares_loses_exactly_10pct_of_notional():
    table = by_name(stress_table(make_portfolio(Holding("SPY", 100))))

    assert table["spot -10% IV +50%"] == pytest.approx(-0.10 * 100 * 580.0, rel=1e-12)
    assert table["spot -10% IV +100%"] == pytest.approx(-5800.0, rel=1e-12)
    assert table["vol crush"] == 0.0
    assert table["gap up"] == pytest.approx(0.03 * 58_000.0, rel=1e-12)


def test_stress_pnl_of_a_short_put_is_its_hand_revaluation():
    symbol = "SPY250321P00560000"
    portfolio = make_portfolio(Holding(symbol, -2, iv=0.18))
    c = Contract.from_occ(symbol)
    _, years, _ = contract_arrays([c], AS_OF)

    def price(spot, iv):
        return float(bsm_price(spot, 560.0, years[0], 0.04, iv, 0.013, False))

    expected = -200 * (price(580.0 * 0.8, 0.18 * 2.0) - price(580.0, 0.18))
    table = by_name(stress_table(portfolio))

    assert table["spot -20% IV +100%"] == pytest.approx(expected, rel=1e-10)
    assert table["spot -20% IV +100%"] < table["spot -10% IV +100%"] < 0
    assert table["vol crush"] > 0  # a short option gains when volatility collapses


def test_per_symbol_shocks_with_a_default_and_beta_scaling():
    portfolio = make_portfolio(Holding("SPY", 100), Holding("QQQ", 100))
    rotation = StressScenario("rotation", {"QQQ": -0.10, "*": 0.02})
    index_drop = StressScenario("index -10%", -0.10)

    table = by_name(stress_table(portfolio, [rotation, index_drop], betas={"SPY": 1.0,
                                                                          "QQQ": 1.5}))

    assert table["rotation"] == pytest.approx(-0.10 * 50_000 + 0.02 * 58_000)
    assert table["index -10%"] == pytest.approx(-0.10 * 58_000 - 0.15 * 50_000)


def test_beta_scaled_shock_beyond_minus_100pct_is_rejected():
    portfolio = make_portfolio(Holding("QQQ", 1))
    with pytest.raises(DataError, match="crash"):
        stress_table(portfolio, [StressScenario("crash", -0.6)], betas={"QQQ": 2.0, "SPY": 1})


def test_stress_after_a_horizon_includes_time_decay():
    portfolio = make_portfolio(Holding("SPY250321P00560000", -1))
    flat = StressScenario("flat", 0.0)

    assert stress_table(portfolio, [flat])[0][1] == pytest.approx(0.0, abs=1e-9)
    assert stress_table(portfolio, [flat], horizon_years=7 / 365)[0][1] > 0


def _sp500_and_vix():
    from arch.data import sp500, vix

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return sp500.load()["Close"], vix.load()["vix"]


@pytest.mark.parametrize(("name", "day"), [("2008-10-15", date(2008, 10, 15)),
                                           ("2018-02-05", date(2018, 2, 5))])
def test_historical_day_spot_shock_is_the_arch_sp500_close_to_close_return(name, day):
    close, _ = _sp500_and_vix()
    returns = close.pct_change()
    scenario = next(s for s in DEFAULT_SCENARIOS if s.name == name)

    assert scenario.spot_shock == pytest.approx(returns.loc[day.isoformat()], abs=1e-6)


def test_2018_02_05_vol_shock_is_the_arch_vix_change():
    _, vix = _sp500_and_vix()
    change = vix.loc["2018-02-05"] / vix.loc["2018-02-02"] - 1.0
    scenario = next(s for s in DEFAULT_SCENARIOS if s.name == "2018-02-05")

    assert scenario.vol_shock == pytest.approx(change, abs=1e-9)


def test_scenarios_from_config_parses_a_mapping_and_a_list():
    mapping = scenarios_from_config({
        "crash": {"spot_shock": -0.25, "vol_shock": 1.5, "description": "bad day"},
        "tech": {"spot_shock": {"QQQ": -0.08}},
    })
    listed = scenarios_from_config([{"name": "crush", "vol_shock": -0.5}])

    assert mapping[0] == StressScenario("crash", -0.25, 1.5, "bad day")
    assert mapping[1].spot_shock == {"QQQ": -0.08}
    assert listed == (StressScenario("crush", 0.0, -0.5),)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"x": {"spot_shock": "-5%"}}, r"'x': spot_shock must be a number"),
        ({"x": {"spot_shock": -1.5}}, r"'x': spot_shock must be finite and > -1"),
        ({"x": {"vol_shock": {"SPY": float("nan")}}}, r"'x': vol_shock\[SPY\]"),
        ({"x": {"vol_shock": {}}}, r"'x': vol_shock mapping is empty"),
        ({"x": {"spot": -0.1}}, r"'x': unknown field 'spot'"),
        ({"x": {}}, r"'x': give spot_shock or vol_shock"),
        ({"x": -0.1}, r"'x' must be a mapping"),
        ({"x": {"spot_shock": True}}, r"spot_shock must be a number"),
        ({"x": {"spot_shock": -0.1, "description": 3}}, r"description must be a string"),
        ([{"spot_shock": -0.1}], r"#0: missing field 'name'"),
        ([{"name": "a", "spot_shock": -0.1}, {"name": "a", "vol_shock": 1}], "defined twice"),
        ("crash", "must be a mapping or a list"),
    ],
)
def test_scenarios_from_config_bad_values_raise_data_error_naming_the_field(config, message):
    with pytest.raises(DataError, match=message):
        scenarios_from_config(config)


def test_stress_table_returns_names_in_order_with_float_pnl():
    table = stress_table(make_portfolio(Holding("SPY", 1)))

    assert [n for n, _ in table] == [s.name for s in DEFAULT_SCENARIOS]
    assert all(isinstance(v, float) and np.isfinite(v) for _, v in table)
