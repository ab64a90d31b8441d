"""HedgingActor: shared. Each account's delta band and tail protection (``thetadesk.hedging``).

It decides; the account actors place the orders (they own their brokers and ledger rows), each
through the risk gate. The supervisor asks it at most every ``hedging.check_minutes`` of market
time, alongside the symbol actors, and hands each account its orders in the same round.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from actors._common import footprint, ledger_for, pid, settle, start_process
from thetadesk.config import Config
from thetadesk.messages import HedgeOrder
from thetadesk.wiring import build_hedge_engine, build_market


class HedgingActor:
    def __init__(self, config: Config, state_dir: Path, console: bool) -> None:
        start_process(config, state_dir, "hedging", console)
        ledger = ledger_for(state_dir)
        self.engine = build_hedge_engine(config, ledger,
                                         build_market(config, state_dir=state_dir))
        settle()

    def tick(self, now: datetime) -> dict[str, tuple[HedgeOrder, ...]]:
        """Every account's hedge orders at ``now``."""
        return self.engine.decide(now)

    def report(self, account: str) -> dict | None:
        """The latest check's figures for ``account`` (delta, band, gamma, upkeep, budget)."""
        return self.engine.report(account)

    def ping(self) -> int:
        return pid()

    def footprint(self) -> dict:
        return footprint()
