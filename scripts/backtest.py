#!/usr/bin/env python
"""Backtest a ThetaDesk config: the desk's own components over history, with a progress bar.

    .venv/bin/python scripts/backtest.py [--config FILE] [--start DATE] [--end DATE]
        [--data replay|sim|PATH] [--fill-model NAME] [--walk-forward [--embargo N]
        [--no-purge]] [--monte-carlo N] [--out DIR]

Writes ``DIR/results.json`` (every metric; ``thetadesk/backtest/results.py``) and
``DIR/report.html`` (self-contained), keeps the run's ledger in ``DIR/state/`` and prints the
headline figures next to the buy-and-hold and put-write baselines: annual return, Sharpe at 0%
and over the 3-month T-bill (daily and monthly), Sortino, max drawdown and its days, win rate,
profit factor, trades, exposure, costs paid, and the probabilistic Sharpe ratio. ``--data
replay`` (the
default) is the real S&P 500 (SPY) and NASDAQ (QQQ) with VIX, 2014-01-02 to 2018-10-31
unless --start/--end say otherwise; ``sim`` the config's simulator (252 sessions from --start
or market.start by default); a PATH users' bars and quotes (``thetadesk/backtest/engine.py``).
``--fill-model``: natural, mid, mid_slippage (with --slippage-ticks), volume_share (with
--display-share and --open-interest-share); without it the config's own. Exit 2 on a bad
config or argument.

``--trial-sharpes S1,S2,...`` (the annualised 0% Sharpe ratios of every variant tried, this one
included) fills ``deflated_sharpe.dsr``, the deflated Sharpe ratio of Bailey and Lopez de Prado
(2014); without it only the probabilistic Sharpe ratio is reported.

``--walk-forward`` adds rolling walk-forward optimisation (``thetadesk/backtest/walkforward.py``):
windows of --in-sample sessions (default 252), an embargo of --embargo sessions (default: the
config's holding period, ceil(target DTE x 252 / 365), over every grid point) and --out-of-sample
sessions (default 126); in-sample scores leave out the sessions from the opening of the first
trade still open at the in-sample end (the purge; --no-purge scores every session). The --grid
(a YAML file mapping dotted config paths to lists of values; default: strategy.short_delta
0.15-0.30 x exits.take_profit 0.6/0.75) is searched in sample by --objective (default sharpe),
the best point traded out of sample; the jobs run as Ray tasks (``actors/backtest.py``;
RAY_ADDRESS joins a cluster, else a local one) unless --local. The stitched out-of-sample result
goes to ``results.json`` under ``walk_forward`` with the baselines over the same sessions.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thetadesk.config import DEFAULT_CONFIG, load_config_data  # noqa: E402
from thetadesk.errors import ConfigError, DataError  # noqa: E402


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _sharpes(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}"
                                         ) from None
    if len(values) < 2:
        raise argparse.ArgumentTypeError("give the Sharpe ratios of at least two variants")
    return values


def parser() -> argparse.ArgumentParser:
    from thetadesk.backtest.engine import FILL_MODELS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=Path(DEFAULT_CONFIG))
    p.add_argument("--start", type=_date, help="first session (YYYY-MM-DD)")
    p.add_argument("--end", type=_date, help="last session (YYYY-MM-DD)")
    p.add_argument("--data", default="replay", help="replay (default), sim, or a PATH")
    p.add_argument("--fill-model", choices=FILL_MODELS,
                   help="how orders fill (default: the config's accounts' fill_model)")
    p.add_argument("--slippage-ticks", type=_positive, default=2,
                   help="mid_slippage: $0.01 ticks per share below the mid (default 2)")
    p.add_argument("--display-share", type=_share, default=0.1,
                   help="volume_share: most of the displayed size per poll (default 0.1)")
    p.add_argument("--open-interest-share", type=_share, default=0.05,
                   help="volume_share: most of the open interest per order (default 0.05)")
    p.add_argument("--walk-forward", action="store_true",
                   help="rolling in-sample/out-of-sample optimisation of --grid")
    p.add_argument("--in-sample", type=_positive, default=252, metavar="N",
                   help="walk-forward: sessions in each in-sample window (default 252)")
    p.add_argument("--out-of-sample", type=_positive, default=126, metavar="N",
                   help="walk-forward: sessions in each out-of-sample window (default 126)")
    p.add_argument("--embargo", type=_positive, metavar="N",
                   help="walk-forward: sessions left out between in and out of sample "
                   "(default: the holding period)")
    p.add_argument("--no-purge", action="store_true",
                   help="walk-forward: score in-sample windows on every session, open trades "
                   "at their end included")
    p.add_argument("--grid", type=Path, help="walk-forward: YAML {dotted.path: [values]}")
    p.add_argument("--objective", default="sharpe",
                   help="walk-forward: what the in-sample search maximises (default sharpe)")
    p.add_argument("--local", action="store_true",
                   help="walk-forward: run the jobs here, one by one, instead of as Ray tasks")
    p.add_argument("--monte-carlo", type=_positive, default=0, metavar="N",
                   help="N resampled paths of the trades and of the daily returns (0: off)")
    p.add_argument("--trial-sharpes", type=_sharpes, metavar="S1,S2,...",
                   help="the annualised 0%% Sharpe ratios of every variant tried, this one "
                   "included: results.json's deflated_sharpe.dsr corrects for them")
    p.add_argument("--out", type=Path, help="output directory (default: a new temporary one)")
    p.add_argument("--seed", type=_positive, help="override the config's seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


HEADLINE = (
    ("annual_return", "annual return", "pct"),
    ("sharpe", "Sharpe (0%)", "num"),
    ("sharpe_rf", "Sharpe (T-bill)", "num"),
    ("sharpe_monthly", "monthly Sharpe (0%)", "num"),
    ("sharpe_monthly_rf", "monthly Sharpe (T-bill)", "num"),
    ("sortino", "Sortino (0%)", "num"),
    ("sortino_rf", "Sortino (T-bill)", "num"),
    ("max_drawdown", "max drawdown", "pct"),
    ("max_drawdown_days", "drawdown days", "int"),
    ("win_rate", "win rate", "pct"),
    ("profit_factor", "profit factor", "num"),
    ("trades", "trades", "int"),
    ("exposure", "exposure", "pct"),
    ("costs.total", "costs ($)", "usd"),
    ("costs.per_trade", "cost per trade ($)", "usd"),
    ("deflated_sharpe.psr", "PSR (0%)", "num"),
    ("deflated_sharpe.dsr", "DSR (trials given)", "num"),
)


def _get(results: dict, key: str):
    value = results
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _headline(results: dict) -> str:
    base = results["baselines"]

    def fmt(v, kind):
        if v is None:
            return "n/a"
        return {"pct": f"{v * 100:.2f}%", "num": f"{v:.2f}", "int": f"{int(v)}",
                "usd": f"{v:,.0f}"}[kind]

    lines = [f"{'':24}{'ThetaDesk':>12}{'buy & hold':>12}{'put-write':>12}"]
    for key, label, kind in HEADLINE:
        lines.append(f"{label:24}{fmt(_get(results, key), kind):>12}"
                     f"{fmt(_get(base['buy_and_hold'], key), kind):>12}"
                     f"{fmt(_get(base['put_write'], key), kind):>12}")
    return "\n".join(lines)


def _walk_forward(args, data: dict, bt, grid) -> dict:
    from tqdm import tqdm

    from thetadesk.backtest.walkforward import (
        DEFAULT_GRID,
        default_embargo,
        grid_points,
        make_windows,
        run_job,
        walk_forward,
    )

    points = len(grid_points(grid or DEFAULT_GRID))
    embargo = default_embargo(data, grid) if args.embargo is None else args.embargo
    windows = len(make_windows(bt.session_dates, args.in_sample, args.out_of_sample, embargo))
    bar = tqdm(total=windows * (points + 1), unit="job", desc="walk-forward",
               disable=args.quiet)
    if args.local:
        def run_many(jobs):
            out = []
            for job in jobs:
                out.append(run_job(job))
                bar.update(1)
            return out
    else:
        from actors.backtest import run_jobs
        from actors.stress import ensure_ray

        ensure_ray(2)

        def run_many(jobs):
            return run_jobs(jobs, progress=lambda: bar.update(1))
    try:
        return walk_forward(data, str(args.data), bt.session_dates, grid=grid,
                            in_sample=args.in_sample, out_of_sample=args.out_of_sample,
                            objective=args.objective, embargo=embargo,
                            purge=not args.no_purge, fill_model=args.fill_model,
                            run_many=run_many)
    finally:
        bar.close()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from thetadesk.analytics.report import render_html
    from thetadesk.backtest.engine import Backtest, backtest_config
    from thetadesk.backtest.results import build_results
    from thetadesk.logging import configure_logging

    out = args.out or Path(tempfile.mkdtemp(prefix="thetadesk-backtest-"))
    try:
        data = load_config_data(args.config)
        if not isinstance(data, dict):
            raise ConfigError(f"{args.config}: the config must be a mapping")
        if args.seed is not None:
            data["seed"] = args.seed
        source = args.data if args.data in ("replay", "sim") else Path(args.data)
        config, market, end, notes = backtest_config(
            data, source=source, start=args.start, end=args.end, fill_model=args.fill_model,
            slippage_ticks=args.slippage_ticks, display_share=args.display_share,
            open_interest_share=args.open_interest_share)
        out.mkdir(parents=True, exist_ok=True)
        state = out / "state"
        configure_logging(state, "backtest", "warning", console=False)
        bt = Backtest(config, state, end=end, market=market, data=str(args.data),
                      fill_model=args.fill_model, notes=notes)
        grid = None
        if args.walk_forward:
            from thetadesk.backtest.walkforward import (
                OBJECTIVES,
                apply_params,
                default_embargo,
                grid_points,
                make_windows,
            )

            if args.objective not in OBJECTIVES:
                raise ConfigError(f"--objective {args.objective!r} is not one of "
                                  f"{', '.join(OBJECTIVES)}")
            if args.grid is not None:
                grid = load_config_data(args.grid)
                if not isinstance(grid, dict):
                    raise ConfigError(f"--grid {args.grid}: must map dotted config paths to "
                                      "lists of values")
                for params in grid_points(grid):
                    apply_params(data, params)
            embargo = default_embargo(data, grid) if args.embargo is None else args.embargo
            make_windows(bt.session_dates, args.in_sample, args.out_of_sample, embargo)
    except (ConfigError, DataError, OSError, ValueError) as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    from tqdm import tqdm

    with tqdm(total=len(bt.session_dates), unit="session", disable=args.quiet,
              desc="backtest") as bar:
        def step(session: date) -> None:
            bar.set_postfix_str(session.isoformat(), refresh=False)
            bar.update(1)

        result = bt.run(progress=step)
    results = build_results(result, bt.market, monte_carlo=args.monte_carlo,
                            seed=config.seed, trial_sharpes=args.trial_sharpes)
    if args.walk_forward:
        try:
            wf = _walk_forward(args, data, bt, grid)
        except ConfigError as exc:
            print(f"backtest: {exc}", file=sys.stderr)
            return 2
        from thetadesk.backtest.results import add_walk_forward, baseline_symbol
        from thetadesk.wiring import cash_interest_of

        interest = cash_interest_of(config.accounts[0])
        add_walk_forward(results, wf, bt.market, baseline_symbol(result),
                         config.accounts[0].commission_per_contract,
                         None if interest is None else interest.daily)
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    (out / "report.html").write_text(render_html(results), encoding="utf-8")
    print(_headline(results))
    if results["walk_forward"]:
        wf = results["walk_forward"]
        print(f"walk-forward, out of sample (embargo {wf['embargo_sessions']} sessions, "
              f"in-sample purge {'on' if wf['purge'] else 'off'}):")
        print(_headline({**results["walk_forward"]["out_of_sample"],
                         "baselines": results["walk_forward"]["baselines"]}))
    print(f"wrote {out / 'results.json'} and {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
