"""The supervisor's lockstep round in one process, without Ray: for scenario tests (the crash
test of the hedging actor) and benchmarks that need the whole desk but not its processes.

``LockstepDesk`` builds what the actors build from the same ``Config`` (the market, a paper
broker and an ``AccountEngine`` per account, a ``SymbolEngine`` per symbol, the ``RiskEngine``
and, when ``hedging.enabled``, the ``HedgeEngine``) over one ledger in ``state_dir``, and runs
each tick in the supervisor's order: every account's first half (``prepare``: fills, upkeep,
exits), the symbols' intents in the entry window, the hedging check when due, the accounts'
second half (``enter``: hedges, then intents), the breaker update (at a session's first round,
then, as the supervisor does, when one could change state); at each session's close the
risk figures and closes are recorded (``RiskEngine.refresh``). Live sources are refused: this
is for the simulator and replay, where the market is a function of the instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from thetadesk.account import AccountEngine, AccountRules
from thetadesk.chain import NEW_YORK
from thetadesk.clock import MarketCalendar
from thetadesk.config import Config
from thetadesk.errors import ConfigError
from thetadesk.hedging import hedge_book
from thetadesk.messages import AccountTick
from thetadesk.ports import MarketData
from thetadesk.risk.breakers import BreakerWatch, breaker_limits_from_config, update_needed
from thetadesk.store import LEDGER_FILE, Ledger
from thetadesk.symbol import Profiles, SymbolEngine
from thetadesk.wiring import (
    build_broker,
    build_hedge_engine,
    build_market,
    build_risk_engine,
    dividend_yields_of,
)

__all__ = ["DayResult", "LockstepDesk"]


@dataclass(frozen=True, slots=True)
class DayResult:
    """One account's session: equity at the close (dollars, marked to market), the session's
    P&L, open strategy positions, realised P&L to date split into the strategies' and the
    hedges', and the hedge book's open P&L at the close (``hedging.hedge_book``)."""

    session: date
    account: str
    equity: float
    day_pnl: float
    open_positions: int
    strategy_realized: float
    hedge_realized: float
    hedge_unrealized: float


class LockstepDesk:
    """The whole desk of ``config`` in this process; ``close`` when done."""

    def __init__(self, config: Config, state_dir: Path, market: MarketData | None = None, *,
                 durable: bool = True) -> None:
        # durable=False: the ledger and paper brokers skip waiting for the disk (a backtest's
        # scratch state, rerun rather than recovered).
        if config.market.live:
            raise ConfigError(f"the lockstep desk runs simulations only, not market.source "
                              f"{config.market.source!r}")
        self.config = config
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.calendar = MarketCalendar()
        # ``market``: a source the config cannot name (a backtest over users' files).
        self.market = market if market is not None else build_market(config,
                                                                     state_dir=self.state_dir)
        self.ledger = Ledger(self.state_dir / LEDGER_FILE, durable=durable)
        self.risk = build_risk_engine(config, self.ledger, self.market)
        self.entry_rules = Profiles.from_config(config)
        self.symbols = {s: SymbolEngine(s, Profiles.for_symbol(config, s), self.market,
                                        self.ledger)
                        for s in config.market.symbols}
        yields = dividend_yields_of(config)
        start = self.calendar.session_open(self._first_session())
        self.brokers = {}
        self.accounts: dict[str, AccountEngine] = {}
        for account in config.accounts:
            broker = build_broker(account, self.market, self.state_dir, dividend_yields=yields,
                                  durable=durable)
            self.brokers[account.name] = broker
            rules = AccountRules.from_config(account, config.exits, rate=config.market.rate,
                                             dividend_yields=tuple(sorted(yields.items())),
                                             sizing=config.sizing)
            self.accounts[account.name] = AccountEngine(rules, self.ledger, broker, self.market,
                                                        self._check_one, start,
                                                        risk_batch=self._check_entries)
        self.hedger = (build_hedge_engine(config, self.ledger, self.market)
                       if config.hedging.enabled else None)
        self._hedge_checked: datetime | None = None
        self.breakers = BreakerWatch(self.ledger, breaker_limits_from_config(config))
        self._evaluated_on: date | None = None  # New York date of the last breaker update
        self._next_session = self._first_session()

    def _check_one(self, request):
        return self.risk.check(request, record=False)

    def _check_entries(self, requests):
        """The accounts' entries, checked as the account actors have them checked: the
        verdicts are recorded by the account with the orders they approve."""
        return self.risk.check_many(requests, record=False)

    def _first_session(self) -> date:
        return self.calendar.next_session(self.config.market.start)

    def tick(self, now: datetime) -> dict[str, AccountTick]:
        """One lockstep round at ``now``; every account's tick report."""
        for engine in self.accounts.values():
            engine.prepare(now)
        intents = []
        if self.entry_rules.in_entry_window(now):
            wanted = set().union(*(e.entry_symbols() for e in self.accounts.values()))
            for symbol in sorted(wanted):
                intents.extend(self.symbols[symbol].tick(now).intents)
        hedges = {}
        if self.hedger is not None and (self._hedge_checked is None or now - self._hedge_checked
                                        >= timedelta(minutes=self.config.hedging.check_minutes)):
            hedges = self.hedger.decide(now)
            self._hedge_checked = now
        ticks = {}
        for account in self.config.accounts:
            mine = [i for i in intents
                    if i.symbol in account.symbols and i.profile in account.strategies]
            ticks[account.name] = self.accounts[account.name].enter(
                now, mine, hedges=hedges.get(account.name, ()))
        # The breakers are evaluated at a session's first round (a warning level still reached
        # is recorded again in each session, which the backtest's reset policy counts), then
        # only when one could change state (``BreakerWatch``: a closed trade, a refusal, a
        # loss or data age near a limit): what ``evaluate`` does on any other round is nothing.
        today = now.astimezone(NEW_YORK).date()
        if today != self._evaluated_on or update_needed(ticks.values(), self.breakers):
            self.risk.update(now, ticks.values())
            self._evaluated_on = today
        return ticks

    def run_session(self, session: date) -> list[DayResult]:
        """Every tick of ``session``, then the close's risk figures; the accounts' day."""
        last: dict[str, AccountTick] = {}
        for now in self.calendar.ticks(session, self.config.market.tick_seconds):
            last = self.tick(now)
        close = self.calendar.session_close(session)
        self.risk.refresh(close, at_close=True)
        out = []
        for name, tick in last.items():
            split = self.ledger.pnl_attribution(name)
            book = hedge_book(self.ledger, self.market, name, close)
            out.append(DayResult(session, name, tick.equity, tick.day_pnl, tick.open_positions,
                                 split["strategy"], split["hedge"], book["unrealized"]))
        return out

    def run(self, sessions: int) -> list[DayResult]:
        """The next ``sessions`` sessions, in order."""
        out = []
        for session in self.calendar.sessions(self._next_session, sessions):
            out.extend(self.run_session(session))
            self._next_session = self.calendar.next_session(session + timedelta(days=1))
        return out

    def close(self) -> None:
        for broker in self.brokers.values():
            broker.close()
        self.ledger.close()
