"""Specifications of the live sections: vendor data budgets, Alpaca accounts, the checks across
sections, the example configs, and the environment the vendors need."""

from pathlib import Path

import pytest

from tests.unit.test_config import _data, _error
from thetadesk.config import load_config, parse_config
from thetadesk.errors import ConfigError
from thetadesk.wiring import missing_env, required_env

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _live(source="polygon", broker="alpaca", **account):
    data = _data()
    data["market"]["source"] = source
    acct = data["accounts"][0]
    for key in ("fill_model", "fees", "early_assignment", "cash_interest"):
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


@pytest.mark.parametrize("key", ["fill_model", "fees", "early_assignment", "cash_interest"])
def test_paper_broker_settings_on_an_alpaca_account_are_refused(key):
    value = {"fill_model": {"slippage_ticks": 1}, "fees": {"orf_per_contract": 0.02},
             "early_assignment": True, "cash_interest": {"rate": "tbill_3m"}}[key]
    message = str(_error(_live(**{key: value})))
    assert f"accounts[0].{key}: is for the simulated paper broker" in message


def test_cash_interest_on_an_alpaca_account_says_alpaca_pays_its_own():
    message = str(_error(_live(cash_interest={"rate": 0.04})))
    assert "an Alpaca account earns Alpaca's own interest on its cash" in message


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


def test_two_alpaca_accounts_on_one_set_of_keys_are_refused():
    data = _live()
    second = {**data["accounts"][0], "name": "second"}
    data["accounts"].append(second)
    assert "accounts[1].alpaca.api_key_env: accounts[0] uses the same keys" in str(_error(data))

    second["alpaca"] = {"api_key_env": "ALPACA_IRA_KEY", "secret_key_env": "ALPACA_IRA_SECRET"}
    config = parse_config(data, env={})
    assert required_env(config) == ("POLYGON_API_KEY", "ALPACA_API_KEY", "ALPACA_SECRET_KEY",
                                    "ALPACA_IRA_KEY", "ALPACA_IRA_SECRET")


def test_a_paper_account_on_a_live_data_key_is_refused():
    data = _live("alpaca", "alpaca", alpaca={"paper": False})
    assert "accounts[0].alpaca.paper: is false but market.alpaca.paper is true" in str(
        _error(data))


# -- wiring: the adapters a live config builds --------------------------------------------------

KEYS = {"POLYGON_API_KEY": "pk" + "x" * 30, "ALPACA_API_KEY": "PKWIRE00000000000000",
        "ALPACA_SECRET_KEY": "s" * 40}


def test_a_polygon_config_builds_polygon_data_on_a_budget_shared_in_the_state_dir(tmp_path):
    from thetadesk.adapters.polygon import PolygonMarketData
    from thetadesk.wiring import build_market

    config = load_config(EXAMPLES / "alpaca-paper.yaml", env={})
    market = build_market(config, state_dir=tmp_path, env=KEYS)

    assert isinstance(market, PolygonMarketData)
    assert market.budget.requests_per_minute == config.market.polygon.requests_per_minute
    assert market.budget.shared_path == tmp_path / "vendor-budget.db"
    assert market.max_quote_age_s == config.market.polygon.max_quote_age_s
    assert market.dividend_yields == {"SPY": 0.013}


def test_an_alpaca_data_config_builds_alpaca_data_with_its_feed_and_open_interest(tmp_path):
    from thetadesk.adapters.alpaca_data import AlpacaMarketData
    from thetadesk.wiring import build_market

    config = load_config(EXAMPLES / "alpaca-data.yaml", env={})
    market = build_market(config, state_dir=tmp_path, env=KEYS)

    assert isinstance(market, AlpacaMarketData)
    assert market.budget.requests_per_minute == 200
    assert market.open_interest is True
    assert market._option_feed.value == "indicative"


def test_an_alpaca_account_builds_an_alpaca_broker_seeded_with_the_ledger_fills(tmp_path):
    from datetime import UTC, datetime

    from thetadesk.adapters.alpaca import AlpacaBroker
    from thetadesk.models import Fill
    from thetadesk.wiring import build_broker

    data = _live()
    data["accounts"][0]["alpaca"] = {"stream": False, "api_key_env": "MY_KEY",
                                     "secret_key_env": "MY_SECRET"}
    account = parse_config(data, env={}).accounts[0]
    fill = Fill("oid-1:1", "td-1", 1, 0.55, 0.0, datetime(2026, 8, 20, 14, tzinfo=UTC))

    broker = build_broker(account, None, tmp_path,
                          env={"MY_KEY": "PKMINE00000000000000", "MY_SECRET": "m" * 40},
                          recorded_fills=[fill])

    assert isinstance(broker, AlpacaBroker)
    assert broker._tracker.fills("td-1") == [fill]
    with pytest.raises(ConfigError, match="MY_KEY, MY_SECRET"):
        build_broker(account, None, tmp_path, env=KEYS)


def test_a_live_market_without_its_key_names_the_variable(tmp_path):
    from thetadesk.wiring import build_market

    config = load_config(EXAMPLES / "alpaca-paper.yaml", env={})
    with pytest.raises(ConfigError, match="POLYGON_API_KEY"):
        build_market(config, state_dir=tmp_path, env={})
