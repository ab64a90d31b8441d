"""AccountActor: one per account. Sizing, risk gate, write-ahead orders, fills, exits."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import ray

from actors._common import (
    SIM_LAST_TICK,
    SIM_NOW,
    current_time,
    footprint,
    ledger_for,
    pid,
    settle,
    start_process,
)
from thetadesk.account import AccountEngine, AccountRules
from thetadesk.config import ALL_ACCOUNTS, Config
from thetadesk.messages import (
    AccountRound,
    AccountTick,
    HedgeOrder,
    RiskRequest,
    RiskVerdict,
    TradeIntent,
)
from thetadesk.risk.breakers import BreakerWatch, breaker_limits_from_config, update_needed
from thetadesk.symbol import Profiles
from thetadesk.wiring import build_broker, build_market, dividend_yields_of


class AccountActor:
    def __init__(self, name: str, config: Config, state_dir: Path, risk, created_at: datetime,
                 console: bool) -> None:
        # No compiled kernels: the account quotes its own book, one contract at a time, and
        # prices a short leg's delta now and then; a few elements run as Python in
        # thetadesk.pricing with the same answers, and the process stays ~45 MB smaller
        # without numba (20 accounts: ~0.9 GB). A roll's chain, or a fill model reading open
        # interest, loads numba when it first needs it.
        start_process(config, state_dir, f"account-{name}", console, kernels=False)
        account = next(a for a in config.accounts if a.name == name)
        self.risk = risk
        ray.get(risk.ping.remote())  # open the channel to the risk actor now, not on a trade
        ledger = ledger_for(state_dir)
        market = build_market(config, state_dir=state_dir, whole_expiries=False)
        broker = build_broker(account, market, state_dir,
                              dividend_yields=dividend_yields_of(config),
                              recorded_fills=ledger.account_fills(name))
        rules = AccountRules.from_config(
            account, config.exits, rate=config.market.rate,
            dividend_yields=tuple(sorted(dividend_yields_of(config).items())),
            sizing=config.sizing)
        self.engine = AccountEngine(rules, ledger, broker, market, self._gate,
                                    current_time(ledger, created_at), risk_batch=self._gate_many)
        # What the supervisor would look at between two ticks (see ``rounds``).
        self.entry_rules = Profiles.from_config(config, account.strategies)
        limits = breaker_limits_from_config(config)  # its own breakers, and the global one
        self.breakers = BreakerWatch(ledger, {k: v for k, v in limits.items()
                                              if k in (name, ALL_ACCOUNTS)})
        settle()

    def _gate(self, request: RiskRequest) -> RiskVerdict:
        return ray.get(self.risk.check.remote(request, False))  # the account records it

    def _gate_many(self, requests: Sequence[RiskRequest]) -> list[RiskVerdict]:
        # The account records the verdicts with the orders they approve (record=False): the
        # risk actor, which the accounts wait for in turn, never waits for the write lock.
        return ray.get(self.risk.check_many.remote(list(requests), False))

    def set_risk(self, risk) -> None:
        self.risk = risk
        ray.get(risk.ping.remote())

    def prepare(self, now: datetime) -> tuple[str, ...]:
        """The first half of the round at ``now``; the symbols the account would act on."""
        self.engine.prepare(now)
        return self._ready()

    def enter(self, now: datetime, intents: Sequence[TradeIntent] = (),
              proposed_wall: float | None = None) -> AccountTick:
        return self.engine.enter(now, intents, proposed_wall, wall=time.time)

    def round(self, now: datetime, intents: Sequence[TradeIntent] = (),
              proposed_wall: float | None = None,
              next_now: datetime | None = None,
              hedges: Sequence[HedgeOrder] = ()) -> AccountRound:
        """One call per tick: the second half of the round at ``now`` (``enter``: the hedging
        actor's orders, then the symbols' intents) and, when ``next_now`` is given, the first
        half of the next one (``prepare``), which needs nothing from the symbols."""
        tick = self.engine.enter(now, intents, proposed_wall, wall=time.time, hedges=hedges)
        if next_now is None:
            return AccountRound(tick)
        self.engine.prepare(next_now)
        return AccountRound(tick, self._ready())

    def rounds(self, now: datetime, intents: Sequence[TradeIntent] = (),
               proposed_wall: float | None = None, upcoming: Sequence[datetime] = (),
               quiet: int = 0, hedges: Sequence[HedgeOrder] = ()) -> tuple[AccountRound, ...]:
        """``round`` at ``now`` (preparing ``upcoming[0]`` if given), then, a quiet run, up to
        ``quiet`` of the ``upcoming`` ticks in order while the supervisor would have nothing
        to do between two of them but record the clock: no symbol to ask (every symbol is
        busy, or the tick is outside the entry window), no alert to deliver, no breaker to
        check. The supervisor offers quiet runs to a lone account only. The clock is recorded
        here for each of those ticks (``sim_now``, and ``sim_last_tick`` for the one before,
        committed with the tick's own ledger write), so a restarted actor, a resumed
        supervisor, and the supervisor after this call failed, find it where the account is."""
        upcoming = tuple(upcoming)
        out = [self.round(now, intents, proposed_wall, upcoming[0] if upcoming else None,
                          hedges)]
        for j in range(min(quiet, len(upcoming))):
            at = upcoming[j]
            if not self._quiet(out[-1], at):
                break
            before = upcoming[j - 1] if j else now
            out.append(self._quiet_round(at, before,
                                         upcoming[j + 1] if j + 1 < len(upcoming) else None))
        return tuple(out)

    def _quiet_round(self, at: datetime, before: datetime,
                     next_now: datetime | None) -> AccountRound:
        """``round`` at ``at`` with no intents, its first half already done. That second half
        only reads and writes the ledger's daily row (no risk gate, no broker order): its write
        and the clock's record commit together, one fsync rather than two; the next tick's
        first half (exits: risk gate and broker) runs outside that transaction, as always."""
        engine, ledger = self.engine, self.engine.ledger
        clock = {SIM_NOW: at.isoformat(), SIM_LAST_TICK: before.isoformat()}
        if not engine.prepared(at):  # not prepared (never the case here): keep them apart
            ledger.set_states(clock)
            return self.round(at, (), None, next_now)
        with ledger.transaction():
            ledger.set_states(clock)
            tick = engine.enter(at, (), None, wall=time.time)
        if next_now is None:
            return AccountRound(tick)
        engine.prepare(next_now)
        return AccountRound(tick, self._ready())

    def _quiet(self, last: AccountRound, at: datetime) -> bool:
        """Whether the supervisor would only record the clock between ``last`` and ``at``."""
        if last.ready is None or last.tick.alerts or update_needed((last.tick,), self.breakers):
            return False
        return not last.ready or not self.entry_rules.in_entry_window(at)

    def _ready(self) -> tuple[str, ...]:
        """The account's symbols whose intents ``enter`` would act on after ``prepare``."""
        return self.engine.entry_symbols()

    def prewarm(self, at: datetime) -> int:
        """Between two sessions of a simulation (the supervisor does not ask live): the
        market's quotes for the first round at ``at`` made now (``AccountEngine.prewarm``)."""
        return self.engine.prewarm(at)

    def close_all(self, now: datetime, by: str) -> int:
        """Close every open position from the next round on (Telegram ``/closeall``, after the
        caller halted entries); how many positions and share holdings are open."""
        return self.engine.request_close_all(now, by)

    def take_alerts(self) -> tuple:
        """What recovery found at start-up (see ``AccountEngine.take_alerts``)."""
        return self.engine.take_alerts()

    def ping(self) -> int:
        return pid()

    def footprint(self) -> dict:
        return footprint()
