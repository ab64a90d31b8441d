"""Exit rules for open credit spreads: pure decisions with the numbers behind them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExitRules:
    take_profit: float  # fraction of max profit
    stop_multiple: float | None  # loss as a multiple of the credit received; None: no stop
    close_dte: int  # close at or below this many days to expiry


@dataclass(frozen=True, slots=True)
class ExitDecision:
    reason: str  # take_profit, stop, time
    detail: str


def decide_exit(entry_credit: float, value_now: float, dte: int, rules: ExitRules,
                ) -> ExitDecision | None:
    """Whether to close a credit spread now.

    ``entry_credit`` is the net credit received per share (> 0); ``value_now`` the legs' current
    value per share at mid, signed from the holder's side (a short spread is worth < 0). Profit
    per share is ``entry_credit + value_now``; max profit is the credit.
    """
    profit = entry_credit + value_now
    eps = 1e-9  # prices are in cents: a threshold met to the cent is met
    if dte <= rules.close_dte:
        return ExitDecision("time", f"{dte} days to expiry <= {rules.close_dte}")
    if profit >= rules.take_profit * entry_credit - eps:
        return ExitDecision(
            "take_profit",
            f"profit {profit:.2f}/share >= {rules.take_profit:.0%} of the "
            f"{entry_credit:.2f} credit",
        )
    if rules.stop_multiple is not None and -profit >= rules.stop_multiple * entry_credit - eps:
        return ExitDecision(
            "stop",
            f"loss {-profit:.2f}/share >= {rules.stop_multiple:g} x the {entry_credit:.2f} credit",
        )
    return None
