"""Protocol comparison tables: several named result dicts side by side, one row per metric.

A research protocol reports, per period, the desk next to buy-and-hold and the put-write of
the same run. ``runs_of(results, period)`` takes those three out of one ``results.json`` dict
(``thetadesk.backtest.results``) under readable names; ``comparison_rows`` lays any named dicts
out as JSON-ready rows; ``comparison_markdown`` renders the same rows as a Markdown table.

Metrics are named by their ``results.json`` key, dotted for a nested one (``costs.total``,
``deflated_sharpe.dsr``); a key a dict does not have, or holds as null, is None in the rows and
``n/a`` in the table, never a made-up number. Formats: ``pct`` (a fraction shown as a percent),
``num`` (two decimals), ``prob`` (a probability, three decimals), ``int``, ``usd`` (dollars,
no cents), ``text``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_METRICS", "Metric", "comparison_markdown", "comparison_rows", "runs_of"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One row: the ``results.json`` ``key`` (dotted for nested), its ``label``, its format
    ``kind`` (module docs)."""

    key: str
    label: str
    kind: str = "num"


DEFAULT_METRICS: tuple[Metric, ...] = (
    Metric("annual_return", "annual return", "pct"),
    Metric("sharpe", "Sharpe, daily (0%)", "num"),
    Metric("sharpe_rf", "Sharpe, daily (T-bill)", "num"),
    Metric("sharpe_monthly", "Sharpe, monthly (0%)", "num"),
    Metric("sharpe_monthly_rf", "Sharpe, monthly (T-bill)", "num"),
    Metric("sortino", "Sortino (0%)", "num"),
    Metric("sortino_rf", "Sortino (T-bill)", "num"),
    Metric("max_drawdown", "max drawdown", "pct"),
    Metric("max_drawdown_days", "longest drawdown (sessions)", "int"),
    Metric("win_rate", "win rate", "pct"),
    Metric("profit_factor", "profit factor", "num"),
    Metric("trades", "trades", "int"),
    Metric("exposure", "exposure", "pct"),
    Metric("costs.total", "costs paid ($)", "usd"),
    Metric("costs.per_trade", "costs per trade ($)", "usd"),
    Metric("deflated_sharpe.psr", "probabilistic Sharpe ratio", "prob"),
    Metric("deflated_sharpe.dsr", "deflated Sharpe ratio", "prob"),
)
_KINDS = ("pct", "num", "prob", "int", "usd", "text")


def runs_of(results: Mapping[str, Any], period: str | None = None) -> dict[str, Mapping]:
    """The desk and both baselines of one ``results.json`` dict, named "ThetaDesk", "buy and
    hold" and "put-write" (followed by ``period`` when given: "ThetaDesk 2014-2016")."""
    suffix = f" {period}" if period else ""
    base = results.get("baselines") or {}
    out: dict[str, Mapping] = {f"ThetaDesk{suffix}": results}
    if "buy_and_hold" in base:
        out[f"buy and hold{suffix}"] = base["buy_and_hold"]
    if "put_write" in base:
        out[f"put-write{suffix}"] = base["put_write"]
    return out


def _value(results: Mapping[str, Any], key: str) -> Any:
    value: Any = results
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _metrics(metrics: Sequence[Metric | tuple[str, str, str]]) -> list[Metric]:
    out = [m if isinstance(m, Metric) else Metric(*m) for m in metrics]
    for m in out:
        if m.kind not in _KINDS:
            raise ValueError(f"metric {m.key}: format {m.kind!r} is not one of "
                             f"{', '.join(_KINDS)}")
    return out


def comparison_rows(runs: Mapping[str, Mapping[str, Any]],
                    metrics: Sequence[Metric | tuple[str, str, str]] = DEFAULT_METRICS,
                    ) -> list[dict[str, Any]]:
    """One JSON-ready row per metric: ``{"metric": key, "label", "kind", "values": {name:
    value}}``, the values as the dicts hold them (None where missing), in the order of
    ``runs``."""
    if not runs:
        raise ValueError("a comparison needs at least one named result")
    return [{"metric": m.key, "label": m.label, "kind": m.kind,
             "values": {name: _value(r, m.key) for name, r in runs.items()}}
            for m in _metrics(metrics)]


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "text" or isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if kind == "pct":
        return f"{value * 100:.2f}%"
    if kind == "prob":
        return f"{value:.3f}"
    if kind == "int":
        return f"{int(value):,d}"
    if kind == "usd":
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def comparison_markdown(runs: Mapping[str, Mapping[str, Any]],
                        metrics: Sequence[Metric | tuple[str, str, str]] = DEFAULT_METRICS,
                        ) -> str:
    """``comparison_rows`` as a Markdown table: a column per named result, a row per metric."""
    rows = comparison_rows(runs, metrics)
    names = list(runs)
    lines = ["| metric | " + " | ".join(_cell(n) for n in names) + " |",
             "| --- |" + " --- |" * len(names)]
    for row in rows:
        cells = [_fmt(row["values"][n], row["kind"]) for n in names]
        lines.append(f"| {_cell(row['label'])} | " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
