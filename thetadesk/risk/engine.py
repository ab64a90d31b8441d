"""The risk gate every order passes, and the breakers it enforces.

State lives in the ledger (verdicts, breaker trips), so a restarted risk actor is the same gate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime

from thetadesk.chain import NEW_YORK
from thetadesk.messages import AccountTick, Alert, RiskRequest, RiskVerdict, Severity
from thetadesk.risk.breakers import DAILY_LOSS, daily_loss_tripped, halted
from thetadesk.risk.limits import RiskLimits, pre_trade
from thetadesk.store import Ledger


def session_of(now: datetime) -> date:
    """The New York trading date an instant belongs to."""
    return now.astimezone(NEW_YORK).date()


def limits_from_config(config) -> dict[str, RiskLimits]:
    """Each configured account's limits."""
    return {
        a.name: RiskLimits(a.risk.max_loss_per_trade, a.risk.max_open_positions,
                           a.risk.min_buying_power, a.risk.daily_loss_limit)
        for a in config.accounts
    }


def update_needed(ticks: Iterable[AccountTick], limits: Mapping[str, RiskLimits]) -> bool:
    """Whether ``RiskEngine.update`` over these ticks could do anything: it only acts on an
    account whose day P&L has reached its daily loss limit (a pure check, so a caller may skip
    the update, and a round trip to the risk actor, on every other tick)."""
    return any(
        tick.account in limits
        and daily_loss_tripped(tick.day_pnl, limits[tick.account].daily_loss_limit) is not None
        for tick in ticks
    )


class RiskEngine:
    def __init__(self, ledger: Ledger, limits: Mapping[str, RiskLimits]) -> None:
        self.ledger = ledger
        self.limits = dict(limits)

    def check(self, req: RiskRequest) -> RiskVerdict:
        """Apply the breakers and the pre-trade checks; record the verdict; return it."""
        limits = self.limits.get(req.account)
        if limits is None:
            verdict = RiskVerdict(False, "unknown_account",
                                  f"{req.account}: no risk limits configured for this account")
        else:
            rejection = None
            trips = self.ledger.breakers(req.account, session_of(req.now)) if req.opening else []
            if trips:
                rejection = halted(req.account, trips[0]["reason"])
            if rejection is None:
                rejection = pre_trade(req, limits)
            verdict = (RiskVerdict(True) if rejection is None
                       else RiskVerdict(False, rejection.check, rejection.reason))
        self.ledger.record_verdict(
            account=req.account, client_order_id=req.client_order_id, intent_id=req.intent_id,
            approved=verdict.approved, check_name=verdict.check, reason=verdict.reason,
            request=req.as_dict(), now=req.now,
        )
        return verdict

    def update(self, now: datetime, ticks: Iterable[AccountTick]) -> list[Alert]:
        """Evaluate the breakers on the accounts' latest state; a new trip is a critical alert."""
        alerts = []
        for tick in ticks:
            limits = self.limits.get(tick.account)
            if limits is None:
                continue
            reason = daily_loss_tripped(tick.day_pnl, limits.daily_loss_limit)
            if reason is None:
                continue
            session = session_of(now)
            if self.ledger.trip_breaker(account=tick.account, name=DAILY_LOSS, session=session,
                                        reason=reason, now=now):
                alerts.append(Alert(
                    Severity.CRITICAL, "breaker_tripped", f"{tick.account}:{DAILY_LOSS}:{session}",
                    f"{tick.account}: daily loss breaker tripped, {reason}; new entries halted "
                    f"for {session}, exits continue", now,
                ))
        return alerts
