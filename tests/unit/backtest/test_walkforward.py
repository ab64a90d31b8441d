"""Specifications of walk-forward optimisation (thetadesk.backtest.walkforward), run locally
on a few simulated sessions (the Ray fan-out is in tests/integration)."""

import itertools
from datetime import date, timedelta

import pytest

from tests.unit.backtest.conftest import sim_data
from thetadesk.backtest.walkforward import (
    apply_params,
    choose,
    grid_points,
    make_windows,
    run_local,
    walk_forward,
)
from thetadesk.clock import MarketCalendar
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
    assert data["strategy"]["short_delta"] == 0.25  # the original is untouched
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
    wf = walk_forward(data, "sim", SESSIONS[:20], grid=grid, in_sample=10, out_of_sample=5,
                      run_many=spy)

    in_jobs, out_jobs = jobs_seen
    assert len(in_jobs) == 2 * 2
    assert len(out_jobs) == 2
    for window, job in zip(wf["windows"], out_jobs, strict=True):
        # the out-of-sample job runs what its in-sample grid chose, after the in-sample span
        assert dict(job.params) == window["params"]
        assert job.start > in_jobs[2 * window["window"]].end
        best = max(window["in_sample_grid"], key=lambda r: r["sharpe"] if r["sharpe"]
                   is not None else float("-inf"))
        assert window["params"] == best["params"]
    assert [e["session"] for e in wf["equity"]] == [d.isoformat() for d in SESSIONS[10:20]]
    assert wf["out_of_sample"]["sessions"] == 10
    # stitched: the second window's returns continue from where the first ended
    w0, w1 = results_seen[1]
    assert [e["equity"] for e in wf["equity"][:5]] == pytest.approx(w0["equity"])
    level = w0["equity"][-1]
    assert [e["equity"] for e in wf["equity"][5:]] == pytest.approx(
        [level * x / 100_000.0 for x in w1["equity"]])
    assert wf["out_of_sample"]["trades"] == len(w0["trades"]) + len(w1["trades"])
