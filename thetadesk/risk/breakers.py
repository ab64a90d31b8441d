"""Circuit breakers: pure decisions over an account's state. The risk engine persists trips."""

from __future__ import annotations

from thetadesk.risk.limits import Rejection

DAILY_LOSS = "daily_loss"


def daily_loss_tripped(day_pnl: float, limit: float) -> str | None:
    """A reason if the day's P&L (dollars) has reached the loss limit, else None."""
    if day_pnl <= -limit:
        return f"day P&L ${day_pnl:,.2f} reached the ${limit:,.2f} daily loss limit"
    return None


def halted(account: str, reason: str) -> Rejection:
    return Rejection(
        DAILY_LOSS, f"{account}: new entries halted by the daily loss breaker ({reason})"
    )
