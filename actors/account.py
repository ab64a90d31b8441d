"""AccountActor: one per account. Sizing, risk gate, write-ahead orders, fills, exits."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import ray

from actors._common import current_time, ledger_for, pid, settle, start_process
from thetadesk.account import AccountEngine, AccountRules
from thetadesk.config import Config
from thetadesk.messages import AccountTick, RiskRequest, RiskVerdict, TradeIntent
from thetadesk.wiring import build_broker, build_market


class AccountActor:
    def __init__(self, name: str, config: Config, state_dir: Path, risk, created_at: datetime,
                 console: bool) -> None:
        start_process(config, state_dir, f"account-{name}", console)
        account = next(a for a in config.accounts if a.name == name)
        self.risk = risk
        ray.get(risk.ping.remote())  # open the channel to the risk actor now, not on a trade
        ledger = ledger_for(state_dir)
        market = build_market(config)
        broker = build_broker(account, market, state_dir)
        self.engine = AccountEngine(AccountRules.from_config(account, config.exits), ledger,
                                    broker, market, self._gate, current_time(ledger, created_at))
        settle()

    def _gate(self, request: RiskRequest) -> RiskVerdict:
        return ray.get(self.risk.check.remote(request))

    def set_risk(self, risk) -> None:
        self.risk = risk
        ray.get(risk.ping.remote())

    def prepare(self, now: datetime) -> None:
        self.engine.prepare(now)

    def enter(self, now: datetime, intents: Sequence[TradeIntent] = (),
              proposed_wall: float | None = None) -> AccountTick:
        return self.engine.enter(now, intents, proposed_wall, wall=time.time)

    def ping(self) -> int:
        return pid()
