"""Specifications of the protocol comparison tables (thetadesk.backtest.tables)."""

import json

import pytest

from thetadesk.backtest.tables import (
    Metric,
    comparison_markdown,
    comparison_rows,
    runs_of,
)

RESULTS = {
    "annual_return": 0.0123, "sharpe": 0.5, "sharpe_rf": 0.41, "trades": 54,
    "costs": {"total": 1234.4}, "deflated_sharpe": {"psr": 0.8123, "dsr": None},
    "baselines": {
        "buy_and_hold": {"annual_return": 0.0827, "sharpe": 0.69, "sharpe_rf": 0.6,
                         "trades": 0, "costs": {"total": 0.0},
                         "deflated_sharpe": {"psr": 0.93, "dsr": None}},
        "put_write": {"annual_return": 0.0739, "sharpe": 1.02, "sharpe_rf": None,
                      "trades": 50, "costs": {"total": 900.0},
                      "deflated_sharpe": {"psr": 0.99, "dsr": None}},
    },
}
FEW = [Metric("annual_return", "annual return", "pct"), Metric("sharpe", "Sharpe (0%)"),
       Metric("sharpe_rf", "Sharpe (T-bill)"), ("trades", "trades", "int"),
       Metric("costs.total", "costs ($)", "usd"), Metric("deflated_sharpe.psr", "PSR", "prob"),
       Metric("nope", "missing")]


def test_runs_of_names_the_desk_and_both_baselines_per_period():
    runs = runs_of(RESULTS, "2014-2016")
    assert list(runs) == ["ThetaDesk 2014-2016", "buy and hold 2014-2016",
                          "put-write 2014-2016"]
    assert runs["put-write 2014-2016"]["trades"] == 50


def test_comparison_rows_hold_the_raw_values_json_ready():
    runs = {**runs_of(RESULTS, "A"), **runs_of({"sharpe": 2.0}, "B")}
    rows = comparison_rows(runs, FEW)
    assert [r["metric"] for r in rows] == ["annual_return", "sharpe", "sharpe_rf", "trades",
                                           "costs.total", "deflated_sharpe.psr", "nope"]
    assert rows[1]["values"] == {"ThetaDesk A": 0.5, "buy and hold A": 0.69,
                                 "put-write A": 1.02, "ThetaDesk B": 2.0}
    assert rows[4]["values"]["ThetaDesk A"] == 1234.4
    assert rows[2]["values"]["put-write A"] is None  # null stays null
    assert rows[6]["values"] == dict.fromkeys(runs)  # a key nobody has
    assert json.loads(json.dumps(rows)) == rows


def test_comparison_markdown_one_row_per_metric_one_column_per_run():
    text = comparison_markdown(runs_of(RESULTS), FEW)
    assert text.splitlines() == [
        "| metric | ThetaDesk | buy and hold | put-write |",
        "| --- | --- | --- | --- |",
        "| annual return | 1.23% | 8.27% | 7.39% |",
        "| Sharpe (0%) | 0.50 | 0.69 | 1.02 |",
        "| Sharpe (T-bill) | 0.41 | 0.60 | n/a |",
        "| trades | 54 | 0 | 50 |",
        "| costs ($) | 1,234 | 0 | 900 |",
        "| PSR | 0.812 | 0.930 | 0.990 |",
        "| missing | n/a | n/a | n/a |",
    ]


def test_default_metrics_cover_the_protocol_and_bad_input_is_refused():
    labels = [r["label"] for r in comparison_rows(runs_of(RESULTS))]
    for label in ("Sharpe, daily (0%)", "Sharpe, daily (T-bill)", "Sharpe, monthly (0%)",
                  "Sortino (0%)", "max drawdown", "longest drawdown (sessions)", "win rate",
                  "profit factor", "exposure", "costs paid ($)", "deflated Sharpe ratio"):
        assert label in labels
    assert "a\\|b" in comparison_markdown({"a|b": RESULTS}, FEW[:1])
    with pytest.raises(ValueError, match="at least one"):
        comparison_rows({})
    with pytest.raises(ValueError, match="format 'money'"):
        comparison_rows(runs_of(RESULTS), [Metric("sharpe", "x", "money")])
