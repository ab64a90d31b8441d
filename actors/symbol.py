"""SymbolActor: one per underlying. Market snapshot -> signals -> trade intents."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from actors._common import footprint, ledger_for, pid, settle, start_process, warm_market
from thetadesk.config import Config
from thetadesk.messages import SymbolTick
from thetadesk.symbol import Profiles, SymbolEngine
from thetadesk.wiring import build_market


class SymbolActor:
    def __init__(self, symbol: str, config: Config, state_dir: Path, console: bool) -> None:
        start_process(config, state_dir, f"symbol-{symbol}", console)
        profiles = Profiles.for_symbol(config, symbol)
        # The adaptive strategy records its regime changes in the ledger.
        ledger = ledger_for(state_dir) if profiles.adaptive() else None
        self.engine = SymbolEngine(symbol, profiles, build_market(config, state_dir=state_dir),
                                   ledger)
        warm_market(config, self.engine.market, symbol)
        settle()

    def tick(self, now: datetime) -> tuple[SymbolTick, float]:
        """The symbol's tick and the wall-clock time it was proposed (for latency stats)."""
        result = self.engine.tick(now)
        return result, time.time()

    def ping(self) -> int:
        return pid()

    def footprint(self) -> dict:
        return footprint()
