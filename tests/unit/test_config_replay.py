"""Specifications of `market.source: replay` in the config."""

import re
from pathlib import Path

import pytest
import yaml

from thetadesk.config import DEFAULT_CONFIG, parse_config
from thetadesk.errors import ConfigError


def replay_config(start="2008-09-29", symbols=("SPY",)) -> dict:
    data = yaml.safe_load(Path(DEFAULT_CONFIG).read_text())
    data["market"]["source"] = "replay"
    data["market"]["start"] = start
    data["market"]["symbols"] = {s: data["market"]["symbols"]["SPY"] for s in symbols}
    data["accounts"][0]["symbols"] = list(symbols)
    return data


def test_replay_config_with_spy_in_range_is_valid():
    config = parse_config(replay_config())
    assert config.market.source == "replay"


def test_replay_config_takes_spy_and_qqq():
    config = parse_config(replay_config(symbols=("SPY", "QQQ")))
    assert set(config.market.symbols) == {"SPY", "QQQ"}


def test_replay_config_refuses_symbols_the_data_does_not_have():
    with pytest.raises(ConfigError, match=re.escape(
            "market.symbols.IWM: replay has SPY (the S&P 500) and QQQ (the NASDAQ Composite) "
            "only")):
        parse_config(replay_config(symbols=("SPY", "IWM")))


@pytest.mark.parametrize("start", ["2019-03-01", "2018-12-20"])
def test_replay_config_refuses_a_start_outside_the_data(start):
    with pytest.raises(ConfigError, match=re.escape(
            "market.start: replay data covers 2000-01-03 to 2018-10-31")):
        parse_config(replay_config(start=start))
