"""``report.html``: one self-contained page (inline SVG charts, no scripts, no network) read
from a backtest's ``results.json`` dict (``thetadesk.backtest.results``).

Sections: the headline figures next to the baselines', equity and drawdown charts, the monthly
returns heatmap, attribution tables, Monte Carlo percentiles, walk-forward windows (when run),
the trade table and what was run.
"""

from __future__ import annotations

import html
import io
from datetime import date
from typing import Any

__all__ = ["render_html"]

_ROWS = (
    ("total_return", "Total return", "pct"),
    ("annual_return", "Annual return", "pct"),
    ("volatility", "Volatility (annual)", "pct"),
    ("sharpe", "Sharpe, daily (0% risk-free)", "num"),
    ("sharpe_rf", "Sharpe, daily (excess over T-bills)", "num"),
    ("sharpe_monthly", "Sharpe, monthly (0%)", "num"),
    ("sharpe_monthly_rf", "Sharpe, monthly (excess over T-bills)", "num"),
    ("sortino", "Sortino (0%)", "num"),
    ("sortino_rf", "Sortino (excess over T-bills)", "num"),
    ("calmar", "Calmar", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("max_drawdown_peak", "Max drawdown: peak", "text"),
    ("max_drawdown_trough", "Max drawdown: trough", "text"),
    ("max_drawdown_recovery", "Max drawdown: recovered", "text"),
    ("max_drawdown_days", "Longest drawdown (sessions)", "int"),
    ("trades", "Trades", "int"),
    ("win_rate", "Win rate", "pct"),
    ("profit_factor", "Profit factor", "num"),
    ("avg_win", "Average win ($)", "usd"),
    ("avg_loss", "Average loss ($)", "usd"),
    ("expectancy", "Expectancy per trade ($)", "usd"),
    ("exposure", "Exposure (sessions with a position)", "pct"),
    ("turnover", "Turnover (premium / equity, a year)", "num"),
    ("costs.commissions", "Commissions and fees ($)", "usd"),
    ("costs.spread", "Spread paid against the mid ($)", "usd"),
    ("costs.total", "Costs paid ($)", "usd"),
    ("costs.per_trade", "Costs per closed trade ($)", "usd"),
    ("deflated_sharpe.psr", "Probabilistic Sharpe ratio, P(SR > 0)", "num"),
    ("deflated_sharpe.psr_rf", "Probabilistic Sharpe ratio, excess over T-bills", "num"),
    ("deflated_sharpe.dsr", "Deflated Sharpe ratio (trials given)", "num"),
    ("final_equity", "Final equity ($)", "usd"),
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;
color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left}.note{color:#555;font-size:.9em}
.heat td{min-width:3.2em}
"""


def _get(results: dict, key: str) -> Any:
    value: Any = results
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "text":
        return html.escape(str(value))
    if kind == "pct":
        return f"{value * 100:.2f}%"
    if kind == "int":
        return f"{int(value):,d}"
    if kind == "usd":
        return f"{value:,.2f}"
    return f"{value:.2f}"


def _table(head: list[str], rows: list[list[str]], left: int = 1, cls: str = "") -> str:
    out = [f"<table class='{cls}'><tr>"]
    out += [f"<th class='{'l' if i < left else ''}'>{html.escape(h)}</th>"
            for i, h in enumerate(head)]
    out.append("</tr>")
    for row in rows:
        out.append("<tr>" + "".join(
            f"<td class='{'l' if i < left else ''}'>{cell}</td>" for i, cell in enumerate(row))
            + "</tr>")
    out.append("</table>")
    return "".join(out)


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.find("<svg"):]


def _charts(results: dict) -> tuple[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = results["equity"]
    days = [date.fromisoformat(r["session"]) for r in rows]
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.plot(days, [r["equity"] for r in rows], label="ThetaDesk", lw=1.4)
    ax.plot(days, [r["buy_and_hold"] for r in rows], label="buy and hold", lw=0.9)
    ax.plot(days, [r["put_write"] for r in rows], label="ATM put-write", lw=0.9)
    ax.set_ylabel("equity ($)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    equity = _svg(fig)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(10, 2.2))
    ax.fill_between(days, [-100 * r["drawdown"] for r in rows], 0, color="#c0392b", alpha=0.5)
    ax.set_ylabel("drawdown (%)")
    ax.grid(alpha=0.3)
    dd = _svg(fig)
    plt.close(fig)
    return equity, dd


def _heatmap(monthly: dict[str, float]) -> str:
    if not monthly:
        return "<p class='note'>no months</p>"
    years = sorted({k[:4] for k in monthly})
    rows = []
    for y in years:
        cells = [y]
        for m in range(1, 13):
            v = monthly.get(f"{y}-{m:02d}")
            if v is None:
                cells.append("")
                continue
            strength = min(abs(v) / 0.05, 1.0)
            colour = (f"rgba(39,174,96,{strength:.2f})" if v >= 0
                      else f"rgba(192,57,43,{strength:.2f})")
            cells.append(f"<span style='display:block;background:{colour}'>"
                         f"{v * 100:.1f}%</span>")
        rows.append(cells)
    head = ["year", *[date(2000, m, 1).strftime("%b") for m in range(1, 13)]]
    return _table(head, rows, cls="heat")


def _attribution(tables: dict) -> str:
    out = []
    titles = {"strategy": "By strategy", "regime": "By regime at entry",
              "weekday": "By weekday of entry", "time_of_day": "By time of entry (New York)",
              "dte": "By DTE at entry"}
    for key, title in titles.items():
        rows = [[html.escape(label), _fmt(v["trades"], "int"), _fmt(v["pnl"], "usd"),
                 _fmt(v["win_rate"], "pct"), _fmt(v["avg_pnl"], "usd")]
                for label, v in tables.get(key, {}).items()]
        out.append(f"<h3>{title}</h3>")
        out.append(_table(["", "trades", "P&L ($)", "win rate", "mean P&L ($)"], rows)
                   if rows else "<p class='note'>no trades</p>")
    book = tables.get("book", {})
    out.append("<h3>Strategies vs hedges (realised)</h3>")
    out.append(_table(["book", "trades", "realised P&L ($)"], [
        [k, _fmt(v["trades"], "int"), _fmt(v["realized_pnl"], "usd")] for k, v in book.items()]))
    return "".join(out)


def _monte_carlo(mc: dict | None) -> str:
    if not mc:
        return "<p class='note'>not run (--monte-carlo N)</p>"
    out = []
    for key, title in (("trades", "Trade-order bootstrap"),
                       ("daily_returns", "Block bootstrap of daily returns")):
        m = mc.get(key)
        if not m:
            out.append(f"<h3>{title}</h3><p class='note'>nothing to resample</p>")
            continue
        pcts = list(m["final_equity"])
        rows = [["final equity ($)", *[_fmt(m["final_equity"][p], "usd") for p in pcts]],
                ["max drawdown", *[_fmt(m["max_drawdown"][p], "pct") for p in pcts]]]
        out.append(f"<h3>{title} ({m['paths']:,d} paths)</h3>")
        out.append(_table(["", *pcts], rows))
        out.append(f"<p>P(ending below the capital) {m['prob_loss'] * 100:.1f}%; "
                   f"P(losing {m['loss_fraction'] * 100:.0f}% or more) "
                   f"{m['prob_loss_at_least'] * 100:.1f}%</p>")
    return "".join(out)


def _walk_forward(wf: dict | None) -> str:
    if not wf:
        return "<p class='note'>not run (--walk-forward)</p>"
    rows = [[w["in_sample"], html.escape(str(w.get("embargo") or "none")), w["out_of_sample"],
             html.escape(str(w["params"])), _fmt(w.get("in_sample_sharpe"), "num"),
             _fmt(w.get("in_sample_purged_sessions"), "int"),
             _fmt(w.get("in_sample_dsr"), "num"), _fmt(w.get("out_of_sample_return"), "pct"),
             _fmt(w.get("out_of_sample_sharpe"), "num")]
            for w in wf.get("windows", [])]
    note = (f"<p class='note'>embargo {wf.get('embargo_sessions')} sessions between each "
            f"in-sample and out-of-sample window (holding period {wf.get('holding_sessions')} "
            f"sessions); in-sample purge {'on' if wf.get('purge') else 'off'}: scores leave "
            "out the sessions from the opening of the first trade still open at the in-sample "
            "end. IS DSR: the chosen point's deflated Sharpe ratio, the grid's points being "
            "the trials.</p>")
    return note + _table(["in sample", "embargo", "out of sample", "chosen parameters",
                          "IS Sharpe", "IS sessions purged", "IS DSR", "OOS return",
                          "OOS Sharpe"], rows, left=4)


def _rate_note(rate: Any) -> str:
    if not isinstance(rate, dict) or not rate.get("by_year"):
        return ("Every ratio is shown at a 0% risk-free rate; no T-bill rate is known for "
                "these sessions.")
    years = ", ".join(f"{y} {v * 100:.2f}%" for y, v in rate["by_year"].items())
    return (f"Ratios are shown at 0% and in excess of the {html.escape(rate['name'])} "
            f"({years}).")


def render_html(results: dict) -> str:
    run = results["run"]
    base = results["baselines"]
    head = ["", "ThetaDesk", f"buy and hold {base['buy_and_hold']['symbol']}",
            f"ATM put-write {base['put_write']['symbol']}"]
    rows = [[label, _fmt(_get(results, key), kind), _fmt(_get(base["buy_and_hold"], key), kind),
             _fmt(_get(base["put_write"], key), kind)] for key, label, kind in _ROWS]
    equity_svg, dd_svg = _charts(results) if results["equity"] else ("", "")
    trades = [[html.escape(t["opened_at"][:16]), html.escape((t["closed_at"] or "")[:16]),
               html.escape(t["symbol"]), html.escape(t["strategy"]), _fmt(t["quantity"], "int"),
               _fmt(t["entry_price"], "num"), html.escape(t["exit_reason"]),
               _fmt(t["entry_dte"], "int"), html.escape(t["regime"]), _fmt(t["pnl"], "usd")]
              for t in results["trade_list"]]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in run.get("notes", []))
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>ThetaDesk backtest {run['start']} to {run['end']}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>ThetaDesk backtest: {html.escape(str(run['data']))}, {run['start']} to "
        f"{run['end']}</h1>",
        f"<p class='note'>symbols {', '.join(run['symbols'])}; accounts "
        f"{', '.join(run['accounts'])}; capital ${run['capital']:,.0f}; fill model "
        f"{html.escape(run['fill_model'])}; {run['tick_seconds']} s ticks; seed {run['seed']}; "
        f"{run['intents']} intents, {run['fills']} fills, {run['decisions']} exit decisions. "
        f"{_rate_note(run.get('risk_free_rate'))}</p>",
        f"<ul class='note'>{notes}</ul>" if notes else "",
        "<h2>Results and baselines</h2>", _table(head, rows),
        "<h2>Equity</h2>", equity_svg, "<h2>Drawdown</h2>", dd_svg,
        "<h2>Monthly returns</h2>", _heatmap(results.get("monthly_returns", {})),
        "<h2>Attribution</h2>", _attribution(results["attribution"]),
        "<h2>Monte Carlo</h2>", _monte_carlo(results.get("monte_carlo")),
        "<h2>Walk-forward</h2>", _walk_forward(results.get("walk_forward")),
        "<h2>Trades</h2>",
        _table(["opened (UTC)", "closed (UTC)", "symbol", "strategy", "qty", "entry",
                "exit reason", "DTE", "regime", "P&L ($)"], trades, left=4)
        if trades else "<p class='note'>no closed trades</p>",
        "</body></html>",
    ]
    return "".join(parts)
