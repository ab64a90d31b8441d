#!/usr/bin/env python
"""Fit the paper broker's mid-fill exponent to a documented share of the half-spread.

Usage: .venv/bin/python scripts/calibrate_mid_fill.py [--target 0.577] [--half-spread 0.065]
       [--step-minutes 5] [--tick 0.01]

A working entry (``thetadesk.signals.timing.LimitLadder``) starts at the mid rounded in the
trader's favour and gives one tick every ``--step-minutes`` until the natural. With the fill
model's per-minute chance (``FillModel.mid_fill_per_minute``) a limit conceding x of the
half-spread fills within a minute with chance x ** k; each step rests its submission's minute
and ``--step-minutes`` more (the account polls, then steps), and the natural always fills. In a
market that does not move the mean concession of a ladder is then an exact sum over its steps;
this script solves it for k by bisection and prints one JSON object:

  exponent          k giving the target (round it for the config)
  target            the mean concession sought, a share of the half-spread (default 0.577:
                    Muravyev and Pearson 2020, 0.75 x 10 / 13; see FillModel)
  mean_concession   the mean at ``exponent`` rounded to one decimal, as shipped
  steps             per step: its limit, its concession and the chance the ladder fills there
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from thetadesk.adapters.sim_broker import CALIBRATED_CONCESSION
from thetadesk.signals.timing import LimitLadder

MID = 1.505  # any credit spread's mid; only its distance to the natural matters


def ladder_steps(half_spread: float, step_minutes: int, tick: float, exponent: float):
    """[(limit, concession, chance of filling at that step)] of one ladder."""
    natural = MID - half_spread
    ladder = LimitLadder(step_minutes=step_minutes, tick=tick, max_steps=10_000)
    survive, steps, step = 1.0, [], 0
    while survive > 0:
        limit = ladder.net(MID, natural, step)
        x = (MID - limit) / half_spread
        if x >= 1.0 - 1e-9:
            steps.append((limit, x, survive))
            break
        per_minute = max(x, 0.0) ** exponent if x > 0 else 0.0
        fill = 1.0 - (1.0 - per_minute) ** (step_minutes + 1)
        steps.append((limit, x, survive * fill))
        survive *= 1.0 - fill
        step += 1
    return steps


def mean_concession(half_spread: float, step_minutes: int, tick: float, exponent: float) -> float:
    steps = ladder_steps(half_spread, step_minutes, tick, exponent)
    return sum(x * p for _, x, p in steps) / sum(p for _, _, p in steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=float, default=CALIBRATED_CONCESSION,
                        help="mean concession sought, a share of the half-spread in (0, 1)")
    parser.add_argument("--half-spread", type=float, default=0.065,
                        help="the spread's half-spread in dollars per share (the simulator's "
                        "median for the default SPY bull put: 0.065)")
    parser.add_argument("--step-minutes", type=int, default=5)
    parser.add_argument("--tick", type=float, default=0.01)
    args = parser.parse_args(argv)
    if not 0 < args.target < 1 or args.half_spread <= 0 or args.step_minutes < 1:
        parser.error("need 0 < target < 1, half-spread > 0 and step-minutes >= 1")
    lo, hi = 0.01, 10.0
    for _ in range(100):
        k = (lo + hi) / 2
        if mean_concession(args.half_spread, args.step_minutes, args.tick, k) < args.target:
            lo = k
        else:
            hi = k
    shipped = round(k, 1)
    print(json.dumps({
        "exponent": round(k, 4),
        "target": round(args.target, 4),
        "mean_concession": round(mean_concession(args.half_spread, args.step_minutes,
                                                 args.tick, shipped), 4),
        "steps": [{"limit": round(limit, 4), "concession": round(x, 4), "fills": round(p, 4)}
                  for limit, x, p in ladder_steps(args.half_spread, args.step_minutes,
                                                  args.tick, shipped)],
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
