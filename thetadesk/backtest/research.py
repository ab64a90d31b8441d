"""The research protocol: a grid fixed in a file, chosen on the in-sample period only, then
measured on held-out periods next to the baselines of the same runs, every variant counted.

A protocol file (YAML; ``research/protocol.yaml`` is the shipped one) holds:

- ``name``: what the run is called (its output files are named after it);
- ``base``: the config file the variants start from (relative to the protocol file);
- ``fixed``: dotted config paths set in every run, the base's included (speed settings, the
  backtest's breaker policy);
- ``desk``: dotted config paths every variant shares and the base does not (the portfolio
  construction being designed: sizing, the risk limits that go with it);
- ``periods``: ``in_sample``, ``held_out`` and optionally ``second_test``, each
  ``{start, end}`` (sessions of the replay, 2000-01-03..2018-10-31);
- ``selection``: ``objective`` (a key of the run's metrics, larger is better: ``sharpe``,
  ``sharpe_rf``, ...), and constraints a variant must meet in sample to be chosen:
  ``max_drawdown`` (a positive fraction) and ``min_trades``;
- ``grid``: dotted config paths to lists of values, every combination one variant
  (``walkforward.grid_points``); ``families``: ``{family: {option: {dotted paths}}}``, choices
  that need several keys changed together (an exit set, an entry filter), every family's
  options crossed with each other and with the grid; ``variants``: named sets of dotted paths,
  a family of its own;
- ``walk_forward`` (optional): ``{grid, fixed, in_sample, out_of_sample}``, a smaller grid
  (over ``fixed``, ``desk`` and its own ``fixed``) walked forward from the in-sample start to
  the held-out end;
- ``crash`` (optional): a scheduled shock in the simulator (``start``, ``sessions``, and
  ``shock: {date, gap, vol_multiplier}``), run with the chosen configuration.

What is run (``plan``): every variant over ``in_sample``; the chosen one (``choose``: the best
objective among those meeting the constraints; if none does, the best overall, and the result
says so) and the base configuration over every other period. Every run carries its own
baselines (buy-and-hold and the put-write over the same sessions and capital, from
``thetadesk.backtest.results.build_results``). No figure of a held-out period is read before
the choice is made: ``choose`` sees in-sample summaries only.

A run is a ``walkforward.Job`` (plain data): ``run_summary`` executes one anywhere (a Ray task,
``actors/backtest.py``) and returns its metrics without the bulky lists, plus the daily returns
the deflated Sharpe ratio needs.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from thetadesk.backtest.walkforward import Job, apply_params, grid_points
from thetadesk.config import REPLAY_FIRST, REPLAY_LAST, load_config_data, parse_config
from thetadesk.errors import ConfigError

__all__ = [
    "Choice",
    "Period",
    "Protocol",
    "choose",
    "crash_summary",
    "load_protocol",
    "run_crash",
    "run_summary",
    "variants",
]

_BULKY = ("equity", "trade_list", "monthly_returns", "attribution")
_PERIOD_NAMES = ("in_sample", "held_out", "second_test")


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    start: date
    end: date


@dataclass(frozen=True, slots=True)
class Protocol:
    name: str
    path: Path
    digest: str  # sha256 of the protocol file's bytes: what was fixed before the run
    base: dict
    base_path: Path
    fixed: tuple[tuple[str, Any], ...]
    periods: dict[str, Period]
    objective: str
    max_drawdown: float | None
    min_trades: int
    grid: dict[str, list]
    # family -> option -> params; the family "" holds ``variants`` (labelled by name alone)
    families: dict[str, dict[str, tuple[tuple[str, Any], ...]]]
    desk: tuple[tuple[str, Any], ...] = ()
    walk_forward: dict | None = None
    crash: dict | None = None
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    label: str
    params: tuple[tuple[str, Any], ...]
    met_constraints: bool
    why: str


def _date(value: Any, where: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{where}: not a date YYYY-MM-DD: {value!r}") from None


def _pairs(mapping: Any, where: str) -> tuple[tuple[str, Any], ...]:
    if mapping is None:
        return ()
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where}: must map dotted config paths to values")
    return tuple((str(k), v) for k, v in mapping.items())


def load_protocol(path: str | Path) -> Protocol:
    """Read and check a protocol file (ConfigError naming the key on any problem); every
    variant's config is validated before anything runs."""
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the protocol: {exc}") from None
    data = load_config_data(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the protocol must be a mapping")
    known = {"name", "base", "fixed", "desk", "periods", "selection", "grid", "families",
             "variants", "walk_forward", "crash", "notes"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown} (allowed: {sorted(known)})")
    name = str(data.get("name") or path.stem)
    base_path = (path.parent / str(data.get("base", "config.yaml"))).resolve()
    base = load_config_data(base_path)
    if not isinstance(base, dict):
        raise ConfigError(f"{base_path}: the base config must be a mapping")
    periods: dict[str, Period] = {}
    raw_periods = data.get("periods")
    if not isinstance(raw_periods, Mapping):
        raise ConfigError(f"{path}: periods: give in_sample and held_out as {{start, end}}")
    for key, spec in raw_periods.items():
        if key not in _PERIOD_NAMES:
            raise ConfigError(f"{path}: periods.{key}: not one of {', '.join(_PERIOD_NAMES)}")
        if not isinstance(spec, Mapping) or set(spec) != {"start", "end"}:
            raise ConfigError(f"{path}: periods.{key}: needs exactly start and end")
        start = _date(spec["start"], f"periods.{key}.start")
        end = _date(spec["end"], f"periods.{key}.end")
        if not REPLAY_FIRST <= start < end <= REPLAY_LAST:
            raise ConfigError(f"{path}: periods.{key}: {start}..{end} must lie inside the "
                              f"replay, {REPLAY_FIRST}..{REPLAY_LAST}, start before end")
        periods[key] = Period(key, start, end)
    for key in ("in_sample", "held_out"):
        if key not in periods:
            raise ConfigError(f"{path}: periods.{key} is missing")
    ins = periods["in_sample"]
    for other in periods.values():
        if other.name != "in_sample" and not (other.end < ins.start or other.start > ins.end):
            raise ConfigError(f"{path}: periods.{other.name} overlaps the in-sample period: "
                              "a held-out figure must not share a session with the choice")
    selection = data.get("selection") or {}
    if not isinstance(selection, Mapping):
        raise ConfigError(f"{path}: selection: must be a mapping")
    bad = sorted(set(selection) - {"objective", "max_drawdown", "min_trades"})
    if bad:
        raise ConfigError(f"{path}: selection: unknown key(s) {bad}")
    max_dd = selection.get("max_drawdown")
    if max_dd is not None and not (isinstance(max_dd, int | float) and 0 < max_dd <= 1):
        raise ConfigError(f"{path}: selection.max_drawdown: a fraction in (0, 1], got "
                          f"{max_dd!r}")
    grid = data.get("grid") or {}
    if not isinstance(grid, Mapping):
        raise ConfigError(f"{path}: grid: must map dotted config paths to lists of values")
    families: dict[str, dict[str, tuple[tuple[str, Any], ...]]] = {}
    raw_families = data.get("families") or {}
    if not isinstance(raw_families, Mapping):
        raise ConfigError(f"{path}: families: must map family names to their options")
    for family, options in raw_families.items():
        if not isinstance(options, Mapping) or not options:
            raise ConfigError(f"{path}: families.{family}: must map option names to sets of "
                              "dotted paths")
        families[str(family)] = {str(k): _pairs(v, f"families.{family}.{k}")
                                 for k, v in options.items()}
    named_raw = data.get("variants") or {}
    if not isinstance(named_raw, Mapping):
        raise ConfigError(f"{path}: variants: must map names to sets of dotted paths")
    if named_raw:
        families[""] = {str(k): _pairs(v, f"variants.{k}") for k, v in named_raw.items()}
    if not grid and not families:
        raise ConfigError(f"{path}: give a grid, families or variants: there is nothing to "
                          "choose from")
    walk = data.get("walk_forward")
    if walk is not None:
        if not isinstance(walk, Mapping) or not isinstance(walk.get("grid"), Mapping):
            raise ConfigError(f"{path}: walk_forward: needs a grid of dotted paths to lists")
        bad = sorted(set(walk) - {"grid", "fixed", "in_sample", "out_of_sample"})
        if bad:
            raise ConfigError(f"{path}: walk_forward: unknown key(s) {bad}")
        walk = {"grid": {k: list(v) for k, v in walk["grid"].items()},
                "fixed": _pairs(walk.get("fixed"), "walk_forward.fixed"),
                "in_sample": int(walk.get("in_sample", 252)),
                "out_of_sample": int(walk.get("out_of_sample", 126))}
    protocol = Protocol(
        name=name, path=path, digest=hashlib.sha256(raw_bytes).hexdigest(), base=base,
        base_path=base_path, fixed=_pairs(data.get("fixed"), "fixed"), periods=periods,
        objective=str(selection.get("objective", "sharpe")),
        max_drawdown=None if max_dd is None else float(max_dd),
        min_trades=int(selection.get("min_trades", 0)), grid={k: list(v) for k, v in
                                                             grid.items()},
        families=families, desk=_pairs(data.get("desk"), "desk"), walk_forward=walk,
        crash=data.get("crash"), notes=tuple(str(n) for n in (data.get("notes") or ())))
    checks = [("the base", ()), *variants(protocol)]
    if walk is not None:
        checks += [(f"walk-forward point {dict(p)}", (*protocol.desk, *walk["fixed"], *p))
                   for p in grid_points(walk["grid"])]
    for label, params in checks:
        try:
            parse_config(apply_params(protocol.base, (*protocol.fixed, *params)), env={})
        except ConfigError as exc:
            raise ConfigError(f"{path}: variant {label}: {exc}") from None
    return protocol


def variants(protocol: Protocol) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
    """Every variant as (label, dotted params: the ``desk`` settings, then each family's
    option, then the grid point): every combination of the families' options crossed with
    every grid point, in file order. The count is the number of trials the deflated Sharpe
    ratio corrects for."""
    points = grid_points(protocol.grid) if protocol.grid else [()]
    combos: list[tuple[list[str], tuple]] = [([], ())]
    for family, options in protocol.families.items():
        combos = [([*names, name if not family else f"{family}={name}"], params + extra)
                  for names, params in combos for name, extra in options.items()]
    out = []
    for names, extra in combos:
        for point in points:
            label = ", ".join([*names, *(f"{_short(k)}={v}" for k, v in point)]) or "base"
            out.append((label, (*protocol.desk, *extra, *point)))
    return out


def _short(path: str) -> str:
    """A dotted path's name in a label: its last part (``strategy.ladder.enabled``: ladder)."""
    parts = path.split(".")
    return parts[-2] if parts[-1] == "enabled" and len(parts) > 1 else parts[-1]


def job(protocol: Protocol, period: Period, params: Sequence[tuple[str, Any]],
        label: str) -> Job:
    """One run of the protocol as a ``walkforward.Job`` over the replay."""
    data = apply_params(protocol.base, protocol.fixed)
    return Job(copy.deepcopy(data), "replay", period.start, period.end, tuple(params), None,
               f"{label} / {period.name}")


def run_summary(job: Job) -> dict[str, Any]:
    """Run one backtest and return its ``results.json`` figures without the bulky lists,
    with its params, label, daily returns, their excess over the T-bill (rate / 252 a
    session) and the trades' P&L (for the deflated Sharpe ratios)."""
    import shutil
    import tempfile

    from thetadesk.analytics.metrics import PERIODS, daily_returns
    from thetadesk.backtest.engine import Backtest, backtest_config
    from thetadesk.backtest.results import build_results, risk_free_rates

    source = job.source if job.source in ("replay", "sim") else Path(job.source)
    config, market, end, notes = backtest_config(apply_params(job.data, job.params),
                                                 source=source, start=job.start, end=job.end,
                                                 fill_model=job.fill_model)
    scratch = Path(tempfile.mkdtemp(prefix="research-"))
    try:
        bt = Backtest(config, scratch / "state", end=end, market=market, data=job.source,
                      notes=notes)
        result = bt.run()
        results = build_results(result, bt.market)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out = {k: v for k, v in results.items() if k not in _BULKY}
    out["label"] = job.label
    out["params"] = [list(p) for p in job.params]
    returns = daily_returns(result.equity, result.capital)
    out["returns"] = [float(r) for r in returns]
    rates, _ = risk_free_rates([row.session for row in result.sessions])
    out["excess_returns"] = (None if rates is None else
                             [float(r - rf / PERIODS) for r, rf in zip(returns, rates,
                                                                        strict=True)])
    out["trade_pnls"] = [t.pnl for t in result.trades]
    out["breaker_resets"] = sum(1 for e in result.breaker_events if e["kind"] == "reset")
    out["breaker_trips"] = sum(1 for e in result.breaker_events if e["kind"] == "tripped")
    return out


def _score(summary: Mapping[str, Any], objective: str) -> float:
    v = summary.get(objective)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else -math.inf


def choose(protocol: Protocol, in_sample: Sequence[Mapping[str, Any]]) -> Choice:
    """The variant to ship, from the in-sample summaries (in ``variants`` order) only."""
    labels = variants(protocol)
    if len(labels) != len(in_sample):
        raise ValueError(f"{len(in_sample)} in-sample results for {len(labels)} variants")

    def meets(s: Mapping[str, Any]) -> bool:
        dd = s.get("max_drawdown")
        if protocol.max_drawdown is not None and not (
                isinstance(dd, int | float) and dd <= protocol.max_drawdown):
            return False
        return (s.get("trades") or 0) >= protocol.min_trades

    ok = [i for i, s in enumerate(in_sample) if meets(s)]
    pool = ok or list(range(len(in_sample)))
    best = max(pool, key=lambda i: (_score(in_sample[i], protocol.objective), -i))
    label, params = labels[best]
    why = (f"best in-sample {protocol.objective} of the {len(ok)} variant(s) meeting the "
           "constraints" if ok else
           f"no variant met the constraints; best in-sample {protocol.objective} of all "
           f"{len(in_sample)}")
    return Choice(best, label, params, bool(ok), why)


def run_crash(data: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration ``data`` in the simulator through a scheduled shock (``spec``:
    ``start``, ``sessions``, ``shock: {date, gap, vol_multiplier}``), and the same without
    the shock (same seed): equity each session, for ``crash_summary``."""
    import shutil
    import tempfile

    from thetadesk.backtest.engine import Backtest, backtest_config
    from thetadesk.clock import MarketCalendar

    start = _date(spec["start"], "crash.start")
    sessions = int(spec["sessions"])
    shock = dict(spec["shock"])
    shock["date"] = _date(shock["date"], "crash.shock.date").isoformat()
    end = MarketCalendar().sessions(MarketCalendar().next_session(start), sessions)[-1]
    out: dict[str, Any] = {"shock": shock, "start": start.isoformat(), "end": end.isoformat()}
    for name, shocks in (("shocked", [shock]), ("calm", [])):
        raw = copy.deepcopy(dict(data))
        raw.setdefault("market", {}).setdefault("sim", {})["shocks"] = shocks
        config, market, last, _ = backtest_config(raw, source="sim", start=start, end=end)
        scratch = Path(tempfile.mkdtemp(prefix="crash-"))
        try:
            result = Backtest(config, scratch / "state", end=last, market=market,
                              data="sim").run()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        out[name] = {"sessions": [r.session.isoformat() for r in result.sessions],
                     "equity": result.equity, "capital": result.capital,
                     "open_positions": [r.open_positions for r in result.sessions]}
    return out


def crash_summary(run: Mapping[str, Any], *, window: int = 20) -> dict[str, Any]:
    """What the shock cost: equity at the close before the shock session, the lowest close
    within ``window`` sessions from it, the fall between them as a fraction of the first, and
    the same fall in the calm run (same sessions) for comparison."""
    day = run["shock"]["date"]
    out: dict[str, Any] = {"shock": run["shock"], "window_sessions": window}
    for name in ("shocked", "calm"):
        r = run[name]
        sessions, equity = r["sessions"], r["equity"]
        if day not in sessions:
            raise ValueError(f"the shock session {day} is not in the run "
                             f"({sessions[0]}..{sessions[-1]})")
        i = sessions.index(day)
        before = equity[i - 1] if i > 0 else r["capital"]
        low = min(equity[i:i + window])
        out[name] = {"equity_before": before, "lowest_after": low,
                     "loss_fraction": max(before - low, 0.0) / before,
                     "positions_before": r["open_positions"][i - 1] if i > 0 else 0,
                     "equity_end": equity[-1]}
    return out
