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


# -- market.replay: the replay's realism -------------------------------------------------------


def test_replay_config_defaults_are_the_replays_documented_figures():
    from thetadesk.adapters import replay

    config = parse_config(replay_config())
    without = replay_config()
    del without["market"]["replay"]
    assert config.market.replay == parse_config(without).market.replay
    assert config.market.replay.atm_vix_ratio == replay.ATM_VIX_RATIO == 0.90
    assert config.market.replay.spot_vol_beta == replay.SPOT_VOL_BETA == -4.94


def test_replay_config_values_reach_the_replay():
    from thetadesk.wiring import build_market

    data = replay_config()
    data["market"]["replay"] = {"atm_vix_ratio": 0.85, "spot_vol_beta": -6.5}
    market = build_market(parse_config(data))
    assert (market.atm_vix_ratio, market.spot_vol_beta) == (0.85, -6.5)
    market = build_market(parse_config(replay_config()))
    assert (market.atm_vix_ratio, market.spot_vol_beta) == (0.90, -4.94)


@pytest.mark.parametrize(("replay", "message"), [
    ({"atm_vix_ratio": 1.6}, "market.replay.atm_vix_ratio: must be <= 1.5"),
    ({"atm_vix_ratio": 0.4}, "market.replay.atm_vix_ratio: must be >= 0.5"),
    ({"atm_vix_ratio": ".nan"}, "market.replay.atm_vix_ratio: must be a finite number"),
    ({"atm_vix_ratio": True}, "market.replay.atm_vix_ratio: must be a number, got 'true'"),
    ({"spot_vol_beta": 4.94}, "market.replay.spot_vol_beta: must be <= 0"),
    ({"spot_vol_beta": -16}, "market.replay.spot_vol_beta: must be >= -15"),
    ({"beta": -4.94},
     "market.replay.beta: unknown key (allowed: atm_vix_ratio, spot_vol_beta)"),
])
def test_replay_config_refuses_values_out_of_bounds_naming_the_key(replay, message):
    data = replay_config()
    data["market"]["replay"] = {k: float("nan") if v == ".nan" else v for k, v in replay.items()}
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(data)
