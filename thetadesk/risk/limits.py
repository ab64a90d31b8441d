"""Pre-trade checks: pure functions ``check_x(request, limits) -> Rejection | None``.

Each rejection names its check and reads like a sentence with the numbers in it. Orders that
close positions reduce risk and are never refused by these checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from thetadesk.messages import RiskRequest


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """One account's limits (dollars unless stated)."""

    max_loss_per_trade: float
    max_open_positions: int
    min_buying_power: float
    daily_loss_limit: float


@dataclass(frozen=True, slots=True)
class Rejection:
    check: str
    reason: str


def check_max_loss(req: RiskRequest, limits: RiskLimits) -> Rejection | None:
    if req.max_loss > limits.max_loss_per_trade:
        return Rejection(
            "max_loss_per_trade",
            f"{req.account}: max loss ${req.max_loss:,.2f} for {req.quantity} x {req.symbol} "
            f"exceeds the ${limits.max_loss_per_trade:,.2f} limit per trade",
        )
    return None


def check_open_positions(req: RiskRequest, limits: RiskLimits) -> Rejection | None:
    if req.open_positions >= limits.max_open_positions:
        return Rejection(
            "max_open_positions",
            f"{req.account}: {req.open_positions} positions already open, the limit is "
            f"{limits.max_open_positions}",
        )
    return None


def check_buying_power(req: RiskRequest, limits: RiskLimits) -> Rejection | None:
    left = req.buying_power - req.buying_power_needed
    if left < limits.min_buying_power:
        return Rejection(
            "buying_power",
            f"{req.account}: the order needs ${req.buying_power_needed:,.2f} of "
            f"${req.buying_power:,.2f} buying power, leaving ${left:,.2f}, below the "
            f"${limits.min_buying_power:,.2f} minimum",
        )
    return None


PRE_TRADE_CHECKS: tuple[Callable[[RiskRequest, RiskLimits], Rejection | None], ...] = (
    check_max_loss,
    check_open_positions,
    check_buying_power,
)


def pre_trade(req: RiskRequest, limits: RiskLimits) -> Rejection | None:
    """The first rejection among the pre-trade checks, or None. Closing orders always pass."""
    if not req.opening:
        return None
    for check in PRE_TRADE_CHECKS:
        rejection = check(req, limits)
        if rejection is not None:
            return rejection
    return None
