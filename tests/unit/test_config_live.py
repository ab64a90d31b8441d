"""Specifications of the live sections: vendor data budgets, Alpaca accounts, the checks across
sections, the example configs, and the environment the vendors need."""

from pathlib import Path

import pytest

from tests.unit.test_config import _data, _error
from thetadesk.config import load_config, parse_config
from thetadesk.wiring import missing_env, required_env

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _live(source="polygon", broker="alpaca", **account):
    data = _data()
    data["market"]["source"] = source
    acct = data["accounts"][0]
    for key in ("fill_model", "fees", "early_assignment"):
        acct.pop(key, None)
    acct["broker"] = broker
    acct.update(account)
    return data


def test_the_examples_load_as_live_alpaca_configs():
    paper = load_config(EXAMPLES / "alpaca-paper.yaml", env={})
    data = load_config(EXAMPLES / "alpaca-data.yaml", env={})

    assert (paper.market.source, paper.market.live) == ("polygon", True)
    assert paper.market.polygon.requests_per_minute == 5
    assert (data.market.source, data.market.alpaca.feed) == ("alpaca", "indicative")
    assert [(a.broker, a.alpaca.paper) for a in (*paper.accounts, *data.accounts)] == [
        ("alpaca", True), ("alpaca", True)]


def test_the_default_config_is_simulated_and_needs_no_keys():
    config = parse_config(_data(), env={})
    assert not config.market.live
    assert required_env(config) == ()


def test_alpaca_broker_on_a_simulated_market_is_refused_with_the_reason():
    data = _live(source="sim")
    message = str(_error(data))
    assert "accounts[0].broker: alpaca trades at real prices" in message
    assert "it is sim" in message


@pytest.mark.parametrize("key", ["fill_model", "fees", "early_assignment"])
def test_paper_broker_settings_on_an_alpaca_account_are_refused(key):
    value = {"fill_model": {"slippage_ticks": 1}, "fees": {"orf_per_contract": 0.02},
             "early_assignment": True}[key]
    message = str(_error(_live(**{key: value})))
    assert f"accounts[0].{key}: is for the simulated paper broker" in message


@pytest.mark.parametrize(("path", "value", "where"), [
    (("polygon", "requests_per_minute"), 0, "market.polygon.requests_per_minute"),
    (("polygon", "max_reject_fraction"), 1.5, "market.polygon.max_reject_fraction"),
    (("alpaca", "feed"), "sip", "market.alpaca.feed"),
    (("polygon", "api_key"), "x", "market.polygon.api_key: unknown key"),
])
def test_vendor_sections_reject_bad_values_with_their_paths(path, value, where):
    data = _live()
    data["market"].setdefault(path[0], {})[path[1]] = value
    assert where in str(_error(data))


def test_required_env_names_each_vendors_keys_once():
    polygon = parse_config(_live("polygon", "alpaca"), env={})
    alpaca = parse_config(_live("alpaca", "alpaca"), env={})
    paper_on_polygon = parse_config(_live("polygon", "sim"), env={})

    assert required_env(polygon) == ("POLYGON_API_KEY", "ALPACA_API_KEY", "ALPACA_SECRET_KEY")
    assert required_env(alpaca) == ("ALPACA_API_KEY", "ALPACA_SECRET_KEY")
    assert required_env(paper_on_polygon) == ("POLYGON_API_KEY",)
    assert missing_env(polygon, {"POLYGON_API_KEY": "k", "ALPACA_API_KEY": " "}) == (
        "ALPACA_API_KEY", "ALPACA_SECRET_KEY")
