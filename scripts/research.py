#!/usr/bin/env python
"""Run the research protocol: every variant of a grid fixed in a file, chosen on the in-sample
period only, then measured on the held-out periods next to the baselines of the same runs.

    .venv/bin/python scripts/research.py [--protocol research/protocol.yaml] [--out DIR]
        [--local] [--no-walk-forward] [--no-crash] [--quiet]

The protocol (``thetadesk/backtest/research.py`` documents the file) names the base config,
the settings fixed for every run, the periods, the selection rule and the grid. What runs:

1. every variant over ``in_sample`` (Ray tasks, ``actors/backtest.py``; ``--local``: here, one
   by one);
2. the choice: the best in-sample objective among the variants meeting the constraints;
3. the chosen variant and the base config (the desk as shipped before) over every held-out
   period, each next to buy-and-hold and the put-write of the same run, with the probabilistic
   and deflated Sharpe ratios for the number of variants tried;
4. a walk-forward over all periods' sessions of the replay from the in-sample start to the
   held-out end (the grid searched in each rolling window, an embargo of the holding period
   between in- and out-of-sample), unless ``--no-walk-forward``;
5. the protocol's scheduled crash in the simulator, chosen and base, unless ``--no-crash``.

Writes ``DIR/<name>.json`` (every figure, every variant's in-sample summary) and
``DIR/<name>.md`` (the tables README quotes); ``DIR`` defaults to ``research/results``.
Exit 2 on a bad protocol.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thetadesk.errors import ConfigError  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", type=Path, default=ROOT / "research" / "protocol.yaml")
    p.add_argument("--out", type=Path, default=ROOT / "research" / "results")
    p.add_argument("--local", action="store_true",
                   help="run the backtests here one by one instead of as Ray tasks")
    p.add_argument("--no-walk-forward", action="store_true", help="skip the walk-forward")
    p.add_argument("--no-crash", action="store_true", help="skip the scheduled crash")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def _runner(args):
    from tqdm import tqdm

    def ticker(desc, total, bar):
        """A progress step: the bar, or (``--quiet``) a line every tenth of the runs."""
        done = [0]
        started = time.monotonic()

        def step():
            done[0] += 1
            bar.update(1)
            if args.quiet and (done[0] % max(total // 10, 1) == 0 or done[0] == total):
                print(f"{desc}: {done[0]}/{total} runs, {time.monotonic() - started:.0f} s",
                      file=sys.stderr, flush=True)
        return step

    if args.local:
        def run_many(jobs, fn, desc):
            out = []
            with tqdm(total=len(jobs), desc=desc, unit="run", disable=args.quiet) as bar:
                step = ticker(desc, len(jobs), bar)
                for job in jobs:
                    out.append(fn(job))
                    step()
            return out
        return run_many

    from actors.backtest import run_jobs
    from actors.stress import ensure_ray

    ensure_ray(2)

    def run_many(jobs, fn, desc):
        with tqdm(total=len(jobs), desc=desc, unit="run", disable=args.quiet) as bar:
            return run_jobs(jobs, progress=ticker(desc, len(jobs), bar), fn=fn)
    return run_many


def _slim(summary: dict) -> dict:
    return {k: v for k, v in summary.items()
            if k not in ("returns", "excess_returns", "trade_pnls")}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from thetadesk.analytics.deflated import deflated_sharpe
    from thetadesk.backtest import research
    from thetadesk.backtest.tables import comparison_markdown, runs_of
    from thetadesk.backtest.walkforward import apply_params
    from thetadesk.logging import configure_logging

    try:
        protocol = research.load_protocol(args.protocol)
    except ConfigError as exc:
        print(f"research: {exc}", file=sys.stderr)
        return 2
    configure_logging(None, "research", "warning", console=False)
    found = research.variants(protocol)
    print(f"protocol {protocol.name} ({protocol.path}, sha256 {protocol.digest[:12]}): "
          f"{len(found)} variants", file=sys.stderr)
    run_many = _runner(args)
    started = time.monotonic()
    ins = protocol.periods["in_sample"]
    in_sample = run_many([research.job(protocol, ins, params, label)
                          for label, params in found], research.run_summary, "in sample")
    choice = research.choose(protocol, in_sample)
    trial_sharpes = [s.get("sharpe") for s in in_sample]
    trial_sharpes_rf = [s.get("sharpe_rf") for s in in_sample]
    print(f"chosen: {choice.label} ({choice.why})", file=sys.stderr)

    def with_trials(summary: dict) -> dict:
        """The deflated Sharpe ratios with every in-sample variant as a trial: of the 0%
        Sharpe against the variants' 0% Sharpes, and (``dsr_rf``) of the excess-return Sharpe
        against theirs, the one the choice maximised."""
        summary = dict(summary)
        block = {**(summary.get("deflated_sharpe") or {}),
                 **deflated_sharpe(summary["returns"], trial_sharpes=trial_sharpes)}
        if summary.get("excess_returns") is not None:
            rf = deflated_sharpe(summary["excess_returns"], trial_sharpes=trial_sharpes_rf)
            block.update({"dsr_rf": rf.get("dsr"), "psr_rf": rf.get("psr"),
                          "expected_max_sharpe_rf_annual": rf.get("expected_max_sharpe_annual")})
        summary["deflated_sharpe"] = block
        return summary

    # The desk as shipped before (the base config) over every period, the chosen variant
    # over every period but the in-sample one it was chosen on (already run).
    jobs = [research.job(protocol, period, (), "base (shipped before)")
            for period in protocol.periods.values()]
    others = [p for name, p in protocol.periods.items() if name != "in_sample"]
    jobs += [research.job(protocol, period, choice.params, f"chosen: {choice.label}")
             for period in others]
    results = run_many(jobs, research.run_summary, "measured")
    bases = dict(zip(protocol.periods, results[:len(protocol.periods)], strict=True))
    chosen = {"in_sample": in_sample[choice.index],
              **{p.name: r for p, r in zip(others, results[len(protocol.periods):],
                                           strict=True)}}
    periods = {name: {"chosen": with_trials(chosen[name]), "base": with_trials(bases[name])}
               for name in protocol.periods}

    walk = None
    if not args.no_walk_forward and protocol.walk_forward is not None:
        walk = _walk_forward(protocol, run_many)
    crash = None
    if not args.no_crash and protocol.crash:
        chosen_data = apply_params(apply_params(protocol.base, protocol.fixed), choice.params)
        base_data = apply_params(protocol.base, protocol.fixed)
        crash = {"chosen": research.crash_summary(research.run_crash(chosen_data,
                                                                     protocol.crash)),
                 "base": research.crash_summary(research.run_crash(base_data,
                                                                   protocol.crash))}
    out = {
        "protocol": {"name": protocol.name, "file": str(protocol.path.relative_to(ROOT))
                     if protocol.path.is_relative_to(ROOT) else str(protocol.path),
                     "sha256": protocol.digest, "commit": _commit(),
                     "variants": len(found), "objective": protocol.objective,
                     "max_drawdown": protocol.max_drawdown, "min_trades": protocol.min_trades,
                     "periods": {n: [p.start.isoformat(), p.end.isoformat()]
                                 for n, p in protocol.periods.items()},
                     "fixed": [list(p) for p in protocol.fixed], "notes": list(protocol.notes)},
        "measured": date.today().isoformat(),  # noqa: DTZ011 - the report's date, not a decision
        "wall_seconds": round(time.monotonic() - started, 1),
        "choice": {"label": choice.label, "params": [list(p) for p in choice.params],
                   "met_constraints": choice.met_constraints, "why": choice.why},
        "in_sample_variants": [{**_slim(s), "label": label}
                               for (label, _), s in zip(found, in_sample, strict=True)],
        "periods": {name: {k: _slim(v) for k, v in runs.items()}
                    for name, runs in periods.items()},
        "walk_forward": walk,
        "crash": crash,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{protocol.name}.json").write_text(json.dumps(out, indent=1, default=str),
                                                   encoding="utf-8")
    (args.out / f"{protocol.name}.md").write_text(
        markdown(out, periods, comparison_markdown, runs_of), encoding="utf-8")
    print(f"wrote {args.out / (protocol.name + '.json')} and "
          f"{args.out / (protocol.name + '.md')}", file=sys.stderr)
    return 0


def _walk_forward(protocol, run_many) -> dict:
    """The protocol's walk-forward grid (over ``fixed`` and ``desk``) walked forward over the
    sessions from the in-sample start to the held-out end (``walkforward.walk_forward``: its
    default embargo, the holding period, and purge)."""
    from thetadesk.backtest.walkforward import apply_params, run_job, walk_forward
    from thetadesk.clock import MarketCalendar

    cal = MarketCalendar()
    last = protocol.periods["held_out"].end
    sessions, d = [], cal.next_session(protocol.periods["in_sample"].start)
    while d <= last:
        sessions.append(d)
        d = cal.next_session(date.fromordinal(d.toordinal() + 1))
    wf = protocol.walk_forward
    data = apply_params(protocol.base, (*protocol.fixed, *protocol.desk, *wf["fixed"]))
    walked = walk_forward(data, "replay", sessions, grid=wf["grid"],
                          in_sample=wf["in_sample"], out_of_sample=wf["out_of_sample"],
                          objective=protocol.objective,
                          run_many=lambda jobs: run_many(jobs, run_job, "walk-forward"))
    return with_baselines(data, walked)


def with_baselines(data: dict, wf: dict) -> dict:
    """The walk-forward result with ``baselines``: buy-and-hold and the put-write over its
    stitched out-of-sample sessions, with the same capital, T-bill rates and interest on idle
    cash as the desk (``results.add_walk_forward``)."""
    from thetadesk.backtest.engine import backtest_config
    from thetadesk.backtest.results import add_walk_forward, baseline_symbol
    from thetadesk.wiring import build_market, cash_interest_of

    sessions = [date.fromisoformat(e["session"]) for e in wf["equity"]]
    if not sessions:
        return wf
    config, market, _, _ = backtest_config(data, source="replay", start=sessions[0],
                                           end=sessions[-1])
    if market is None:  # the replay: built from the config, as the backtest builds it
        market = build_market(config)
    account = config.accounts[0]
    interest = cash_interest_of(account)
    results = {"capital": wf["out_of_sample"]["capital"]}
    add_walk_forward(results, wf, market, baseline_symbol(config), account.commission_per_contract,
                     None if interest is None else interest.daily)
    return results["walk_forward"]


def walk_forward_markdown(wf: dict) -> list[str]:
    """The walk-forward's lines in the Markdown report: the stitched out-of-sample figures,
    then the baselines over the same sessions."""
    def f(v, pct=False):
        return "n/a" if v is None else (f"{v * 100:.2f}%" if pct else f"{v:.2f}")

    def line(m):
        return (f"annual return {f(m.get('annual_return'), True)}, Sharpe {f(m.get('sharpe'))}"
                f" (T-bill {f(m.get('sharpe_rf'))}), max drawdown "
                f"{f(m.get('max_drawdown'), True)}")

    oos = wf["out_of_sample"]
    lines = ["", "## Walk-forward", "",
             f"{len(wf['windows'])} windows of {wf['in_sample_sessions']} in-sample and "
             f"{wf['out_of_sample_sessions']} out-of-sample sessions, embargo "
             f"{wf.get('embargo_sessions')} sessions. Stitched out of sample: {line(oos)}, "
             f"{oos.get('trades')} trades."]
    names = {"buy_and_hold": "buy and hold", "put_write": "the put-write"}
    base = wf.get("baselines") or {}
    if base:
        lines += ["", "Over the same sessions: " + "; ".join(
            f"{names.get(k, k)}: {line(v)}" for k, v in base.items()) + "."]
    return lines


def _metrics():
    from thetadesk.backtest.tables import DEFAULT_METRICS, Metric

    rows = [m for m in DEFAULT_METRICS if m.key != "deflated_sharpe.dsr"]
    return [*rows,
            Metric("deflated_sharpe.dsr", "deflated Sharpe ratio (0%, every variant a trial)",
                   "prob"),
            Metric("deflated_sharpe.dsr_rf",
                   "deflated Sharpe ratio (T-bill, every variant a trial)", "prob"),
            Metric("deflated_sharpe.expected_max_sharpe_rf_annual",
                   "best T-bill Sharpe expected by luck of the variants", "num"),
            Metric("breaker_trips", "breaker trips", "int"),
            Metric("breaker_resets", "breaker resets (backtest policy)", "int")]


def markdown(out: dict, periods: dict, comparison_markdown, runs_of) -> str:
    p = out["protocol"]
    lines = [f"# Research protocol `{p['name']}`", "",
             f"Protocol file `{p['file']}` (sha256 `{p['sha256'][:16]}`), commit "
             f"`{(p['commit'] or 'unknown')[:12]}`, measured {out['measured']} in "
             f"{out['wall_seconds']:.0f} s. {p['variants']} variants tried; chosen on the "
             f"in-sample period only by `{p['objective']}` (max drawdown "
             f"{p['max_drawdown']}, at least {p['min_trades']} trades).", "",
             f"**Chosen:** {out['choice']['label']} ({out['choice']['why']}).", ""]
    names = {"in_sample": "in sample", "held_out": "held out", "second_test": "second test"}
    for name, runs in periods.items():
        start, end = p["periods"][name]
        lines += [f"## {names.get(name, name)}: {start} to {end}", ""]
        table = {}
        chosen, base = runs.get("chosen"), runs.get("base")
        if chosen:
            table.update(runs_of(chosen))
            table["ThetaDesk (chosen)"] = table.pop("ThetaDesk")
        if base:
            table = {"ThetaDesk (chosen)": table.get("ThetaDesk (chosen)"),
                     "shipped before": base,
                     **{k: v for k, v in table.items() if k != "ThetaDesk (chosen)"}}
        lines += [comparison_markdown({k: v for k, v in table.items() if v is not None},
                                      _metrics()), ""]
    lines += ["## Every variant in sample", "",
              "| variant | Sharpe | Sharpe (T-bill) | annual return | max drawdown | trades |",
              "| --- | --- | --- | --- | --- | --- |"]

    def f(v, pct=False):
        if v is None:
            return "n/a"
        return f"{v * 100:.2f}%" if pct else f"{v:.2f}"

    for s in out["in_sample_variants"]:
        lines.append(f"| {s['label']} | {f(s.get('sharpe'))} | {f(s.get('sharpe_rf'))} | "
                     f"{f(s.get('annual_return'), True)} | {f(s.get('max_drawdown'), True)} | "
                     f"{s.get('trades')} |")
    if out.get("walk_forward"):
        lines += walk_forward_markdown(out["walk_forward"])
    if out.get("crash"):
        lines += ["", "## Scheduled crash (simulator)", ""]
        for who, c in out["crash"].items():
            s = c["shocked"]
            lines.append(f"- {who}: {c['shock']['gap']:+.0%} gap, volatility x"
                         f"{c['shock']['vol_multiplier']:g} on {c['shock']['date']}: equity "
                         f"{s['equity_before']:,.0f} before, lowest {s['lowest_after']:,.0f} "
                         f"within {c['window_sessions']} sessions, a loss of "
                         f"{s['loss_fraction']:.1%} ({s['positions_before']} positions open; "
                         f"calm run: {c['calm']['loss_fraction']:.1%}).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
