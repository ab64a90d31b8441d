"""RiskActor: shared. The pre-trade gate every order passes, and the circuit breakers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from actors._common import ledger_for, pid, settle, start_process
from thetadesk.config import Config
from thetadesk.messages import AccountTick, Alert, RiskRequest, RiskVerdict
from thetadesk.risk.engine import RiskEngine, limits_from_config


class RiskActor:
    def __init__(self, config: Config, state_dir: Path, console: bool) -> None:
        start_process(config, state_dir, "risk", console)
        self.engine = RiskEngine(ledger_for(state_dir), limits_from_config(config))
        settle()

    def check(self, request: RiskRequest) -> RiskVerdict:
        return self.engine.check(request)

    def update(self, now: datetime, ticks: Sequence[AccountTick]) -> list[Alert]:
        return self.engine.update(now, ticks)

    def ping(self) -> int:
        return pid()
