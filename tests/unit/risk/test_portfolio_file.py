"""Portfolio files: a good YAML and JSON file load; each malformed field is named."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from thetadesk.errors import DataError
from thetadesk.risk.portfolio_file import load_portfolio, parse_portfolio

ROOT = Path(__file__).resolve().parents[3]

GOOD = """\
rate: 0.04
underlyings:
  SPY: {spot: 600.0, vol: 0.18, dividend_yield: 0.012}
  QQQ: {spot: 520.0, vol: 0.22}
correlation: {SPY/QQQ: 0.9}
as_of: 2026-11-24T15:00:00Z
positions:
  - {symbol: SPY261218P00580000, qty: -10}
  - {symbol: SPY261218P00570000, qty: 10, iv: 0.21}
  - {symbol: SPY, qty: 100}
"""


def _data():
    return {
        "rate": 0.04,
        "underlyings": {"SPY": {"spot": 600.0, "vol": 0.18, "dividend_yield": 0.012},
                        "QQQ": {"spot": 520.0, "vol": 0.22}},
        "correlation": {"SPY/QQQ": 0.9},
        "as_of": "2026-11-24T15:00:00Z",
        "positions": [{"symbol": "SPY261218P00580000", "qty": -10},
                      {"symbol": "SPY261218P00570000", "qty": 10, "iv": 0.21},
                      {"symbol": "SPY", "qty": 100}],
    }


def test_load_portfolio_yaml_good_file(tmp_path):
    path = tmp_path / "book.yaml"
    path.write_text(GOOD)
    book = load_portfolio(path)
    assert book.as_of == datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    assert book.rate == 0.04
    assert book.symbols == ("QQQ", "SPY")
    assert book.underlyings["QQQ"].dividend_yield == 0.0
    assert [h.quantity for h in book.holdings] == [-10, 10, 100]
    assert book.holdings[1].iv == 0.21
    assert book.correlation_matrix()[0, 1] == 0.9


def test_load_portfolio_json_equals_yaml(tmp_path):
    (tmp_path / "book.yaml").write_text(GOOD)
    (tmp_path / "book.json").write_text(json.dumps(_data()))
    (tmp_path / "book.txt").write_text(json.dumps(_data()))  # by content
    yaml_book = load_portfolio(tmp_path / "book.yaml")
    assert load_portfolio(tmp_path / "book.json").value() == pytest.approx(yaml_book.value())
    assert load_portfolio(tmp_path / "book.txt").holdings == yaml_book.holdings


@pytest.mark.parametrize("name", ["portfolio.yaml", "portfolio50.yaml"])
def test_example_portfolios_load(name):
    book = load_portfolio(ROOT / "examples" / name)
    assert book.holdings


def _set(data, path, value):
    keys = path.split(".")
    node = data
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


@pytest.mark.parametrize(("path", "value", "message"), [
    ("positions.2.qty", "ten", "positions[2].qty: must be a non-zero integer, got 'ten'"),
    ("positions.0.qty", 0, "positions[0].qty: must be a non-zero integer"),
    ("positions.0.qty", 1.5, "positions[0].qty: must be a non-zero integer"),
    ("positions.1.symbol", "SPY261318P00570000", "positions[1].symbol: "),
    ("positions.1.symbol", "IWM261218P00200000", "positions[1].symbol: underlying IWM"),
    ("positions.1.symbol", "SPY261120P00570000", "positions[1].symbol: "),
    ("positions.1.iv", -0.2, "positions[1].iv: must be > 0"),
    ("positions.2.iv", 0.2, "positions[2].iv: "),
    ("positions.0.size", 3, "positions[0].size: unknown key"),
    ("positions.0.qty", KeyError, "positions[0].qty: missing"),
    ("positions", {"SPY": 1}, "positions: must be a list"),
    ("underlyings.SPY.vol", -0.1, "underlyings.SPY.vol: must be > 0, got -0.1"),
    ("underlyings.SPY.vol", "high", "underlyings.SPY.vol: must be a number"),
    ("underlyings.SPY.spot", 0, "underlyings.SPY.spot: must be > 0"),
    ("underlyings.SPY.spot", KeyError, "underlyings.SPY.spot: missing"),
    ("underlyings.QQQ.beta", 1.1, "underlyings.QQQ.beta: unknown key"),
    ("underlyings.QQQ.dividend_yield", 0.9, "underlyings.QQQ.dividend_yield: must be <= 0.2"),
    ("underlyings", {}, "underlyings: must be a non-empty mapping"),
    ("correlation", {"SPY/QQQ": 1.5}, "correlation.SPY/QQQ: must be <= 1"),
    ("correlation", {"SPY/IWM": 0.5}, "correlation.SPY/IWM: IWM is not among"),
    ("correlation", {"SPY": 0.5}, "correlation.SPY: must name two"),
    ("as_of", "yesterday", "as_of: must be an ISO 8601 date-time"),
    ("as_of", "2026-11-24T15:00:00", "as_of: must carry a time zone"),
    ("as_of", KeyError, "as_of: missing"),
    ("rate", "4%", "rate: must be a number"),
    ("rate", KeyError, "rate: missing"),
    ("leverage", 2, "leverage: unknown key"),
])
def test_parse_portfolio_malformed_field_is_named(path, value, message):
    data = _data()
    _set(data, path, value)
    with pytest.raises(DataError) as info:
        parse_portfolio(data)
    assert message in str(info.value)


def test_parse_portfolio_non_psd_correlation_is_named():
    data = _data()
    data["underlyings"]["IWM"] = {"spot": 230.0, "vol": 0.25}
    data["correlation"] = {"SPY/QQQ": 0.9, "SPY/IWM": 0.9, "QQQ/IWM": -0.9}
    with pytest.raises(DataError, match=r"^correlation: .*positive semi-definite"):
        parse_portfolio(data)


def test_load_portfolio_yaml_as_of_date_only_named(tmp_path):
    path = tmp_path / "book.yaml"
    path.write_text(GOOD.replace("2026-11-24T15:00:00Z", "2026-11-24"))
    with pytest.raises(DataError, match=r"as_of: .*a date without a time"):
        load_portfolio(path)


def test_load_portfolio_invalid_yaml_and_missing_file(tmp_path):
    path = tmp_path / "book.yaml"
    path.write_text("rate: [0.04\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_portfolio(path)
    with pytest.raises(DataError, match="cannot read"):
        load_portfolio(tmp_path / "absent.yaml")
    path.write_text("- 1\n- 2\n")
    with pytest.raises(DataError, match="must be a mapping"):
        load_portfolio(path)
