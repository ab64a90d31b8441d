"""Specifications of walk-forward optimisation (thetadesk.backtest.walkforward), run locally
on a few simulated sessions (the Ray fan-out is in tests/integration)."""

import itertools
from datetime import date, timedelta

import pytest

from tests.unit.backtest.conftest import sim_data
from thetadesk.backtest.walkforward import (
    Job,
    _purged_length,
    apply_params,
    choose,
    default_embargo,
    grid_points,
    holding_days,
    holding_sessions,
    make_windows,
    run_job,
    run_local,
    walk_forward,
)
from thetadesk.clock import MarketCalendar
from thetadesk.config import parse_config
from thetadesk.errors import ConfigError

pytestmark = pytest.mark.usefixtures("quiet_logs")
SESSIONS = MarketCalendar().sessions(date(2025, 1, 6), 30)


def test_windows_roll_by_the_out_of_sample_length_without_overlap():
    windows = make_windows(SESSIONS, 10, 5)
    assert len(windows) == 4  # 10+5, then +5 each: needs 15, 20, 25, 30 sessions
    oos = [w.out_of_sample for w in windows]
    for w in windows:
        assert w.in_sample[1] < w.out_of_sample[0]
    for a, b in itertools.pairwise(oos):
        assert MarketCalendar().next_session(a[1] + timedelta(days=1)) == b[0]
    assert windows[0].in_sample == (SESSIONS[0], SESSIONS[9])
    assert windows[-1].out_of_sample == (SESSIONS[25], SESSIONS[29])


def test_too_few_sessions_for_a_window_is_refused():
    with pytest.raises(ConfigError, match="30 sessions cannot hold one walk-forward window"):
        make_windows(SESSIONS, 30, 1)
    with pytest.raises(ConfigError, match="10 in-sample, 16 embargoed and 5 out-of-sample"):
        make_windows(SESSIONS, 10, 5, embargo=16)


def test_embargoed_windows_never_overlap_and_keep_the_gap():
    windows = make_windows(SESSIONS, 10, 5, embargo=3)
    # 10 + 3 + 5 = 18 sessions for the first fold, then +5: 18, 23, 28 fit in 30
    assert len(windows) == 3
    index = {d: i for i, d in enumerate(SESSIONS)}
    for w in windows:
        ins = set(range(index[w.in_sample[0]], index[w.in_sample[1]] + 1))
        gap = set(range(index[w.embargo[0]], index[w.embargo[1]] + 1))
        oos = set(range(index[w.out_of_sample[0]], index[w.out_of_sample[1]] + 1))
        assert (len(ins), len(gap), len(oos)) == (10, 3, 5)
        assert not ins & oos
        assert not ins & gap
        assert not gap & oos
        assert min(oos) - max(ins) == 3 + 1  # three whole sessions between them
    assert windows[0].embargo == (SESSIONS[10], SESSIONS[12])
    assert windows[0].out_of_sample == (SESSIONS[13], SESSIONS[17])
    for a, b in itertools.pairwise(windows):  # the out-of-sample stretches still abut
        assert MarketCalendar().next_session(a.out_of_sample[1] + timedelta(days=1)) == (
            b.out_of_sample[0])
    assert make_windows(SESSIONS, 10, 5)[0].embargo is None


def test_the_default_embargo_covers_the_holding_period():
    data = sim_data()  # target_dte 35 calendar days
    config = parse_config(data)
    assert holding_days(config) == 35
    assert holding_sessions(config) == 25  # ceil(35 x 252 / 365) = ceil(24.16)
    assert default_embargo(data, {"strategy.short_delta": [0.2, 0.3]}) == 25
    # the longest holding period of any grid point, profiles and hedges included
    assert default_embargo(data, {"strategy.target_dte": [30, 45]}) == 32  # ceil(31.07)
    hedged = sim_data(**{"hedging.enabled": True,
                         "hedging.tail": {"premium_fraction": 0.1, "dte": 60, "roll_dte": 21}})
    assert holding_sessions(parse_config(hedged)) == 42  # ceil(60 x 252 / 365) = ceil(41.4)
    profiled = sim_data(strategies={"long": {"target_dte": 50, "min_dte": 21}})
    assert holding_days(parse_config(profiled)) == 50


def test_purge_keeps_the_sessions_before_the_first_entry_still_open_at_the_end():
    days = SESSIONS[:6]  # 2025-01-06 .. 2025-01-14 (no session on the 9th)
    assert _purged_length(days, []) == 6
    # opened on the 10th at 15:00 UTC (10:00 New York): the 6th, 7th and 8th are kept
    assert _purged_length(days, ["2025-01-13T15:00:00+00:00",
                                 "2025-01-10T15:00:00+00:00"]) == 3
    # 01:00 UTC on the 8th is the evening of the 7th in New York
    assert _purged_length(days, ["2025-01-08T01:00:00+00:00"]) == 1


def test_grid_points_are_every_combination():
    points = grid_points({"a.b": [1, 2], "c": ["x", "y", "z"]})
    assert len(points) == 6
    assert points[0] == (("a.b", 1), ("c", "x"))


def test_apply_params_sets_paths_and_refuses_unknown_ones():
    data = sim_data()
    changed = apply_params(data, [("strategy.short_delta", 0.3),
                                  ("accounts.0.max_risk_per_trade", 500)])
    assert changed["strategy"]["short_delta"] == 0.3
    assert changed["accounts"][0]["max_risk_per_trade"] == 500
    assert data["strategy"]["short_delta"] == sim_data()["strategy"]["short_delta"] != 0.3
    # (the original is untouched)
    with pytest.raises(ConfigError, match=r"strategy\.nope\.x: the config has no 'nope' there"):
        apply_params(data, [("strategy.nope.x", 1)])


def test_choose_takes_the_best_defined_objective_first_on_ties():
    results = [{"metrics": {"sharpe": None}}, {"metrics": {"sharpe": 1.2}},
               {"metrics": {"sharpe": 1.2}}, {"metrics": {"sharpe": 0.3}}]
    assert choose(results) == 1
    with pytest.raises(ConfigError, match="objective 'luck'"):
        choose(results, "luck")


def test_walk_forward_trades_in_sample_choices_out_of_sample():
    data = sim_data()
    jobs_seen, results_seen = [], []

    def spy(jobs):
        jobs_seen.append(list(jobs))
        results_seen.append(run_local(jobs))
        return results_seen[-1]

    grid = {"strategy.min_credit_fraction": [0.99, 0.15]}  # never trade / the default
    wf = walk_forward(data, "sim", SESSIONS[:22], grid=grid, in_sample=10, out_of_sample=5,
                      embargo=2, run_many=spy)

    in_jobs, out_jobs = jobs_seen
    assert len(in_jobs) == 2 * 2
    assert len(out_jobs) == 2
    assert all(job.purge for job in in_jobs)
    assert not any(job.purge for job in out_jobs)
    assert (wf["embargo_sessions"], wf["holding_sessions"], wf["purge"]) == (2, 25, True)
    for window, job in zip(wf["windows"], out_jobs, strict=True):
        # the out-of-sample job runs what its in-sample grid chose, two sessions after the
        # in-sample span
        assert dict(job.params) == window["params"]
        in_end = in_jobs[2 * window["window"]].end
        assert job.start == SESSIONS[SESSIONS.index(in_end) + 3]
        best = max(window["in_sample_grid"], key=lambda r: r["sharpe"] if r["sharpe"]
                   is not None else float("-inf"))
        assert window["params"] == best["params"]
    assert [e["session"] for e in wf["equity"]] == [d.isoformat() for d in SESSIONS[12:22]]
    assert wf["out_of_sample"]["sessions"] == 10
    # stitched: the second window's returns continue from where the first ended
    w0, w1 = results_seen[1]
    assert [e["equity"] for e in wf["equity"][:5]] == pytest.approx(w0["equity"])
    level = w0["equity"][-1]
    assert [e["equity"] for e in wf["equity"][5:]] == pytest.approx(
        [level * x / 100_000.0 for x in w1["equity"]])
    assert wf["out_of_sample"]["trades"] == len(w0["trades"]) + len(w1["trades"])


def test_an_in_sample_job_is_scored_without_the_trades_still_open_at_its_end():
    data = sim_data()
    job = Job(data, "sim", SESSIONS[0], SESSIONS[9], (), purge=True)
    purged, whole = run_job(job), run_job(Job(data, "sim", SESSIONS[0], SESSIONS[9], ()))

    assert purged["equity"] == whole["equity"]  # the same run ...
    assert whole["purged_sessions"] == 0
    assert purged["purged_sessions"] > 0, "the window should end with a position open"
    kept = purged["scored_sessions"]
    assert purged["metrics"]["sessions"] == kept < 10  # ... scored on its first sessions
    assert purged["metrics"]["final_equity"] == (whole["equity"][kept - 1] if kept
                                                 else whole["capital"])
    assert {"commissions", "spread", "total"} <= set(purged["costs"])
