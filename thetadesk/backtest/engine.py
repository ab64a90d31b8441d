"""The backtester: the desk's own components over history, on a simulated clock, without Ray.

``Backtest`` runs ``thetadesk.lockstep.LockstepDesk`` (the supervisor's lockstep round in one
process: ``SymbolEngine`` intents, ``AccountEngine`` sizing, position management and paper
fills, the ``RiskEngine`` gate and breakers, the ``HedgeEngine`` when hedging is on) session by
session over a data source, so a backtest and ``python supervisor.py --sim-days N`` of the same
config make the same decisions: nothing is reimplemented here. It only collects what the
sessions produced (equity at each close, the ledger's trades and fills) and hands it to
``thetadesk.analytics`` and the baselines.

Data sources (``backtest_config``):

- ``replay`` (the default): the real S&P 500 and NASDAQ Composite daily history with VIX-based
  implied volatility (``thetadesk.adapters.replay.HistoricalReplay``), default window
  2014-01-02 to 2018-10-31. It serves SPY (the S&P 500) and QQQ (the NASDAQ Composite, a
  proxy for the NASDAQ-100), so other symbols are left out (and said so in ``notes``).
- ``sim``: the seeded simulator of the config.
- a path: users' bars (and optionally option quotes) as CSV or Parquet
  (``UserDataReplay``): a directory holding ``bars.csv`` / ``bars.parquet`` and optionally
  ``quotes.csv`` / ``quotes.parquet``, or a bars file itself. Symbols the bars do not have are
  left out.

Fill models (``FILL_MODELS``, ``--fill-model``): each simulated account's ``fill_model`` is
replaced by the named one; without a name the config's own is used (the supervisor's).

- ``natural``: a marketable limit (the desk prices orders at the natural) fills at it.
- ``mid``: fills at the legs' mid (optimistic: no spread paid).
- ``mid_slippage``: fills at the mid less ``slippage_ticks`` $0.01 per share.
- ``volume_share``: at the natural, at most ``display_share`` of the displayed size per poll
  and ``open_interest_share`` of the open interest per order (where the data gives it).

Commissions and fees are the accounts' as in the paper broker.

Costs paid (``BacktestResult.costs``, dollars, over every fill of the run, hedges' included):
``commissions``, the fills' ``commission`` column (the total fees of each execution);
``spread``, what the fills gave up against the mid: for an options fill (mid_net - fill_price) x
multiplier x quantity, where mid_net is the net mid per share of one unit of the order's legs
(sum of -ratio x leg mid, > 0 a credit) and the fill price is net per share (> 0 a credit), so
paying is positive and a fill better than the mid negative; for a share fill (fill - spot) x
shares for a buy, (spot - fill) x shares for a sell. The quotes are the market's at the fill's
own time, which are the quotes the paper broker saw (the replay and the simulator are functions
of time). A fill with a leg the market cannot quote then counts in ``spread_unknown_fills``, is
left out of ``spread`` and is said so in the notes, never guessed. ``total`` = commissions +
spread; ``per_trade`` the mean of that over the closed strategy positions, their opening and
closing fills (None without a closed trade, or when one of their fills has no spread).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from thetadesk.analytics.attribution import regime_at_entry
from thetadesk.analytics.metrics import Trade
from thetadesk.chain import NEW_YORK
from thetadesk.clock import MarketCalendar
from thetadesk.config import Config, parse_config
from thetadesk.errors import ConfigError, DataError
from thetadesk.lockstep import LockstepDesk
from thetadesk.ports import MarketData
from thetadesk.risk.breakers import State
from thetadesk.store import HEDGE_PREFIX, legs_from_json

__all__ = [
    "FILL_MODELS",
    "REPLAY_END",
    "REPLAY_START",
    "Backtest",
    "BacktestResult",
    "SessionRow",
    "backtest_config",
]

FILL_MODELS = ("natural", "mid", "mid_slippage", "volume_share")
REPLAY_START, REPLAY_END = date(2014, 1, 2), date(2018, 10, 31)
REPLAY_SYMBOLS = ("SPY", "QQQ")
SIM_DEFAULT_SESSIONS = 252
_HISTORY_FOR_REGIME = 60  # sessions of closes before the start, for the regime at entry
BACKTEST_POLICY = "backtest policy"  # who resets a breaker under backtest.reset_after_sessions


@dataclass(frozen=True, slots=True)
class SessionRow:
    """The desk at one session's close: every account's equity added up (dollars, marked at
    mid), the day's P&L, open strategy positions, the underlyings' closes."""

    session: date
    equity: float
    day_pnl: float
    open_positions: int
    closes: dict[str, float]
    by_account: dict[str, float]


@dataclass
class BacktestResult:
    config: Config
    data: str
    fill_model: str
    capital: float
    sessions: list[SessionRow]
    trades: list[Trade]
    hedge_trades: list[Trade]
    premium_traded: float
    attribution_books: dict[str, float]
    fills: int
    intents: int
    decisions: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    costs: dict[str, Any] = field(default_factory=dict)
    open_at_end: list[str] = field(default_factory=list)
    # Every breaker trip, warning and reset of the run (the ledger's breaker_events rows).
    breaker_events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def equity(self) -> list[float]:
        return [row.equity for row in self.sessions]


def _user_files(path: Path) -> tuple[Path, Path | None]:
    if path.is_dir():
        def find(stem: str) -> Path | None:
            for ext in (".csv", ".parquet"):
                if (path / f"{stem}{ext}").is_file():
                    return path / f"{stem}{ext}"
            return None

        bars = find("bars")
        if bars is None:
            raise ConfigError(f"--data {path}: the directory holds no bars.csv or bars.parquet")
        return bars, find("quotes")
    if path.is_file():
        return path, None
    raise ConfigError(f"--data {path}: no such file or directory (or use replay or sim)")


def _keep_symbols(data: dict, keep: set[str], why: str, notes: list[str]) -> None:
    market = data["market"]
    dropped = [s for s in market.get("symbols", {}) if s not in keep]
    if not dropped:
        return
    market["symbols"] = {s: v for s, v in market["symbols"].items() if s in keep}
    if not market["symbols"]:
        raise ConfigError(f"market.symbols: none of the config's symbols ({', '.join(dropped)})"
                          f" are in the data: {why}")
    for account in data.get("accounts", []):
        account["symbols"] = [s for s in account.get("symbols", []) if s in keep]
        if not account["symbols"]:
            raise ConfigError(f"accounts.{account.get('name')}.symbols: none is in the data: "
                              f"{why}")
    sim = market.get("sim")
    if isinstance(sim, dict) and isinstance(sim.get("daily_expiries"), list):
        sim["daily_expiries"] = [s for s in sim["daily_expiries"] if s in keep]
    hedging = data.get("hedging")
    if isinstance(hedging, dict) and hedging.get("symbol") in dropped:
        hedging["symbol"] = next(iter(market["symbols"]))
    notes.append(f"{', '.join(dropped)} left out: {why}")


def _fill_model(name: str, slippage_ticks: int, display_share: float,
                open_interest_share: float) -> dict:
    if name == "natural":
        return {"mode": "limit"}
    if name == "mid":
        return {"mode": "mid"}
    if name == "mid_slippage":
        return {"mode": "mid", "slippage_ticks": slippage_ticks}
    if name == "volume_share":
        return {"mode": "limit", "max_display_share": display_share,
                "max_open_interest_share": open_interest_share}
    raise ConfigError(f"--fill-model: {name!r} is not one of {', '.join(FILL_MODELS)}")


def backtest_config(
    data: Mapping[str, Any], *, source: str | Path = "replay", start: date | None = None,
    end: date | None = None, fill_model: str | None = None, slippage_ticks: int = 2,
    display_share: float = 0.1, open_interest_share: float = 0.05,
) -> tuple[Config, MarketData | None, date, list[str]]:
    """The config the backtest runs (from the raw config mapping ``data``), a market to use
    instead of the configured one (users' files) or None, the last session, and notes on what
    was changed to fit the data."""
    raw = json.loads(json.dumps(data, default=str))  # a deep copy with plain values
    notes: list[str] = []
    market_data = None
    raw.setdefault("market", {})
    if isinstance(source, str) and source == "replay":
        raw["market"]["source"] = "replay"
        _keep_symbols(raw, set(REPLAY_SYMBOLS), "the replay has SPY (S&P 500) and QQQ (NASDAQ)",
                      notes)
        start = start or REPLAY_START
        end = end or REPLAY_END
    elif isinstance(source, str) and source == "sim":
        raw["market"]["source"] = "sim"
    else:
        from thetadesk.adapters.replay import UserDataReplay

        bars, quotes = _user_files(Path(source))
        raw["market"]["source"] = "sim"  # the config's symbols; the market is the files
        spy = next(iter(raw["market"].get("symbols", {}).values()), {})
        market_data = UserDataReplay.from_files(
            bars, quotes, rate=float(raw["market"].get("rate", 0.0)),
            dividend_yield=float(spy.get("dividend_yield", 0.0)))
        _keep_symbols(raw, set(market_data.symbols), f"the bars in {bars} have "
                      f"{', '.join(market_data.symbols)}", notes)
        if start is None:
            raise ConfigError("--start is needed with --data PATH (the first session to trade)")
    if start is not None:
        raw["market"]["start"] = start.isoformat()
    if fill_model is not None:
        model = _fill_model(fill_model, slippage_ticks, display_share, open_interest_share)
        for account in raw.get("accounts", []):
            if account.get("broker", "sim") == "sim":
                seed = (account.get("fill_model") or {}).get("seed")
                account["fill_model"] = {**model, **({"seed": seed} if seed is not None else {})}
    config = parse_config(raw)
    calendar = MarketCalendar()
    first = calendar.next_session(config.market.start)
    if end is None:
        end = calendar.sessions(first, SIM_DEFAULT_SESSIONS)[-1]
    if end < first:
        raise ConfigError(f"--end {end.isoformat()} is before the first session "
                          f"{first.isoformat()}")
    return config, market_data, end, notes


def _ny_date(iso: str) -> date:
    return datetime.fromisoformat(iso).astimezone(NEW_YORK).date()


def _spread_paid(order: Mapping[str, Any] | None, fill: Mapping[str, Any],
                 market: MarketData) -> float | None:
    """Dollars the fill gave up against the mid at its time (module docs); None if unknown."""
    if order is None:
        return None
    when = datetime.fromisoformat(fill["time"])
    price, quantity = float(fill["price"]), int(fill["quantity"])
    try:
        if order.get("instrument") == "shares":
            spot = market.spot(order["symbol"], when)
            paid = (price - spot if order.get("side") == "buy" else spot - price) * quantity
        else:
            legs = legs_from_json(order["legs"])
            mid = sum(-leg.ratio * market.quote(leg.contract, when).mid for leg in legs)
            paid = (mid - price) * legs[0].contract.multiplier * quantity
    except (DataError, ValueError, KeyError, IndexError):
        return None
    return paid if math.isfinite(paid) else None


def fill_costs(fills: list[dict[str, Any]], orders: Mapping[str, Mapping[str, Any]],
               market: MarketData, closed_positions: list[str]) -> dict[str, Any]:
    """Commissions and spread paid by ``fills`` (ledger rows; ``orders`` by client order id)
    and the mean per closed position of ``closed_positions`` (module docs), in dollars."""
    commissions = spread = 0.0
    unknown = 0
    by_position: dict[str, list[float | None]] = {}
    for f in fills:
        order = orders.get(f["client_order_id"])
        commission = float(f["commission"])
        paid = _spread_paid(order, f, market)
        commissions += commission
        if paid is None:
            unknown += 1
        else:
            spread += paid
        if order is not None:
            by_position.setdefault(order["position_id"], []).append(
                None if paid is None else commission + paid)
    per_trade = None
    if closed_positions:
        costs = [c for pid in closed_positions for c in by_position.get(pid, [])]
        if all(c is not None for c in costs):
            per_trade = sum(costs) / len(closed_positions)  # type: ignore[arg-type]
    return {"commissions": commissions, "spread": spread, "total": commissions + spread,
            "per_trade": per_trade, "fills": len(fills), "spread_unknown_fills": unknown}


class Backtest:
    """One backtest: ``config`` from ``backtest_config`` run from ``config.market.start`` to
    ``end`` (both sessions included) with a fresh ledger in ``state_dir``."""

    def __init__(self, config: Config, state_dir: Path, *, end: date,
                 market: MarketData | None = None, data: str = "replay",
                 fill_model: str | None = None, notes: list[str] | None = None) -> None:
        state_dir = Path(state_dir)
        if (state_dir / "thetadesk.db").exists():
            raise ConfigError(f"{state_dir} already holds a backtest's ledger: give another "
                              "--out directory or remove it")
        self.config = config
        self.end = end
        self.data = data
        self.fill_model = fill_model or "config"
        self.notes = list(notes or [])
        # A backtest's ledger is scratch: rerun, never recovered, so no waiting on the disk.
        self.desk = LockstepDesk(config, state_dir, market=market, durable=False)
        self.calendar = self.desk.calendar
        first = self.calendar.next_session(config.market.start)
        self.session_dates = self._sessions(first, end)
        if not self.session_dates:
            raise ConfigError(f"no session between {first} and {end}")

    def _sessions(self, first: date, end: date) -> list[date]:
        out, d = [], first
        while d <= end:
            out.append(d)
            d = self.calendar.next_session(d + timedelta(days=1))
        return out

    @property
    def market(self) -> MarketData:
        return self.desk.market

    def _closes(self, session: date) -> dict[str, float]:
        close = self.calendar.session_close(session)
        out = {}
        for symbol in self.config.market.symbols:
            try:
                out[symbol] = self.market.spot(symbol, close)
            except DataError:
                out[symbol] = math.nan
        return out

    def _history(self) -> dict[str, list[float]]:
        """Closes of up to 60 sessions before the first (the regime at the first entries)."""
        out: dict[str, list[float]] = {s: [] for s in self.config.market.symbols}
        d = self.session_dates[0]
        days = []
        for _ in range(_HISTORY_FOR_REGIME):
            try:
                d = self.calendar.previous_session(d)
            except (ValueError, DataError):
                break
            days.append(d)
        for day in reversed(days):
            close = self.calendar.session_close(day)
            for symbol in out:
                try:
                    out[symbol].append(self.market.spot(symbol, close))
                except DataError:
                    pass
        return out

    def reset_by_policy(self, session: date) -> list[tuple[str, str]]:
        """Before ``session``: a breaker that needs a person (``auto_reset: manual``) is reset
        as a person would have reset it, recorded in the ledger by ``backtest policy`` with the
        rule in its reason, once it has been HALTED for ``backtest.reset_after_sessions``
        sessions, or REDUCING in each of the last that many sessions (a warning level that
        cannot clear by itself: with no new entry, a losing streak cannot end and a drawdown
        cannot be made good, so it would hold entries back for the rest of the run). Returns
        the (account, breaker) pairs reset. Nothing without the setting."""
        after = self.config.backtest.reset_after_sessions
        if after is None:
            return []
        now = self.calendar.session_open(session)
        risk = self.desk.risk
        done = []
        for account in sorted(risk.breakers.limits):
            manual = risk.breakers.limits[account]
            for name, reading in risk.breaker_states(account, now).items():
                why, stuck = None, False
                if reading.state is State.HALTED and reading.session is not None:
                    tripped = date.fromisoformat(reading.session)
                    elapsed = len(self._sessions(self.calendar.next_session(
                        tripped + timedelta(days=1)), session))
                    if elapsed >= after:
                        why = f"{after} session(s) after the trip of {tripped}"
                elif (reading.state is State.ACTIVE and name not in manual.next_session
                      and self._reducing_streak(account, name, session) >= after):
                    why, stuck = (f"REDUCING in each of the {after} session(s) before "
                                  f"{session}"), True
                if why is not None and risk.reset_breaker(
                        account, name, by=BACKTEST_POLICY, now=now,
                        reason=f"backtest.reset_after_sessions: {why}", restart_counts=stuck):
                    done.append((account, name))
        return done

    def _reducing_streak(self, account: str, name: str, session: date) -> int:
        """In how many sessions in a row, ending with the one before ``session``, breaker
        ``name`` reached its REDUCING level (since its last reset)."""
        warned: set[str] = set()
        for event in self.desk.ledger.breaker_events(account, name):
            if event["kind"] == "reset":
                warned.clear()
            elif event["kind"] == "reducing":
                warned.add(event["session"])
        n, d = 0, session
        while warned:
            try:
                d = self.calendar.previous_session(d)
            except (ValueError, DataError):
                break
            if d.isoformat() not in warned:
                break
            n += 1
        return n

    def run(self, progress: Callable[[date], None] | None = None) -> BacktestResult:
        """Every session; ``progress(session)`` after each."""
        history = self._history()
        rows: list[SessionRow] = []
        try:
            for session in self.session_dates:
                self.reset_by_policy(session)
                results = self.desk.run_session(session)
                rows.append(SessionRow(
                    session=session,
                    equity=sum(r.equity for r in results),
                    day_pnl=sum(r.day_pnl for r in results),
                    open_positions=sum(r.open_positions for r in results),
                    closes=self._closes(session),
                    by_account={r.account: r.equity for r in results},
                ))
                if progress is not None:
                    progress(session)
            return self._result(rows, history)
        finally:
            self.desk.close()

    def _result(self, rows: list[SessionRow], history: dict[str, list[float]]) -> BacktestResult:
        ledger = self.desk.ledger
        capital = sum(a.starting_cash for a in self.config.accounts)
        orders = {o["client_order_id"]: o for o in ledger.orders()}
        intents = {i["client_order_id"]: i for i in ledger.intents()}
        fills = ledger.fills()
        premium = 0.0
        for f in fills:
            order = orders.get(f["client_order_id"])
            if order is None:
                continue
            try:
                multiplier = legs_from_json(order["legs"])[0].contract.multiplier
            except (DataError, ValueError, KeyError, IndexError):
                continue  # a share order (hedge shares): no option premium
            premium += abs(f["price"]) * multiplier * f["quantity"]
        closes_by_symbol = {s: [*history.get(s, [])] for s in self.config.market.symbols}
        trades, hedges = [], []
        for pos in ledger.positions(status="closed"):
            legs = legs_from_json(pos["legs"])
            opened = _ny_date(pos["opened_at"])
            expiry = min(leg.contract.expiry for leg in legs)
            context = json.loads((intents.get(pos["position_id"]) or {}).get("context") or "{}")
            iv = context.get("atm_iv")
            before = [row.closes.get(pos["symbol"], math.nan)
                      for row in rows if row.session < opened]
            series = [x for x in closes_by_symbol.get(pos["symbol"], []) + before
                      if math.isfinite(x)]
            book = "hedge" if pos["strategy"].startswith(HEDGE_PREFIX) else "strategy"
            trade = Trade(
                position_id=pos["position_id"], account=pos["account"], symbol=pos["symbol"],
                strategy=pos["strategy"], opened_at=pos["opened_at"],
                closed_at=pos["closed_at"], quantity=int(pos["initial_quantity"]
                                                        or pos["quantity"]),
                entry_price=float(pos["entry_price"]), exit_reason=pos["exit_reason"] or "",
                pnl=float(pos["realized_pnl"] or 0.0), entry_dte=(expiry - opened).days,
                regime=regime_at_entry(series, iv if isinstance(iv, int | float) else None),
                book=book)
            (hedges if book == "hedge" else trades).append(trade)
        costs = fill_costs(fills, orders, self.market, [t.position_id for t in trades])
        notes = list(self.notes)
        if costs["spread_unknown_fills"]:
            notes.append(f"spread paid unknown for {costs['spread_unknown_fills']} of "
                         f"{costs['fills']} fills (a leg without a quote at the fill's time): "
                         "left out of costs.spread")
        open_at_end = sorted(pos["opened_at"] for pos in ledger.positions(status="open")
                             if not pos["strategy"].startswith(HEDGE_PREFIX))
        books = {"strategy": 0.0, "hedge": 0.0}
        for account in self.config.accounts:
            split = ledger.pnl_attribution(account.name)
            books["strategy"] += split["strategy"]
            books["hedge"] += split["hedge"]
        return BacktestResult(
            config=self.config, data=self.data, fill_model=self.fill_model, capital=capital,
            sessions=rows, trades=trades, hedge_trades=hedges, premium_traded=premium,
            attribution_books=books, fills=len(fills), intents=len(intents),
            decisions=ledger.decisions(status=None), notes=notes, history=history,
            costs=costs, open_at_end=open_at_end,
            breaker_events=[e for a in sorted(self.desk.risk.breakers.limits)
                            for e in ledger.breaker_events(a)])
