"""The `exits:` position-management keys and the `hedging:` section: what the config accepts,
the errors it gives, and that the values reach the rules the actors build."""

import copy

import pytest
import yaml

from thetadesk.config import DEFAULT_CONFIG, parse_config
from thetadesk.errors import ConfigError
from thetadesk.hedging import HedgeRules
from thetadesk.positions.rules import ManageRules

DATA = yaml.safe_load(DEFAULT_CONFIG.read_text())


def _with(section, **values):
    data = copy.deepcopy(DATA)
    data.setdefault(section, {}).update(values)
    return data


def _error(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    return str(info.value)


def test_shipped_config_holds_to_expiry_without_a_stop_and_leaves_hedging_off():
    # The research protocol's choice (research/protocol.yaml): no rungs, no per-trade stop,
    # no time exit, and nothing paid to buy back the last nickel.
    config = parse_config(copy.deepcopy(DATA), env={})
    exits = config.exits
    assert (exits.ladder, exits.take_profit, exits.stop_multiple) == ((), 1.0, None)
    assert exits.hold_to_expiry
    assert exits.min_close_value == 0.05
    assert config.hedging.enabled is False
    rules = ManageRules.from_config(config.exits)
    assert rules.rungs == (1.0,)


@pytest.mark.parametrize(("ladder", "take_profit"), [([0.5, 0.25], 0.75), ([0.25, 0.8], 0.75),
                                                     ([0.25, 0.25], 0.75)])
def test_ladder_must_ascend_below_take_profit(ladder, take_profit):
    text = _error(_with("exits", ladder=ladder, take_profit=take_profit))
    assert "exits.ladder: rungs must ascend and stay below take_profit" in text


def test_short_delta_stop_must_sit_above_the_roll_trigger():
    data = _with("exits", short_delta_stop=0.35, roll={"enabled": True, "when_short_delta": 0.4})
    assert "exits.short_delta_stop: must be above roll.when_short_delta (0.4)" in _error(data)
    data = _with("exits", short_delta_stop=0.6, roll={"enabled": True, "when_short_delta": 0.4})
    assert parse_config(data, env={}).exits.short_delta_stop == 0.6


def test_hedging_symbol_must_be_a_market_symbol():
    text = _error(_with("hedging", enabled=True, symbol="IWM"))
    assert "hedging.symbol: unknown symbol 'IWM'" in text


@pytest.mark.parametrize(("values", "text"), [
    ({"tail": {"dte": 30, "roll_dte": 30}}, "hedging.tail.roll_dte: must be below dte (30)"),
    ({"dynamic": {"iv_ratio_from": 2.0, "iv_ratio_full": 1.5}},
     "hedging.dynamic.iv_ratio_full: must be above iv_ratio_from (2)"),
    ({"delta": {"instrument": "futures"}}, "hedging.delta.instrument"),
    ({"delta": {"band": 0}}, "hedging.delta.band"),
    ({"tail": {"premium_fraction": 1.5}}, "hedging.tail.premium_fraction"),
    ({"bogus": 1}, "hedging.bogus"),
])
def test_bad_hedging_values_name_the_path(values, text):
    assert text in _error(_with("hedging", enabled=True, **values))


def test_hedging_values_reach_the_rules():
    data = _with("hedging", enabled=True, symbol="QQQ", check_minutes=5,
                 delta={"band": 80, "lot": 10, "min_interval_minutes": 45},
                 tail={"premium_fraction": 0.2, "put_delta": 0.05, "dte": 90, "roll_dte": 30})
    rules = HedgeRules.from_config(parse_config(data, env={}).hedging)
    assert (rules.symbol, rules.check_minutes, rules.band, rules.lot) == ("QQQ", 5, 80, 10)
    assert rules.min_interval.total_seconds() == 45 * 60
    assert (rules.tail_fraction, rules.put_delta, rules.tail_dte, rules.tail_roll_dte) == (
        0.2, 0.05, 90, 30)
