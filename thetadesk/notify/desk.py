"""Replies to the operator's read-only Telegram commands, built from the ledger (no I/O besides
reading it, no clock: ``now`` is passed in).

* ``status_reply``: run state, breakers, equity and today's P&L per account (``/status``).
* ``positions_reply``: open spreads with entry credit, current value and P&L where known, and
  the account's latest Greeks (``/positions``).
* ``pnl_reply``: P&L today, week to date and month to date, realised P&L by strategy, trade
  counts (``/pnl``).
* ``risk_reply``: latest VaR/ES and Greeks, usage of each configured limit, breakers (``/risk``).

Every reply is Telegram HTML: titles in ``<b>``, tables in ``<pre>``, all text escaped.

Money is in dollars. A day's P&L is its ``daily`` row's ``end_equity - start_equity`` (the
account engine rewrites ``end_equity`` every tick, so today's figure is live); a period's P&L is
the sum over its sessions. Positions' ``entry_price`` is the net credit per share (> 0 credit).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from thetadesk.config import ALL_ACCOUNTS
from thetadesk.notify.commands import table_reply, text_reply
from thetadesk.risk.engine import RISK_FIGURES, session_of
from thetadesk.store import Ledger, legs_from_json

__all__ = [
    "day_pnl",
    "period_pnl",
    "pnl_reply",
    "positions_reply",
    "risk_figures",
    "risk_reply",
    "status_reply",
]

NA = "n/a"
SUPERVISOR = "supervisor"

# (limit attribute, label, figure key, per underlying?) in the order /risk lists them.
_LIMITS = (
    ("max_total_loss", "total max loss", "total_max_loss", False),
    ("max_positions_per_symbol", "positions per symbol", "positions", True),
    ("max_delta_shares", "delta (shares)", "delta", True),
    ("max_beta_weighted_delta", "beta-wtd delta", "beta_weighted_delta", False),
    ("max_gamma_shares", "gamma (shares/$1)", "gamma", True),
    ("max_vega_per_vol_point", "vega $/vol pt", "vega_per_vol_point", False),
    ("max_theta_per_day", "theta $/day", "theta_per_day", False),
    ("max_var95", "VaR 95%", "var95", False),
    ("max_var99", "VaR 99%", "var99", False),
    ("max_es95", "ES 95%", "es95", False),
    ("max_es99", "ES 99%", "es99", False),
)


def _money(value: float | None) -> str:
    if value is None:
        return NA
    return f"-${abs(value):,.2f}" if value < 0 else f"${value:,.2f}"


def _signed(value: float | None) -> str:
    if value is None:
        return NA
    return f"{'+' if value >= 0 else '-'}${abs(value):,.2f}"


def _num(value: Any, fmt: str = "{:+,.2f}") -> str:
    return NA if value is None else fmt.format(value)


def _join(parts: Iterable[str]) -> str:
    return "\n\n".join(parts)


def _label(account: str) -> str:
    return "all accounts" if account == ALL_ACCOUNTS else account


def _sum(values: Iterable[float | None]) -> float | None:
    """The sum of the known values (None if none is known)."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


# --- ledger readings ---------------------------------------------------------------------------

def _days(ledger: Ledger, account: str, first: date, last: date) -> list[dict[str, Any]]:
    return [d for d in ledger.days() if d["account"] == account
            and first.isoformat() <= d["session"] <= last.isoformat()]


def _change(row: Mapping[str, Any]) -> float:
    end = row["end_equity"]
    return 0.0 if end is None else float(end) - float(row["start_equity"])


def day_pnl(ledger: Ledger, account: str, session: date) -> float | None:
    """``end_equity - start_equity`` of the session (None: no row for it)."""
    row = ledger.day(account, session)
    return None if row is None else _change(row)


def period_pnl(ledger: Ledger, account: str, first: date, last: date) -> float | None:
    """The sum of the sessions' P&L from ``first`` to ``last`` (None: no session in between)."""
    rows = _days(ledger, account, first, last)
    return sum(_change(r) for r in rows) if rows else None


def risk_figures(ledger: Ledger, account: str) -> dict | None:
    """The latest figures the risk engine's ``refresh`` kept for ``account``."""
    text = ledger.get_state(RISK_FIGURES + account)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _not_active(breaker_states: Mapping[str, Mapping[str, Any]] | None, account: str,
                ) -> list[list[Any]] | None:
    """Rows (name, state, reason) of the breakers not ACTIVE; None if states are unknown."""
    if breaker_states is None or account not in breaker_states:
        return None
    rows = []
    for name, reading in sorted(breaker_states[account].items()):
        state = str(getattr(reading.state, "value", reading.state))
        if state.lower() != "active":
            rows.append([name, state, reading.reason or ""])
    return rows


def _breaker_block(breaker_states: Mapping[str, Mapping[str, Any]] | None, account: str,
                   ) -> str:
    rows = _not_active(breaker_states, account)
    label = _label(account)
    if rows is None:
        return text_reply(f"{label} breakers: unknown")
    if not rows:
        return text_reply(f"{label} breakers: all active")
    return table_reply(f"{label} breakers", rows, ["breaker", "state", "reason"])


def _run_state(ledger: Ledger) -> str:
    events = ledger.actor_events(SUPERVISOR)
    stopped = bool(events) and events[-1]["kind"] == "stopped"
    now = ledger.get_state("sim_now") or NA
    last = ledger.get_state("sim_last_tick") or NA
    state = "stopped" if stopped else ("running" if events else "not started")
    return f"supervisor: {state}\ntick in progress: {now}\nlast finished tick: {last}"


# --- replies -----------------------------------------------------------------------------------

def status_reply(ledger: Ledger, accounts: Iterable[str], now: datetime,
                 breaker_states: Mapping[str, Mapping[str, Any]] | None = None,
                 total: Iterable[str] = ()) -> str:
    """``/status``: the run state, then per account its equity, today's P&L (the New York
    session of ``now``) and the breakers that are not ACTIVE (``breaker_states``: account ->
    breaker name -> reading with ``.state`` and ``.reason``; None: unknown). ``total``: the
    accounts to add up in a ``total`` row (all of them), with the global breakers."""
    accounts, total, session = tuple(accounts), tuple(total), session_of(now)
    parts = [text_reply(_run_state(ledger), "ThetaDesk status")]
    rows, sums = [], []
    for account in dict.fromkeys((*accounts, *total)):
        row = ledger.day(account, session)
        equity = None if row is None else (row["end_equity"] if row["end_equity"] is not None
                                           else row["start_equity"])
        pnl = None if row is None else _change(row)
        if account in accounts:
            rows.append([account, _money(equity), _signed(pnl)])
        if account in total:
            sums.append((equity, pnl))
    if total:
        rows.append(["total", _money(_sum(e for e, _ in sums)), _signed(_sum(p for _, p in sums))])
    if rows:
        parts.append(table_reply(f"Session {session.isoformat()}", rows,
                                 ["account", "equity", "today P&L"]))
    for account in accounts:
        parts.append(_breaker_block(breaker_states, account))
    if total and breaker_states is not None and ALL_ACCOUNTS in breaker_states:
        parts.append(_breaker_block(breaker_states, ALL_ACCOUNTS))
    return _join(parts)


def _legs_text(legs_json: str) -> tuple[str, str, str]:
    """(short strikes, long strikes, expiries) of a position's legs."""
    legs = legs_from_json(legs_json)
    short = "/".join(f"{leg.contract.strike:g}{leg.contract.right.value}"
                     for leg in legs if leg.ratio < 0)
    long = "/".join(f"{leg.contract.strike:g}{leg.contract.right.value}"
                    for leg in legs if leg.ratio > 0)
    expiries = "/".join(sorted({leg.contract.expiry.isoformat() for leg in legs}))
    return short or "-", long or "-", expiries


def _multiplier(legs_json: str) -> int:
    legs = legs_from_json(legs_json)
    return legs[0].contract.multiplier if legs else 100


def _greek_rows(figures: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for key, label in (("delta", "delta (shares)"), ("gamma", "gamma (shares/$1)")):
        per = figures.get(key) or {}
        for und in sorted(per):
            rows.append([f"{label} {und}", _num(per[und])])
    for key, label, fmt in (
        ("beta_weighted_delta", "beta-wtd delta (SPY sh)", "{:+,.2f}"),
        ("vega_per_vol_point", "vega $/vol pt", "{:+,.2f}"),
        ("theta_per_day", "theta $/day", "{:+,.2f}"),
    ):
        rows.append([label, _num(figures.get(key), fmt)])
    return rows


def positions_reply(ledger: Ledger, accounts: Iterable[str],
                    figures: Mapping[str, Mapping[str, float]] | None = None,
                    total: bool = False) -> str:
    """``/positions``: each account's open positions and its latest Greeks; ``total``: then
    the open positions of every account together and their Greeks.

    ``figures``: account -> position id -> the position's current value, the net price per
    share it would cost to close (> 0 debit). Where known, the reply shows it and the
    unrealised P&L ``(entry credit - value) * multiplier * quantity``; else ``n/a``."""
    parts = []
    for account in accounts:
        values = (figures or {}).get(account, {})
        rows = []
        for pos in ledger.positions(account, status="open"):
            short, long, expiry = _legs_text(pos["legs"])
            value = values.get(pos["position_id"])
            pnl = None if value is None else ((pos["entry_price"] - value)
                                              * _multiplier(pos["legs"]) * pos["quantity"])
            rows.append([pos["symbol"], pos["strategy"], short, long, expiry, pos["quantity"],
                         f"{pos['entry_price']:.2f}", NA if value is None else f"{value:.2f}",
                         _signed(pnl)])
        if rows:
            parts.append(table_reply(
                f"{account}: {len(rows)} open position{'s' if len(rows) != 1 else ''}", rows,
                ["symbol", "strategy", "short", "long", "expiry", "qty", "credit", "value",
                 "P&L"]))
        else:
            parts.append(text_reply("no open positions", account))
        risk = risk_figures(ledger, account)
        if risk is None:
            parts.append(text_reply(f"{account} Greeks: no risk figures yet"))
        else:
            parts.append(table_reply(f"{account} Greeks at {risk.get('at', NA)}",
                                     _greek_rows(risk), ["measure", "value"]))
    if total:
        count = len(ledger.positions(None, status="open"))
        risk = risk_figures(ledger, ALL_ACCOUNTS)
        title = f"all accounts: {count} open position{'s' if count != 1 else ''}"
        if risk is None:
            parts.append(text_reply("Greeks: no risk figures yet", title))
        else:
            parts.append(table_reply(f"{title}, Greeks at {risk.get('at', NA)}",
                                     _greek_rows(risk), ["measure", "value"]))
    return _join(parts) if parts else text_reply("no accounts")


def _pnl_parts(ledger: Ledger, accounts: Iterable[str], label: str, session: date) -> list[str]:
    """The period and by-strategy tables of ``accounts`` added together, under ``label``."""
    accounts = tuple(accounts)
    week = session - timedelta(days=session.weekday())
    month = session.replace(day=1)
    rows = [[period, _signed(_sum(period_pnl(ledger, a, first, session) for a in accounts))]
            for period, first in (("today", session), ("week to date", week),
                                  ("month to date", month))]
    parts = [table_reply(f"{label} P&L ({session.isoformat()})", rows, ["period", "P&L"])]
    realized: dict[str, float] = defaultdict(float)
    opened: dict[str, int] = defaultdict(int)
    closed: dict[str, int] = defaultdict(int)
    for account in accounts:
        for pos in ledger.positions(account, status=None):
            opened[pos["strategy"]] += 1
            if pos["status"] == "closed":
                closed[pos["strategy"]] += 1
            if pos["realized_pnl"] is not None:
                realized[pos["strategy"]] += float(pos["realized_pnl"])
        for shares in ledger.share_positions(account, open_only=False):
            if shares["realized_pnl"]:
                realized["shares"] += float(shares["realized_pnl"])
    names = sorted(set(opened) | set(realized))
    if names:
        table = [[n, opened.get(n, 0), closed.get(n, 0), _signed(realized.get(n, 0.0))]
                 for n in names]
        table.append(["total", sum(opened.values()), sum(closed.values()),
                      _signed(sum(realized.values()))])
        parts.append(table_reply(f"{label} realised P&L by strategy", table,
                                 ["strategy", "opened", "closed", "realised"]))
    else:
        parts.append(text_reply(f"{label}: no trades yet"))
    return parts


def pnl_reply(ledger: Ledger, accounts: Iterable[str], now: datetime,
              total: Iterable[str] = ()) -> str:
    """``/pnl``: per account the P&L of today, the week to date (from Monday) and the month to
    date (from the 1st) of ``now``'s New York session, then realised P&L and trade counts by
    strategy (closed or partly closed positions; share positions from assignment as
    ``shares``). ``total``: the same for these accounts added together, last."""
    session = session_of(now)
    parts = []
    for account in accounts:
        parts.extend(_pnl_parts(ledger, (account,), account, session))
    total = tuple(total)
    if total:
        parts.extend(_pnl_parts(ledger, total, "all accounts", session))
    return _join(parts) if parts else text_reply("no accounts")


def _usage(value: Any, limit: float, per_underlying: bool) -> list[tuple[str, float]]:
    """(suffix, |figure|) pairs for one limit: one per underlying or a single one."""
    if per_underlying:
        if not isinstance(value, Mapping):
            return []
        return [(f" {und}", abs(float(v))) for und, v in sorted(value.items()) if v is not None]
    return [] if value is None else [("", abs(float(value)))]


def risk_reply(ledger: Ledger, accounts: Iterable[str],
               limits: Mapping[str, Any] | None = None,
               breaker_states: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """``/risk``: per account the latest figures (VaR/ES, Greeks), each configured limit's
    usage (``|figure| / limit`` in percent; per underlying for delta, gamma and positions per
    symbol) and the breakers not ACTIVE. ``limits``: account -> ``PortfolioLimits``-like
    (attributes ``max_var95`` ... ; None: no limit). ALL_ACCOUNTS among ``accounts``: the
    accounts together (their book's figures, the global limits and breakers)."""
    parts = []
    for account in accounts:
        risk = risk_figures(ledger, account)
        name = account
        account = _label(account)
        if risk is None:
            parts.append(text_reply(f"{account}: no risk figures yet"))
        else:
            rows = [[label, _num(risk.get(key), "{:,.2f}")] for key, label in (
                ("var95", "VaR 95% 1d"), ("var99", "VaR 99% 1d"), ("es95", "ES 95% 1d"),
                ("es99", "ES 99% 1d"), ("total_max_loss", "total max loss"))]
            rows.extend(_greek_rows(risk))
            parts.append(table_reply(f"{account} risk at {risk.get('at', NA)}", rows,
                                     ["measure", "value"]))
            if risk.get("error"):
                parts.append(text_reply(str(risk["error"])))
        account_limits = (limits or {}).get(name)
        usage = []
        if account_limits is not None:
            for attr, label, key, per in _LIMITS:
                limit = getattr(account_limits, attr, None)
                if limit is None:
                    continue
                found = _usage((risk or {}).get(key), float(limit), per)
                fmt = "{:,.0f}" if attr == "max_positions_per_symbol" else "{:,.2f}"
                if not found:
                    usage.append([label, NA, fmt.format(limit), NA])
                for suffix, value in found:
                    pct = f"{100.0 * value / limit:.0f}%" if limit > 0 else NA
                    usage.append([label + suffix, fmt.format(value), fmt.format(limit), pct])
        if usage:
            parts.append(table_reply(f"{account} limit usage", usage,
                                     ["limit", "figure", "limit", "used"]))
        else:
            parts.append(text_reply(f"{account}: no portfolio limits configured"))
        parts.append(_breaker_block(breaker_states, name))
    return _join(parts) if parts else text_reply("no accounts")
