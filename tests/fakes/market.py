"""A simulated market whose chosen quotes and spots a test sets; everything else (chains,
calendar, other contracts) is the real ``SimMarket``'s. Give the same object to the account
engine and the paper broker, so orders fill at the prices the engine saw."""

from __future__ import annotations

from datetime import datetime

from thetadesk.models import Contract, Quote


class PricedMarket:
    def __init__(self, inner) -> None:
        self.inner = inner
        self.quotes: dict[str, Quote] = {}
        self.spots: dict[str, float] = {}

    def set_mid(self, contract: Contract, mid: float, half: float = 0.01) -> None:
        """Quote ``contract`` at ``mid`` +/- ``half`` (cents, never below 0)."""
        self.quotes[contract.occ] = Quote(round(max(0.0, mid - half), 2), round(mid + half, 2),
                                          100, 100)

    def quote(self, contract: Contract, now: datetime) -> Quote:
        found = self.quotes.get(contract.occ)
        return found if found is not None else self.inner.quote(contract, now)

    def spot(self, symbol: str, now: datetime) -> float:
        return self.spots.get(symbol) or self.inner.spot(symbol, now)

    def __getattr__(self, name):
        return getattr(self.inner, name)
