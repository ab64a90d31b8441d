"""scripts/backtest.py end to end on a few simulated sessions: results.json with the contract
keys, a self-contained report.html, and clear refusals."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from tests.unit.backtest.conftest import sim_data
from thetadesk.rates import TBILL_3M

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("backtest_cli", ROOT / "scripts" / "backtest.py")
cli = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cli)

REQUIRED = ("win_rate", "sharpe", "sortino", "max_drawdown", "annual_return", "trades",
            "sharpe_rf", "sortino_rf", "sharpe_monthly", "sharpe_monthly_rf",
            "max_drawdown_days", "profit_factor", "exposure", "costs", "deflated_sharpe")


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(sim_data()))
    return path


def test_backtest_writes_results_and_report(tmp_path, config_file, capsys):
    out = tmp_path / "out"
    code = cli.main(["--config", str(config_file), "--data", "sim", "--start", "2025-01-06",
                     "--end", "2025-01-10", "--monte-carlo", "50", "--out", str(out),
                     "--trial-sharpes", "0.5,1.0,1.5", "--quiet"])

    assert code == 0
    results = json.loads((out / "results.json").read_text())
    for key in REQUIRED:
        assert key in results
        for baseline in ("buy_and_hold", "put_write"):
            assert key in results["baselines"][baseline]
    assert results["max_drawdown"] >= 0
    assert results["run"]["start"] == "2025-01-06"
    assert results["run"]["end"] == "2025-01-10"
    assert len(results["equity"]) == 4  # 2025-01-09 was a national day of mourning
    assert results["monte_carlo"]["daily_returns"]["paths"] == 50
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") >= 2
    for fetch in ('src="http', "src='http", 'href="http', "href='http", "url(http", "<script"):
        assert fetch not in page  # self-contained: nothing to fetch, nothing to run
    for section in ("Results and baselines", "Monthly returns", "Attribution", "Monte Carlo",
                    "Walk-forward", "Trades"):
        assert section in page
    for row in ("Sharpe, daily (0% risk-free)", "Sharpe, daily (excess over T-bills)",
                "Sharpe, monthly (0%)", "Costs paid ($)", "Probabilistic Sharpe ratio",
                "Max drawdown: trough", f"2025 {TBILL_3M[2025]:.2%}"):
        assert row in page
    assert results["run"]["risk_free_rate"]["by_year"] == {"2025": TBILL_3M[2025]}
    assert results["deflated_sharpe"]["n_trials"] == 3
    assert results["deflated_sharpe"]["trial_sharpe_variance"] == pytest.approx(0.25 / 252)
    printed = capsys.readouterr().out
    assert "buy & hold" in printed
    for label in ("Sharpe (0%)", "Sharpe (T-bill)", "monthly Sharpe (0%)", "Sortino (0%)",
                  "drawdown days", "profit factor", "exposure", "costs ($)", "PSR (0%)"):
        assert label in printed
    assert "report.html" in printed


def test_walk_forward_locally_reports_its_windows(tmp_path, config_file, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("strategy.short_delta: [0.20, 0.30]\n")
    out = tmp_path / "wf"
    code = cli.main(["--config", str(config_file), "--data", "sim", "--start", "2025-01-06",
                     "--end", "2025-01-17", "--walk-forward", "--in-sample", "4",
                     "--out-of-sample", "3", "--embargo", "1", "--grid", str(grid), "--local",
                     "--quiet", "--out", str(out)])

    assert code == 0
    wf = json.loads((out / "results.json").read_text())["walk_forward"]
    # in sample 6th-10th (4 sessions: none on the 9th), the 13th embargoed
    assert [w["embargo"] for w in wf["windows"]] == ["2025-01-13 to 2025-01-13"]
    assert [w["out_of_sample"] for w in wf["windows"]] == ["2025-01-14 to 2025-01-16"]
    assert (wf["embargo_sessions"], wf["purge"]) == (1, True)
    assert wf["windows"][0]["params"]["strategy.short_delta"] in (0.20, 0.30)
    for key in REQUIRED:
        assert key in wf["out_of_sample"]
        assert key in wf["baselines"]["buy_and_hold"]
    assert "Walk-forward" in (out / "report.html").read_text()
    printed = capsys.readouterr().out
    assert "walk-forward, out of sample (embargo 1 sessions, in-sample purge on):" in printed
    assert "Sharpe (T-bill)" in printed


@pytest.mark.parametrize(("args", "message"), [
    (["--objective", "luck"], "--objective 'luck' is not one of"),
    (["--in-sample", "100"], "cannot hold one walk-forward window"),
    ([], "2 in-sample, 25 embargoed and 1 out-of-sample"),  # the default embargo: 35 DTE
    (["--grid", "GRID"], "walk-forward grid strategy.nope.x: the config has no 'nope' there"),
])
def test_walk_forward_refusals_exit_2_before_running(tmp_path, config_file, capsys, args,
                                                     message):
    grid = tmp_path / "grid.yaml"
    grid.write_text("strategy.nope.x: [1]\n")
    args = [str(grid) if a == "GRID" else a for a in args]
    code = cli.main(["--config", str(config_file), "--data", "sim", "--start", "2025-01-06",
                     "--end", "2025-01-10", "--walk-forward", "--in-sample", "2",
                     "--out-of-sample", "1", "--local", "--quiet", "--out",
                     str(tmp_path / "o"), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.json").exists()


def test_a_bad_config_value_exits_2_with_its_path(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(sim_data(**{"strategy.short_delta": 3})))
    assert cli.main(["--config", str(path), "--data", "sim", "--out", str(tmp_path / "o")]) == 2
    assert "strategy.short_delta" in capsys.readouterr().err


def test_a_missing_data_path_exits_2(tmp_path, config_file, capsys):
    assert cli.main(["--config", str(config_file), "--data", str(tmp_path / "nope"),
                     "--start", "2025-01-06", "--out", str(tmp_path / "o")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--fill-model", "perfect"], ["--start", "yesterday"],
                                  ["--display-share", "2"], ["--trial-sharpes", "1.0"],
                                  ["--trial-sharpes", "a,b"]])
def test_bad_arguments_exit_2(args, config_file):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--config", str(config_file), *args])
    assert exc.value.code == 2
