"""RiskActor: shared. The pre-trade gate every order passes, and the circuit breakers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from actors._common import ledger_for, pid, settle, start_process
from thetadesk.config import Config
from thetadesk.messages import AccountTick, Alert, RiskRequest, RiskVerdict
from thetadesk.risk.engine import RiskEngine
from thetadesk.risk.limits import RiskLimits


class RiskActor:
    def __init__(self, config: Config, state_dir: Path, console: bool) -> None:
        start_process(config, state_dir, "risk", console)
        limits = {
            a.name: RiskLimits(a.risk.max_loss_per_trade, a.risk.max_open_positions,
                               a.risk.min_buying_power, a.risk.daily_loss_limit)
            for a in config.accounts
        }
        self.engine = RiskEngine(ledger_for(state_dir), limits)
        settle()

    def check(self, request: RiskRequest) -> RiskVerdict:
        return self.engine.check(request)

    def update(self, now: datetime, ticks: Sequence[AccountTick]) -> list[Alert]:
        return self.engine.update(now, ticks)

    def ping(self) -> int:
        return pid()
