"""RiskActor: shared. The pre-trade gate every order passes, and the circuit breakers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from actors._common import footprint, ledger_for, pid, settle, start_process, warm_market
from actors.stress import run_stress
from thetadesk.config import Config
from thetadesk.errors import DataError
from thetadesk.messages import AccountTick, Alert, RiskRequest, RiskVerdict
from thetadesk.store import legs_from_json
from thetadesk.wiring import build_market, build_risk_engine


class RiskActor:
    def __init__(self, config: Config, state_dir: Path, console: bool) -> None:
        start_process(config, state_dir, "risk", console)
        # The market is a pure function of (seed, time) in simulation, so the risk actor prices
        # the books it gates from its own copy, with no extra Ray hop.
        self.engine = build_risk_engine(config, ledger_for(state_dir),
                                        build_market(config, state_dir=state_dir))
        self.reports = config.risk_reports
        self.seed = config.seed
        warm_market(config, self.engine.snapshots.market, next(iter(config.market.symbols)))
        settle()

    def check(self, request: RiskRequest, record: bool = True) -> RiskVerdict:
        return self.engine.check(request, record)

    def check_many(self, requests: Sequence[RiskRequest],
                   record: bool = True) -> list[RiskVerdict]:
        """An account's entries of one tick, checked in order (``RiskEngine.check_many``)."""
        return self.engine.check_many(requests, record)

    def update(self, now: datetime, ticks: Sequence[AccountTick]) -> list[Alert]:
        return self.engine.update(now, ticks)

    def refresh(self, now: datetime, at_close: bool = False) -> dict[str, dict]:
        """Re-measure every account's book (after fills; with Monte Carlo at the close) and keep
        the figures in the ledger. The Monte Carlo chunks run as Ray tasks across the cluster,
        seeded by the run seed and the date, so a re-run gives the same figures."""
        reports = self.reports
        mc = None
        if at_close and reports.monte_carlo_scenarios:
            seed = self.seed * 1_000_003 + now.toordinal()

            def mc(portfolio) -> dict:
                r = run_stress(portfolio, reports.monte_carlo_scenarios, 1.0, seed,
                               reports.monte_carlo_workers, reports.monte_carlo_model)
                return {"var95": r.var95, "var99": r.var99, "es95": r.es95, "es99": r.es99,
                        "scenarios": r.scenarios, "workers": r.workers, "model": r.model,
                        "seed": seed, "seconds": round(r.seconds, 4)}

        return self.engine.refresh(now, mc, at_close=at_close)

    def exposure(self, account: str, now: datetime) -> dict:
        """The account's current measures (Greeks, VaR/ES, max loss, positions per symbol)."""
        return self.engine.exposure(account, now).as_dict()

    def reset_breaker(self, account: str, name: str, by: str, now: datetime,
                      reason: str = "reset by hand") -> bool:
        """A person clears a breaker; False if it was not set."""
        return self.engine.reset_breaker(account, name, by, now, reason)

    def halt(self, by: str, now: datetime, reason: str = "entries halted by hand",
             accounts: Sequence[str] | None = None) -> dict[str, bool]:
        """Halt new entries on ``accounts`` (default: all) now (Telegram ``/stop``); per
        account, whether it was newly halted (False: halted by hand already)."""
        names = list(accounts) if accounts is not None else list(self.engine.breakers.limits)
        return {a: self.engine.halt(a, by, now, reason) for a in names}

    def resume(self, by: str, now: datetime, reason: str = "resumed by hand",
               accounts: Sequence[str] | None = None) -> dict[str, list[str]]:
        """Reset every breaker that is not ACTIVE on ``accounts`` (default: all), the manual
        halt included (Telegram ``/start``); per account, the breakers reset."""
        names = list(accounts) if accounts is not None else list(self.engine.breakers.limits)
        out = {}
        for account in names:
            states = self.engine.breaker_states(account, now)
            out[account] = [n for n, r in states.items() if r.state.value != "active"
                            and self.engine.reset_breaker(account, n, by, now, reason)]
        return out

    def breaker_readings(self, now: datetime) -> dict[str, dict]:
        """Every account's breaker readings (name -> ``BreakerReading``) for /status, /risk."""
        board = self.engine.breakers
        return {a: board.states(a, now) for a in board.limits}

    def breaker_states(self, account: str, now: datetime) -> dict[str, str]:
        """Each breaker's state for the account: name -> active, reducing or halted."""
        return {n: r.state.value for n, r in self.engine.breaker_states(account, now).items()}

    def position_values(self, now: datetime) -> dict[str, dict[str, float]]:
        """account -> position id -> what closing it would cost per share at mid (> 0 debit),
        for ``/positions``; a position with a leg the market cannot quote is left out."""
        market = self.engine.snapshots.market if self.engine.snapshots is not None else None
        out: dict[str, dict[str, float]] = {}
        if market is None:
            return out
        for account in self.engine.breakers.limits:
            values = out.setdefault(account, {})
            for pos in self.engine.ledger.positions(account):
                try:
                    legs = legs_from_json(pos["legs"])
                    values[pos["position_id"]] = round(
                        -sum(leg.ratio * market.quote(leg.contract, now).mid for leg in legs), 4)
                except DataError:
                    continue
        return out

    def ping(self) -> int:
        return pid()

    def footprint(self) -> dict:
        return footprint()
