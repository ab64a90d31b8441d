"""The decision section (the adaptive strategy): defaults, and bad values named by path."""

import copy
from datetime import time

import pytest
import yaml

from tests.configs import adaptive
from thetadesk.config import DEFAULT_CONFIG, parse_config
from thetadesk.errors import ConfigError

DEFAULT_DATA = yaml.safe_load(DEFAULT_CONFIG.read_text())


def _with(**decision):
    data = copy.deepcopy(DEFAULT_DATA)
    adaptive(data)
    for key, value in decision.items():
        data["decision"][key] = value
    return data


def test_the_shipped_decision_section():
    config = parse_config(_with(), env={})
    d = config.decision
    assert config.strategy.kind == "adaptive"
    assert d.timing.windows == ((time(10, 0), time(11, 30)), (time(14, 0), time(15, 30)))
    assert d.events.enabled
    assert not d.timing.ladder.enabled  # the paper broker's default fills only at natural
    assert (d.timing.ladder.step_minutes, d.timing.ladder.max_steps) == (5, 5)
    assert d.events.blackout["fomc"].before_hours == 24
    assert d.regimes["down"].size == 0.5
    assert d.regimes["high"].stop_multiple == 1.5
    assert d.regimes["range"].strategies == ("iron_condor",)
    assert parse_config(copy.deepcopy(DEFAULT_DATA), env={}).strategy.kind == "bull_put_credit"


@pytest.mark.parametrize(("decision", "path", "text"), [
    ({"regimes": {"sideways": {"size": 0.5}}}, "decision.regimes.sideways", "not a regime key"),
    ({"regimes": {"up": {"size": 3}}}, "decision.regimes.up.size", "must be <= 2"),
    ({"regimes": {"high": {"stop_multiple": 0}}}, "decision.regimes.high.stop_multiple",
     "must be > 0"),
    ({"regimes": {"up": {"take_profit": 1.5}}}, "decision.regimes.up.take_profit",
     "must be <= 1"),
    ({"timing": {"ladder": {"enabled": True, "tick": 0}}}, "decision.timing.ladder.tick",
     "must be > 0"),
    ({"regimes": {"up": {"strategies": ["straddle"]}}}, "decision.regimes.up.strategies",
     "bull_put_credit"),
    ({"selector": {"credit_min_rank": 20, "debit_max_rank": 30}},
     "decision.selector.debit_max_rank", "below credit_min_rank"),
    ({"timing": {"windows": [["11:00", "10:00"]]}}, "decision.timing.windows",
     "start must be before the end"),
    ({"regime": {"low_exit": 75}}, "decision.regime", "low_enter <= low_exit"),
    ({"events": {"blackout": {"gdp": {"before_hours": 1, "after_hours": 1}}}},
     "decision.events.blackout", "fomc"),
])
def test_bad_decision_values_name_their_path(decision, path, text):
    with pytest.raises(ConfigError) as info:
        parse_config(_with(**decision), env={})
    message = str(info.value)
    assert path in message, message
    assert text in message, message
