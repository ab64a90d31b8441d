"""The hedging logic: keep each account's beta-weighted delta in a band, buy crash protection
with a share of the premium collected, and scale both with risk (pure functions and one engine
that reads the ledger; the hedging actor, ``actors/hedging.py``, is its shell).

Units: delta in SPY share-equivalents (beta-weighted, as the risk gate measures it: see
``thetadesk.risk.gate``), gamma in shares of delta per $1 of the underlying, money in dollars,
option prices net per share (< 0 a debit).

- **Delta band.** When ``|delta - target| > band`` the account is hedged back to ``target``
  with the hedge symbol's shares in round lots (``delta_hedge_shares``: the lot count landing
  nearest the target inside the band; when none lands inside, it stops short of the target
  rather than crossing to the band's far side, which the next check would undo), or with long
  options of ``option_delta`` (``option_hedge_contracts``: puts for a long book, calls for a
  short one). At most one delta hedge per ``min_interval`` (the last one is read from the
  ledger's decisions, so a restart does not churn). Option hedges that push the same way as
  the excess are sold first.
- **Tail protection.** ``tail_budget``: ``premium_fraction`` of the credit the strategies
  collected, less what protection has cost net so far, buys out-of-the-money puts of
  ``put_delta`` near ``dte`` days. With ``vix_calls``, where the data source lists VIX options
  (the simulator with ``market.sim.vix_options``; the replay and the live sources list none,
  and then ``vix_calls_unavailable`` is logged once and the puts get the whole budget),
  ``vix_call_share`` of the fraction is a budget of its own (net of what VIX calls cost)
  that buys VIX calls of ``vix_call_delta`` (against their future, ``thetadesk.vix``) near
  ``vix_call_dte`` days. Any protection at or below ``roll_dte`` days is sold; its proceeds
  go back to its budget and buy the next one. One purchase of each kind per check, none while
  a protection order is working; ``max_contracts`` per purchase.
- **Dynamic.** ``dynamic_levels``: a stress level in [0, 1] from the 99% VaR usage (VaR over
  the account's ``max_var99``) and the implied-volatility ratio (ATM IV of the hedge symbol
  over its configured vol); the band narrows to ``band_at_full`` x and the tail fraction grows
  to ``tail_at_full`` x at full stress.
- **Gamma.** ``rebalance_cost``: with gamma G, the book's delta drifts about
  ``s = |G| S sigma_daily`` shares a day; a band of half-width h is left about ``(s / h)^2``
  times a day (a random walk's exit time from (-h, h) is h^2 / s^2), each time trading about h
  shares at ``cost_per_share``: ``s^2 c / h`` dollars a day.

- **Gamma scalping** (``gamma_scalp``, off by default). The tail book's long options carry
  positive gamma: their delta falls as the market falls and rises as it rises. The scalp
  delta-hedges THEIR beta-weighted delta (measured as the gate measures it: a VIX call's is
  negative too) with the hedge symbol's shares, its own holding within the hedge share book
  (``scalp_book``: the fills of its "hedge_gamma" orders), back inside ``scalp_band`` in
  round lots (``delta_hedge_shares``) at most once per ``scalp_interval``: it buys shares as
  the market falls and sells them as it recovers, so the swings pay for part of the options'
  decay. The price: the shares it holds against the options give back part of their gain in
  a gap down (``scripts/bench_tail_hedge.py`` measures both).

Every order is a ``HedgeOrder`` for the account actor, which sends it through the risk gate.
``hedge_book`` marks the hedge book at mid: its open P&L, reported next to the realised P&L
the ledger attributes to the hedges (``Ledger.pnl_attribution``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from thetadesk.chain import NEW_YORK, OptionChain
from thetadesk.errors import DataError
from thetadesk.logging import get_logger
from thetadesk.messages import HedgeOrder
from thetadesk.models import Contract, Leg, Right
from thetadesk.risk.gate import exposure
from thetadesk.store import HEDGE_PREFIX, Ledger, legs_from_json
from thetadesk.vix import VIX_ROOT

HEDGE_STATE = "hedge:"  # + account: run-state key of the latest hedge report (JSON)
TRADING_DAYS = 252


@dataclass(frozen=True, slots=True)
class HedgeRules:
    """The ``hedging:`` config section as values (see ``thetadesk.config.HedgingConfig``)."""

    symbol: str = "SPY"
    check_minutes: float = 15.0
    band: float = 150.0
    target: float = 0.0
    instrument: str = "shares"
    lot: int = 100
    option_delta: float = 0.30
    option_dte: int = 30
    min_interval: timedelta = timedelta(minutes=30)
    tail_fraction: float = 0.0
    put_delta: float = 0.10
    tail_dte: int = 60
    tail_roll_dte: int = 21
    vix_calls: bool = False
    vix_call_share: float = 0.25
    vix_call_delta: float = 0.30
    vix_call_dte: int = 60
    max_contracts: int = 10
    var_usage_from: float = 0.5
    iv_ratio_from: float = 1.25
    iv_ratio_full: float = 2.0
    band_at_full: float = 0.5
    tail_at_full: float = 2.0
    cost_per_share: float = 0.01  # half a one-cent share spread plus fees, for the estimate
    gamma_scalp: bool = False
    scalp_band: float = 50.0
    scalp_interval: timedelta = timedelta(minutes=30)

    @classmethod
    def from_config(cls, hedging) -> HedgeRules:
        d, t, y, g = hedging.delta, hedging.tail, hedging.dynamic, hedging.gamma_scalp
        return cls(
            symbol=hedging.symbol, check_minutes=hedging.check_minutes, band=d.band,
            target=d.target, instrument=d.instrument, lot=d.lot, option_delta=d.option_delta,
            option_dte=d.option_dte, min_interval=timedelta(minutes=d.min_interval_minutes),
            tail_fraction=t.premium_fraction, put_delta=t.put_delta, tail_dte=t.dte,
            tail_roll_dte=t.roll_dte, vix_calls=t.vix_calls, vix_call_share=t.vix_call_share,
            vix_call_delta=t.vix_call_delta, vix_call_dte=t.vix_call_dte,
            max_contracts=t.max_contracts,
            var_usage_from=y.var_usage_from, iv_ratio_from=y.iv_ratio_from,
            iv_ratio_full=y.iv_ratio_full, band_at_full=y.band_at_full,
            tail_at_full=y.tail_at_full, gamma_scalp=g.enabled, scalp_band=g.band_shares,
            scalp_interval=timedelta(minutes=g.min_interval_minutes),
        )


@dataclass(frozen=True, slots=True)
class Levels:
    stress: float  # 0 calm .. 1 full
    band: float  # the band's half-width now, SPY share-equivalents
    tail_fraction: float  # of the premium collected


def dynamic_levels(rules: HedgeRules, var_usage: float | None, iv_ratio: float | None,
                   ) -> Levels:
    """The band and tail fraction for the current VaR usage and implied-volatility ratio
    (None: not known, counts as calm)."""
    stress = 0.0
    if var_usage is not None and math.isfinite(var_usage):
        stress = max(stress, _ramp(var_usage, rules.var_usage_from, 1.0))
    if iv_ratio is not None and math.isfinite(iv_ratio):
        stress = max(stress, _ramp(iv_ratio, rules.iv_ratio_from, rules.iv_ratio_full))
    band = rules.band * (1.0 - (1.0 - rules.band_at_full) * stress)
    # Never more than the premium collected, however stressed.
    tail = min(1.0, rules.tail_fraction * (1.0 + (rules.tail_at_full - 1.0) * stress))
    return Levels(stress, band, tail)


def _ramp(x: float, start: float, full: float) -> float:
    if full <= start:
        return 1.0 if x >= start else 0.0
    return min(1.0, max(0.0, (x - start) / (full - start)))


def hedge_book(ledger: Ledger, market, account: str, now: datetime) -> dict[str, Any]:
    """The account's hedge book at ``now``, marked at mid: ``positions`` (option hedges held),
    ``shares`` (hedge shares per symbol), ``unrealized`` (open P&L in dollars, before the
    commissions of closing) and ``unmarked`` (holdings left out for want of a usable quote)."""
    unrealized, unmarked, held = 0.0, 0, 0
    for pos in ledger.positions(account):
        if not pos["strategy"].startswith(HEDGE_PREFIX):
            continue
        held += 1
        legs = legs_from_json(pos["legs"])
        try:
            value = sum(leg.ratio * market.quote(leg.contract, now).mid for leg in legs)
        except DataError:
            unmarked += 1
            continue
        if not math.isfinite(value):
            unmarked += 1
            continue
        unrealized += ((pos["entry_price"] + value) * legs[0].contract.multiplier
                       * pos["quantity"])
    shares = {}
    for row in ledger.hedge_shares(account):
        shares[row["symbol"]] = row["quantity"]
        try:
            spot = market.spot(row["symbol"], now)
        except DataError:
            unmarked += 1
            continue
        unrealized += row["quantity"] * (spot - row["avg_price"])
    return {"positions": held, "shares": shares, "unrealized": round(unrealized, 2),
            "unmarked": unmarked}


def delta_hedge_shares(delta: float, band: float, target: float, lot: int) -> int:
    """Signed shares (> 0 buy) that bring ``delta`` back towards ``target`` in round lots, or 0
    while it is inside the band (``|delta - target| <= band``).

    The lot count that lands nearest the target inside the band is taken; when no whole lot
    lands inside it (a band narrower than half a lot), the hedge stops short of the target
    rather than crossing it to the band's far side, which the next check would undo: no churn.
    0 when that is no lot at all."""
    excess = delta - target
    if abs(excess) <= band + 1e-9:
        return 0
    under = math.floor(abs(excess) / lot)  # stops short of the target (or reaches it)
    inside = [n for n in (under, under + 1) if abs(abs(excess) - n * lot) <= band + 1e-9]
    lots = min(inside, key=lambda n: (abs(abs(excess) - n * lot), -n)) if inside else under
    return -int(math.copysign(lots * lot, excess)) if lots else 0


def option_hedge_contracts(excess: float, option_delta: float, multiplier: int = 100) -> int:
    """Contracts of ``option_delta`` (per share, absolute) that offset ``excess`` delta."""
    if option_delta <= 0:
        raise ValueError(f"option_delta must be > 0, got {option_delta}")
    return math.floor(abs(excess) / (option_delta * multiplier) + 0.5)


def tail_budget(collected: float, fraction: float, spent: float) -> float:
    """Dollars available for protection: ``fraction`` of the premium ``collected`` less what
    protection has cost net (``spent``: premiums paid less proceeds and realised gains)."""
    return max(0.0, fraction * collected - spent)


def rebalance_cost(gamma: float, spot: float, daily_vol: float, band: float,
                   cost_per_share: float) -> dict[str, float]:
    """The delta band's expected upkeep (see the module doc): delta drift in shares a day,
    hedges a day, dollars a day."""
    drift = abs(gamma) * spot * daily_vol
    if band <= 0:
        return {"delta_drift_per_day": drift, "hedges_per_day": math.inf,
                "cost_per_day": math.inf}
    per_day = (drift / band) ** 2
    return {"delta_drift_per_day": drift, "hedges_per_day": per_day,
            "cost_per_day": per_day * band * cost_per_share}


class HedgeEngine:
    """Decides every account's hedges at a check (``decide``). ``risk`` is a
    ``thetadesk.risk.engine.RiskEngine`` over the same ledger (its ``exposure`` measures the
    book as the gate does); ``max_var99`` maps accounts to their limit (None: no VaR usage);
    ``vols`` the configured vol per symbol (the implied-volatility ratio's base)."""

    def __init__(self, ledger: Ledger, risk, market, rules: HedgeRules,
                 accounts: Mapping[str, float | None], vols: Mapping[str, float]) -> None:
        self.ledger = ledger
        self.risk = risk
        self.market = market
        self.rules = rules
        self.accounts = dict(accounts)
        self.vols = dict(vols)
        self.log = get_logger("hedging")
        self._vix_listing: bool | None = None  # whether the source lists VIX options
        # account -> (New York date, dollars of one protective put / VIX call when last
        # priced): a budget below it that day is not worth a chain fetch per check.
        self._put_cost: dict[str, tuple[Any, float]] = {}
        self._vix_cost: dict[str, tuple[Any, float]] = {}

    def due(self, last: datetime | None, now: datetime) -> bool:
        """Whether a check is due at ``now`` after the one at ``last``."""
        return last is None or (now - last) >= timedelta(minutes=self.rules.check_minutes)

    def decide(self, now: datetime) -> dict[str, tuple[HedgeOrder, ...]]:
        """Each account's hedge orders now (every figure behind them in the report)."""
        chains = _Chains(self.market, self.rules.symbol, now, self.log)
        out = {}
        for account in sorted(self.accounts):
            try:
                orders, report = self._account(account, now, chains)
            except DataError as exc:
                self.log.warning("hedge_check_failed", account=account, reason=str(exc))
                continue
            self.ledger.set_state(HEDGE_STATE + account, json.dumps(report, sort_keys=True,
                                                                    default=str))
            out[account] = tuple(orders)
        return out

    def report(self, account: str) -> dict | None:
        text = self.ledger.get_state(HEDGE_STATE + account)
        return None if text is None else json.loads(text)

    # -- one account ------------------------------------------------------------------------

    def _account(self, account: str, now: datetime, chains: _Chains,
                 ) -> tuple[list[HedgeOrder], dict[str, Any]]:
        r = self.rules
        exposure = self.risk.exposure(account, now)
        delta = exposure.beta_weighted_delta or 0.0
        limit = self.accounts.get(account)
        var_usage = (exposure.var99 / limit if limit and exposure.var99 is not None else None)
        iv_ratio = None
        chain = chains.window(*_IV_WINDOW)
        if chain is not None and chain.expiries():
            from thetadesk.symbol import atm_iv

            iv = atm_iv(chain, chain.nearest_expiry(30))
            base = self.vols.get(r.symbol)
            if base and math.isfinite(iv):
                iv_ratio = iv / base
        levels = dynamic_levels(r, var_usage, iv_ratio)
        orders: list[HedgeOrder] = []
        report: dict[str, Any] = {
            "at": now.isoformat(), "beta_weighted_delta": round(delta, 2),
            "var99": exposure.var99, "var_usage": _r(var_usage), "iv_ratio": _r(iv_ratio),
            "stress": round(levels.stress, 4), "band": round(levels.band, 2),
            "target": r.target, "tail_fraction": round(levels.tail_fraction, 4),
            "gamma": {k: round(v, 4) for k, v in exposure.gamma.items()},
        }
        report["rebalance"] = self._upkeep(exposure, levels.band, now)
        report["book"] = hedge_book(self.ledger, self.market, account, now)
        orders += self._delta(account, now, delta, levels, chains, report)
        orders += self._tail(account, now, levels, chains, report)
        orders += self._gamma(account, now, report)
        if orders:
            self.log.info("hedges", account=account, orders=len(orders),
                          **{k: v for k, v in report.items()
                             if k not in ("gamma", "rebalance", "gamma_scalp")})
        return orders, report

    def _upkeep(self, exposure, band: float, now: datetime) -> dict[str, float]:
        """The delta band's expected rebalancing, SPY share-equivalents (gamma of each
        underlying scaled by its price ratio to the hedge symbol, vol from its configured
        level)."""
        r = self.rules
        try:
            hedge_spot = self.market.spot(r.symbol, now)
        except DataError:
            return {}
        drift = 0.0
        for symbol, gamma in exposure.gamma.items():
            try:
                spot = self.market.spot(symbol, now)
            except DataError:
                continue
            daily = self.vols.get(symbol, 0.2) / math.sqrt(TRADING_DAYS)
            drift += abs(gamma) * spot * daily * spot / hedge_spot
        cost = rebalance_cost(1.0, 1.0, drift, band, r.cost_per_share)  # drift given directly
        return {k: round(v, 4) if math.isfinite(v) else v for k, v in cost.items()}

    def _last_delta_hedge(self, account: str) -> datetime | None:
        found = [d for d in self.ledger.decisions(account) if d["kind"] in (
            "hedge_delta", "hedge_unwind") and d["status"] != "abandoned"]
        return datetime.fromisoformat(found[-1]["decided_at"]) if found else None

    def _delta(self, account: str, now: datetime, delta: float, levels: Levels,
               chains: _Chains, report: dict) -> list[HedgeOrder]:
        r = self.rules
        excess = delta - r.target
        report["delta_hedge"] = None
        if abs(excess) <= levels.band + 1e-9:
            return []
        last = self._last_delta_hedge(account)
        if last is not None and now - last < r.min_interval:
            report["delta_hedge"] = (f"out of band but the last hedge was at {last.isoformat()}, "
                                     f"less than {r.min_interval} ago")
            return []
        detail = {"delta": round(delta, 2), "band": round(levels.band, 2), "target": r.target,
                  "stress": round(levels.stress, 4)}
        why = (f"beta-weighted delta {delta:+.0f} is outside {r.target:+.0f} +/- "
               f"{levels.band:.0f}")
        if r.instrument == "shares":
            shares = delta_hedge_shares(delta, levels.band, r.target, r.lot)
            if not shares:
                report["delta_hedge"] = ("no whole lot brings the delta inside the band without "
                                         "crossing the target")
                return []
            report["delta_hedge"] = f"{shares:+d} {r.symbol}"
            return [HedgeOrder(account, "delta", r.symbol, now, why, shares=shares,
                               detail={**detail, "shares": shares})]
        # Long options: first sell option hedges that push the same way as the excess.
        unwind = []
        for pos in self.ledger.positions(account):
            if pos["strategy"] != "hedge_delta":
                continue
            legs = legs_from_json(pos["legs"])
            is_put = not legs[0].contract.is_call
            if (excess < 0 and is_put) or (excess > 0 and not is_put):
                unwind.append(HedgeOrder(account, "unwind", r.symbol, now,
                                         f"{why}; this hedge adds to it",
                                         close_position_id=pos["position_id"], detail=detail))
        if unwind:
            report["delta_hedge"] = f"unwind {len(unwind)} option hedge(s)"
            return unwind
        chain = chains.window(min(r.option_dte, 7), r.option_dte + _WINDOW_AFTER)
        if chain is None:
            report["delta_hedge"] = "no chain to pick a hedge option from"
            return []
        right = Right.PUT if excess > 0 else Right.CALL
        try:
            expiry = chain.nearest_expiry(r.option_dte, min_dte=min(r.option_dte, 7))
            row = chain.strike_by_delta(expiry, r.option_delta, right)
        except DataError as exc:
            report["delta_hedge"] = f"no hedge option: {exc}"
            return []
        d = abs(row.delta) if row.delta is not None and math.isfinite(row.delta) else (
            r.option_delta)
        contracts = option_hedge_contracts(excess, d, row.contract.multiplier)
        if contracts < 1 or row.quote.ask <= 0:
            report["delta_hedge"] = "less than one option's delta out of band"
            return []
        price = -math.ceil(row.quote.ask * 100 - 1e-9) / 100
        report["delta_hedge"] = f"buy {contracts} {row.contract.occ} at {-price:.2f}"
        return [HedgeOrder(account, "delta", r.symbol, now, why, legs=(Leg(row.contract, 1),),
                           quantity=contracts, limit_price=price,
                           detail={**detail, "option_delta": round(d, 4),
                                   "contracts": contracts})]

    def _tail(self, account: str, now: datetime, levels: Levels, chains: _Chains,
              report: dict) -> list[HedgeOrder]:
        r = self.rules
        positions = self.ledger.positions(account, status=None)
        tails = [p for p in positions if p["strategy"] == "hedge_tail"]
        collected = sum(p["entry_price"] * (p["initial_quantity"] or p["quantity"]) * _mult(p)
                        for p in positions if not p["strategy"].startswith("hedge")
                        and p["entry_price"] > 0)
        puts = [p for p in tails if not _on_vix(p)]
        calls = [p for p in tails if _on_vix(p)]
        share = r.vix_call_share if r.vix_calls and self._vix_listed(now) else 0.0
        spent, vix_spent = _spent(puts), _spent(calls)
        budget = tail_budget(collected, levels.tail_fraction * (1.0 - share), spent)
        vix_budget = tail_budget(collected, levels.tail_fraction * share, vix_spent)
        report["tail"] = {"collected": round(collected, 2), "spent": round(spent, 2),
                          "budget": round(budget, 2), "held": _held(puts)}
        if share:
            report["tail"]["vix"] = {"spent": round(vix_spent, 2),
                                     "budget": round(vix_budget, 2), "held": _held(calls)}
        if levels.tail_fraction <= 0:
            return []
        orders: list[HedgeOrder] = []
        today = now.astimezone(NEW_YORK).date()
        for pos in tails:
            if pos["status"] != "open":
                continue
            expiry = legs_from_json(pos["legs"])[0].contract.expiry
            if (expiry - today).days <= r.tail_roll_dte:
                orders.append(HedgeOrder(
                    account, "tail_roll", pos["symbol"], now,
                    f"protection {pos['position_id']} is {(expiry - today).days} days from "
                    f"expiry (roll at {r.tail_roll_dte})", close_position_id=pos["position_id"],
                    detail={"dte": (expiry - today).days}))
        working = any(o["purpose"] == "hedge_tail" and o["opening"]
                      for o in self.ledger.orders(account, ("pending_submit", "new",
                                                            "partially_filled")))
        if orders or working:
            return orders
        orders += self._buy_put(account, now, levels, chains, report, budget, collected, spent)
        if share:
            orders += self._buy_vix_calls(account, now, report["tail"]["vix"], vix_budget,
                                          collected, vix_spent, levels)
        return orders

    def _buy_put(self, account: str, now: datetime, levels: Levels, chains: _Chains,
                 report: dict, budget: float, collected: float, spent: float,
                 ) -> list[HedgeOrder]:
        r = self.rules
        today = now.astimezone(NEW_YORK).date()
        if budget < _MIN_TAIL_BUDGET:
            return []
        priced = self._put_cost.get(account)
        if priced is not None and priced[0] == today and budget < priced[1]:
            report["tail"]["note"] = (f"budget ${budget:,.2f} below one protective put "
                                      f"(${priced[1]:,.2f} when priced today)")
            return []
        chain = chains.window(max(r.tail_roll_dte + 1, r.tail_dte - _WINDOW_AFTER),
                              r.tail_dte + _WINDOW_AFTER)
        if chain is None:
            report["tail"]["note"] = "no chain to pick a protective put from"
            return []
        try:
            expiry = chain.nearest_expiry(r.tail_dte, min_dte=r.tail_roll_dte + 1)
            row = chain.strike_by_delta(expiry, r.put_delta, Right.PUT)
        except DataError as exc:
            report["tail"]["note"] = f"no protective put: {exc}"
            return []
        ask = row.quote.ask
        if not (ask > 0):
            return []
        price = math.ceil(ask * 100 - 1e-9) / 100
        contracts = min(r.max_contracts, math.floor(budget / (price * row.contract.multiplier)))
        self._put_cost[account] = (today, price * row.contract.multiplier)
        if contracts < 1:
            report["tail"]["note"] = (f"budget ${budget:,.2f} below one {row.contract.occ} at "
                                      f"${price * row.contract.multiplier:,.2f}")
            return []
        report["tail"]["buy"] = f"{contracts} {row.contract.occ} at {price:.2f}"
        return [HedgeOrder(
            account, "tail", r.symbol, now,
            f"protection: ${budget:,.2f} of budget ({levels.tail_fraction:.1%} of "
            f"${collected:,.2f} collected, ${spent:,.2f} spent) buys {contracts} "
            f"{row.contract.occ}", legs=(Leg(row.contract, 1),), quantity=contracts,
            limit_price=-price, detail={"budget": round(budget, 2), "contracts": contracts,
                                        "put_delta": r.put_delta,
                                        "dte": chain.dte(expiry)})]

    def _vix_listed(self, now: datetime) -> bool:
        """Whether the data source lists VIX options (asked once: a source either lists them
        or does not; ``vix_calls_unavailable`` is logged once when it does not)."""
        if self._vix_listing is None:
            try:
                self.market.chain(VIX_ROOT, now, min_dte=self.rules.tail_roll_dte + 1,
                                  max_dte=self.rules.vix_call_dte + _WINDOW_AFTER)
                self._vix_listing = True
            except DataError as exc:
                self._vix_listing = False
                self.log.warning("vix_calls_unavailable", reason=str(exc))
        return self._vix_listing

    def _buy_vix_calls(self, account: str, now: datetime, report: dict, budget: float,
                       collected: float, spent: float, levels: Levels) -> list[HedgeOrder]:
        """VIX calls of ``vix_call_delta`` (against their future) nearest ``vix_call_dte``
        days out, with the VIX share of the protection budget."""
        r = self.rules
        today = now.astimezone(NEW_YORK).date()
        if budget < _MIN_TAIL_BUDGET:
            return []
        priced = self._vix_cost.get(account)
        if priced is not None and priced[0] == today and budget < priced[1]:
            report["note"] = (f"budget ${budget:,.2f} below one VIX call (${priced[1]:,.2f} "
                              "when priced today)")
            return []
        try:
            chain = self.market.chain(VIX_ROOT, now, min_dte=r.tail_roll_dte + 1,
                                      max_dte=r.vix_call_dte + _WINDOW_AFTER)
            expiry = chain.nearest_expiry(r.vix_call_dte, min_dte=r.tail_roll_dte + 1)
            row = chain.strike_by_delta(expiry, r.vix_call_delta, Right.CALL)
        except DataError as exc:
            report["note"] = f"no VIX call: {exc}"
            return []
        ask = row.quote.ask
        if not (ask > 0):
            return []
        price = math.ceil(ask * 100 - 1e-9) / 100
        cost = price * row.contract.multiplier
        contracts = min(r.max_contracts, math.floor(budget / cost))
        self._vix_cost[account] = (today, cost)
        if contracts < 1:
            report["note"] = f"budget ${budget:,.2f} below one {row.contract.occ} at ${cost:,.2f}"
            return []
        report["buy"] = f"{contracts} {row.contract.occ} at {price:.2f}"
        return [HedgeOrder(
            account, "tail", VIX_ROOT, now,
            f"protection: ${budget:,.2f} of VIX budget ({r.vix_call_share:.0%} of "
            f"{levels.tail_fraction:.1%} of ${collected:,.2f} collected, ${spent:,.2f} spent) "
            f"buys {contracts} {row.contract.occ}", legs=(Leg(row.contract, 1),),
            quantity=contracts, limit_price=-price,
            detail={"budget": round(budget, 2), "contracts": contracts,
                    "vix_call_delta": r.vix_call_delta, "dte": chain.dte(expiry),
                    "vix": chain.spot})]

    # -- gamma scalping ---------------------------------------------------------------------

    def _last_scalp(self, account: str) -> datetime | None:
        found = [d for d in self.ledger.decisions(account, kind="hedge_gamma")
                 if d["status"] != "abandoned"]
        return datetime.fromisoformat(found[-1]["decided_at"]) if found else None

    def _gamma(self, account: str, now: datetime, report: dict) -> list[HedgeOrder]:
        """Delta-hedge the tail book's options (``gamma_scalp``): their beta-weighted delta
        plus the scalp's shares back inside ``scalp_band`` in round lots, at most once per
        ``scalp_interval``."""
        r = self.rules
        if not r.gamma_scalp:
            return []
        options: dict[Contract, int] = {}
        for pos in self.ledger.positions(account):
            if pos["strategy"] != "hedge_tail":
                continue
            for leg in legs_from_json(pos["legs"]):
                options[leg.contract] = options.get(leg.contract, 0) + leg.ratio * pos[
                    "quantity"]
        scalp = scalp_book(self.ledger, account, r.symbol)
        working = any(o["purpose"] == "hedge_gamma" for o in self.ledger.orders(
            account, ("pending_submit", "new", "partially_filled")))
        state: dict[str, Any] = {"shares": scalp["shares"], "trades": scalp["trades"],
                                 "band": r.scalp_band}
        report["gamma_scalp"] = state
        try:
            spot = self.market.spot(r.symbol, now)
            state["pnl"] = round(scalp["cash"] + scalp["shares"] * spot, 2)
            option_delta = 0.0
            if options:
                if self.risk.snapshots is None:
                    state["note"] = "no market to measure the tail book's delta"
                    return []
                portfolio = self.risk.snapshots.build(options, {}, now)
                option_delta = exposure(portfolio, 0.0, {}, self.risk.betas(now)
                                        ).beta_weighted_delta or 0.0
        except DataError as exc:
            state["note"] = f"cannot measure the tail book: {exc}"
            return []
        delta = option_delta + scalp["shares"]
        state.update(option_delta=round(option_delta, 2), delta=round(delta, 2))
        if working:
            state["note"] = "a scalp order is working"
            return []
        shares = delta_hedge_shares(delta, r.scalp_band, 0.0, r.lot)
        if not shares:
            return []
        last = self._last_scalp(account)
        if last is not None and now - last < r.scalp_interval:
            state["note"] = (f"out of band but the last scalp was at {last.isoformat()}, less "
                             f"than {r.scalp_interval} ago")
            return []
        state["trade"] = f"{shares:+d} {r.symbol}"
        return [HedgeOrder(
            account, "gamma", r.symbol, now,
            f"gamma scalp: the tail book's delta {option_delta:+.0f} with {scalp['shares']:+d} "
            f"scalp shares is {delta:+.0f}, outside +/- {r.scalp_band:.0f}", shares=shares,
            detail={"option_delta": round(option_delta, 2), "held": scalp["shares"],
                    "band": r.scalp_band, "shares": shares})]


def scalp_book(ledger: Ledger, account: str, symbol: str) -> dict[str, Any]:
    """The gamma scalp's own shares of ``symbol`` in ``account`` (the hedge share book is
    shared with the delta band): ``shares`` (signed, filled), ``cash`` (dollars its fills
    moved, commissions included, > 0 received), ``trades`` (orders with a fill)."""
    shares, cash, trades = 0, 0.0, 0
    for order in ledger.orders(account):
        if (order["purpose"] != "hedge_gamma" or order["instrument"] != "shares"
                or order["symbol"] != symbol):
            continue
        sign = 1 if order["side"] == "buy" else -1
        fills = ledger.fills(client_order_id=order["client_order_id"])
        trades += bool(fills)
        for fill in fills:
            shares += sign * fill["quantity"]
            cash -= sign * fill["quantity"] * fill["price"] + fill["commission"]
    return {"shares": shares, "cash": cash, "trades": trades}


_IV_WINDOW = (21, 45)  # DTE of the chain the 30-day ATM implied volatility is read from
_WINDOW_AFTER = 30  # days beyond a DTE target that a hedge option's chain window reaches
_MIN_TAIL_BUDGET = 1.0  # dollars: below this no chain is fetched to buy protection


class _Chains:
    """The hedge symbol's chains of one check, fetched by DTE window on first use (an option
    chain is the check's main cost: only the windows a decision needs are priced)."""

    def __init__(self, market, symbol: str, now: datetime, log) -> None:
        self.market, self.symbol, self.now, self.log = market, symbol, now, log
        self._got: dict[tuple[int, int], OptionChain | None] = {}

    def window(self, min_dte: int, max_dte: int) -> OptionChain | None:
        key = (max(1, int(min_dte)), max(1, int(max_dte)))
        if key not in self._got:
            try:
                self._got[key] = self.market.chain(self.symbol, self.now, min_dte=key[0],
                                                   max_dte=key[1])
            except DataError as exc:
                self.log.warning("hedge_chain_unavailable", symbol=self.symbol,
                                 min_dte=key[0], max_dte=key[1], reason=str(exc))
                self._got[key] = None
        return self._got[key]


def _on_vix(pos: dict) -> bool:
    legs = legs_from_json(pos["legs"])
    return bool(legs) and legs[0].contract.underlying == VIX_ROOT


def _spent(tails: list[dict]) -> float:
    """What protection cost net: premiums of the open positions and commissions, less the
    realised P&L of all (closed ones' proceeds)."""
    out = sum(-p["entry_price"] * p["quantity"] * _mult(p) + p["commissions"]
              for p in tails if p["status"] == "open")
    return out - sum(p["realized_pnl"] or 0.0 for p in tails)


def _held(tails: list[dict]) -> int:
    return sum(p["quantity"] for p in tails if p["status"] == "open")


def _mult(pos: dict) -> int:
    return legs_from_json(pos["legs"])[0].contract.multiplier if pos["legs"] != "[]" else 1


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 4)
