#!/usr/bin/env python
"""Measure the tail hedge through a simulated crash; print one JSON object.

Usage: .venv/bin/python scripts/bench_tail_hedge.py [--sessions 30] [--crash-session 21]
       [--gap -0.20] [--vol 3.0] [--seeds 7 8 9] [--premium-fraction 0.5] [--variants ...]

The default desk (its credit spreads, one $100,000 paper account) runs in this process
(``thetadesk.lockstep``) over the simulator with VIX options listed and one scheduled shock
(``market.sim.shocks``: every symbol opens ``--gap`` below its previous close, stressed, the
variance x ``--vol`` squared) on the ``--crash-session``-th session, once per variant and seed
(the variants of a seed share its market):

  unhedged          hedging off
  puts              hedging on: tail puts (hedging.tail.premium_fraction)
  puts_scalp        ... and gamma scalping of them (hedging.gamma_scalp)
  puts_vix          tail puts and VIX calls (hedging.tail.vix_calls, vix_call_share)
  puts_vix_scalp    ... and gamma scalping of both

The delta band is off in every variant (a band of 10^6 shares), so the figures are the tail
book's alone. Hedges block no entry, so the strategies trade alike in every variant until an
account breaker (daily loss, drawdown), which reads the equity hedges included, trips in one
variant and not in another.

Keys, per variant (dollars):
  crash_day_pnl         the account's P&L on the crash session (close to close)
  equity_before         equity at the close before the crash
  equity_crash          equity at the crash session's close
  equity_end            equity at the last session's close
  worst_drawdown        the deepest fall of the close-to-close equity from its running peak
  hedge_pnl_before      the hedge book's P&L (realised + open) at the close before the crash:
                        what protection cost until then
  hedge_pnl_crash_day   the hedge book's P&L over the crash session
  hedge_pnl_end         the hedge book's P&L at the end
  protection            option hedges bought: {"puts": contracts, "vix_calls": contracts}
  hedges_refused        hedge orders the risk gate refused, by kind (a breaker halting
                        entries after the crash refuses protection it cannot show to lower
                        the book's 99% VaR)
  scalp                 gamma scalp: {"trades", "trades_before_crash", "shares" held at the
                        end, "pnl" (its shares, realised + open, commissions included)}
  seconds               wall time of the variant
under "seeds" (seed -> variant -> figures) and their means over the seeds under "mean"
(variant -> figures); "config": the scenario's figures, "measured_at": UTC time of the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from thetadesk.clock import MarketCalendar  # noqa: E402
from thetadesk.config import DEFAULT_CONFIG, parse_config  # noqa: E402
from thetadesk.hedging import scalp_book  # noqa: E402
from thetadesk.lockstep import LockstepDesk  # noqa: E402
from thetadesk.logging import configure_logging  # noqa: E402
from thetadesk.store import legs_from_json  # noqa: E402

VARIANTS = {
    "unhedged": None,
    "puts": {"vix_calls": False, "scalp": False},
    "puts_scalp": {"vix_calls": False, "scalp": True},
    "puts_vix": {"vix_calls": True, "scalp": False},
    "puts_vix_scalp": {"vix_calls": True, "scalp": True},
}


def _config(args, seed, crash, variant):
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["seed"] = seed
    data["market"]["tick_seconds"] = args.tick_seconds
    data["market"]["sim"]["vix_options"] = True
    data["market"]["sim"]["shocks"] = [
        {"date": crash.isoformat(), "gap": args.gap, "vol_multiplier": args.vol}]
    if variant is not None:
        data["hedging"] = {
            "enabled": True, "delta": {"band": 1_000_000},
            "tail": {"premium_fraction": args.premium_fraction,
                     "vix_calls": variant["vix_calls"], "vix_call_share": args.vix_share},
            "gamma_scalp": {"enabled": variant["scalp"], "band_shares": args.scalp_band},
        }
    return parse_config(data, env={})


def _run(args, seed, crash, name, variant, tmp: Path) -> dict:
    started = time.perf_counter()
    desk = LockstepDesk(_config(args, seed, crash, variant), tmp / f"{seed}-{name}",
                        durable=False)
    try:
        days = [r for r in desk.run(args.sessions) if r.account == "paper"]
        positions = desk.ledger.positions("paper", status=None)
        refused: dict[str, int] = {}
        for d in desk.ledger.decisions("paper", status="abandoned"):
            if d["kind"].startswith("hedge"):
                refused[d["kind"]] = refused.get(d["kind"], 0) + 1
        scalp = scalp_book(desk.ledger, "paper", "SPY")
        scalp["trades_before_crash"] = sum(
            1 for o in desk.ledger.orders("paper")
            if o["purpose"] == "hedge_gamma" and o["filled_quantity"]
            and o["created_at"] < desk.calendar.session_open(crash).isoformat())
        last = days[-1].session
        spot = desk.market.spot("SPY", desk.calendar.session_close(last))
    finally:
        desk.close()
    by_day = {d.session: d for d in days}
    before = max(s for s in by_day if s < crash)

    def hedge(day):
        return round(day.hedge_realized + day.hedge_unrealized, 2)

    peak, drawdown = -float("inf"), 0.0
    for d in days:
        peak = max(peak, d.equity)
        drawdown = min(drawdown, d.equity - peak)
    bought = {"puts": 0, "vix_calls": 0}
    for p in positions:
        if p["strategy"] != "hedge_tail":
            continue
        root = legs_from_json(p["legs"])[0].contract.underlying
        bought["vix_calls" if root == "VIX" else "puts"] += p["initial_quantity"] or p[
            "quantity"]
    return {
        "crash_day_pnl": round(by_day[crash].day_pnl, 2),
        "equity_before": round(by_day[before].equity, 2),
        "equity_crash": round(by_day[crash].equity, 2),
        "equity_end": round(days[-1].equity, 2),
        "worst_drawdown": round(drawdown, 2),
        "hedge_pnl_before": hedge(by_day[before]),
        "hedge_pnl_crash_day": round(hedge(by_day[crash]) - hedge(by_day[before]), 2),
        "hedge_pnl_end": hedge(days[-1]),
        "protection": bought,
        "hedges_refused": {k: refused.get(k, 0) for k in ("hedge_tail", "hedge_gamma")},
        "scalp": {"trades": scalp["trades"], "trades_before_crash": scalp["trades_before_crash"],
                  "shares": scalp["shares"],
                  "pnl": round(scalp["cash"] + scalp["shares"] * spot, 2)},
        "seconds": round(time.perf_counter() - started, 1),
    }


def _mean(figures: list[dict]) -> dict:
    """The mean of each number over ``figures`` (nested dicts alike)."""
    out = {}
    for key, value in figures[0].items():
        if isinstance(value, dict):
            out[key] = _mean([f[key] for f in figures])
        else:
            out[key] = round(sum(f[key] for f in figures) / len(figures), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30, help="sessions simulated")
    parser.add_argument("--crash-session", type=int, default=21,
                        help="the shock's session, counted from the first (1-based, > 1)")
    parser.add_argument("--gap", type=float, default=-0.20, help="the shock's opening gap")
    parser.add_argument("--vol", type=float, default=3.0, help="the shock's vol multiplier")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9],
                        help="top-level seeds: one market each")
    parser.add_argument("--tick-seconds", type=int, default=900,
                        help="market seconds between ticks (900: 27 a session)")
    parser.add_argument("--premium-fraction", type=float, default=0.5,
                        help="hedging.tail.premium_fraction")
    parser.add_argument("--vix-share", type=float, default=0.25,
                        help="hedging.tail.vix_call_share (variants with VIX calls)")
    parser.add_argument("--scalp-band", type=float, default=50.0,
                        help="hedging.gamma_scalp.band_shares")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS),
                        default=list(VARIANTS), help="which variants to run")
    args = parser.parse_args()
    if not 1 < args.crash_session < args.sessions:
        parser.error("--crash-session must be after the first session and before the last")
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    calendar = MarketCalendar()
    first = calendar.next_session(datetime.fromisoformat(str(data["market"]["start"])).date())
    crash = calendar.sessions(first, args.crash_session)[-1]
    out: dict = {"config": {
        "sessions": args.sessions, "crash": crash.isoformat(), "gap": args.gap,
        "vol_multiplier": args.vol, "seeds": args.seeds, "tick_seconds": args.tick_seconds,
        "premium_fraction": args.premium_fraction, "vix_call_share": args.vix_share,
        "scalp_band_shares": args.scalp_band, "delta_band": "off"}}
    runs: dict[int, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        configure_logging(Path(tmp), "bench", "warning", console=False)
        for seed in args.seeds:
            runs[seed] = {name: _run(args, seed, crash, name, VARIANTS[name], Path(tmp))
                          for name in args.variants}
    out["mean"] = {name: _mean([runs[seed][name] for seed in args.seeds])
                   for name in args.variants}
    out["seeds"] = {str(seed): runs[seed] for seed in args.seeds}
    out["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
