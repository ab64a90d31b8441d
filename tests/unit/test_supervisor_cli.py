"""The supervisor's command line: config errors exit 2 before anything starts."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD = (ROOT / "config.yaml").read_text()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "supervisor.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


def test_check_config_on_the_default_config_exits_0():
    result = run("--check-config")
    assert result.returncode == 0, result.stderr
    assert "OK (2 symbols: SPY, QQQ; accounts: paper)" in result.stdout


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("max_loss_per_trade: 4000", "max_loss_per_trade: 0",
         "accounts[0].risk.max_loss_per_trade: must be > 0"),
        ("tick_seconds: 300", "tick_seconds: 300\n  tick_secs: 5", "market.tick_secs: unknown key"),
        ("symbols: [SPY, QQQ]", "symbols: [SPY, IWM]", "accounts[0].symbols[1]"),
    ],
)
def test_bad_config_exits_2_naming_path_and_reason_before_starting(tmp_path, old, new, message):
    assert old in GOOD
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace(old, new, 1))

    result = run("--config", str(bad), "--sim-days", "1", "--state-dir", str(tmp_path / "s"))

    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "s").exists()  # nothing started


def test_invalid_arguments_exit_2():
    assert run("--sim-days", "0").returncode == 2
    assert run("--seed", "-1", "--check-config").returncode == 2


def test_a_live_config_refuses_sim_days_and_names_missing_keys(tmp_path):
    example = str(ROOT / "examples" / "alpaca-data.yaml")

    sim_days = run("--config", example, "--sim-days", "1", "--state-dir", str(tmp_path / "s"))
    no_keys = subprocess.run(
        [sys.executable, str(ROOT / "supervisor.py"), "--config", example, "--check-config"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
        env={k: v for k, v in __import__("os").environ.items() if not k.startswith("ALPACA_")})

    assert sim_days.returncode == 2
    assert "--sim-days needs a simulated market" in sim_days.stderr
    assert no_keys.returncode == 2
    assert "ALPACA_API_KEY, ALPACA_SECRET_KEY" in no_keys.stderr
    assert not (tmp_path / "s").exists()  # nothing started


def test_live_ticks_wait_for_the_wall_clock_and_skip_the_ones_gone_by():
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from supervisor import Supervisor, parse_args
    from thetadesk.config import load_config

    config = load_config(ROOT / "examples" / "alpaca-data.yaml", env={})
    sup = Supervisor(config, parse_args(["--config", "x"]), 0.0)
    t0 = datetime(2026, 8, 20, 14, 0, tzinfo=UTC)
    wall = SimpleNamespace(t=t0)
    clock = SimpleNamespace(now=lambda: wall.t)
    slept = []

    def sleep(s):
        slept.append(s)
        wall.t += timedelta(seconds=s)

    due_later = sup._wait_until(t0 + timedelta(seconds=2.5), clock, sleep)
    just_passed = sup._wait_until(wall.t - timedelta(seconds=config.market.tick_seconds), clock,
                                  sleep)
    long_gone = sup._wait_until(wall.t - timedelta(seconds=config.market.tick_seconds + 1),
                                clock, sleep)

    assert due_later is True
    assert slept == [1.0, 1.0, 0.5]  # in steps, so a stop request is seen within a second
    assert just_passed is True  # within one tick interval: still traded
    assert long_gone is False  # never traded late


@pytest.mark.parametrize(("flag", "waited"), [([], False), (["--wait-for-reports"], True)])
def test_the_close_report_is_collected_before_the_next_session_only_when_asked(flag, waited):
    from datetime import date

    from supervisor import Supervisor, parse_args
    from thetadesk.config import load_config

    sup = Supervisor(load_config(ROOT / "config.yaml"), parse_args(["--config", "x", *flag]), 0.0)
    calls = []
    sup._report = lambda at, monte_carlo: calls.append(("report", monte_carlo))
    sup._collect_report = lambda: calls.append(("collect",))
    sup._notify = lambda alerts: None
    sup._day_rows = lambda session: []

    class NoDays:
        def days(self):
            return []

    from thetadesk.clock import MarketCalendar

    sup.ledger = NoDays()
    sup.calendar = MarketCalendar()
    sup._end_of_day(date(2025, 1, 6))

    assert calls == [("report", True)] + ([("collect",)] if waited else [])


def test_seed_on_the_command_line_reaches_what_defaults_to_the_seed():
    sys.path.insert(0, str(ROOT))
    from supervisor import run_config

    config = run_config(ROOT / "config.yaml", 11)
    assert config.seed == 11
    assert config.accounts[0].fill_model.seed == 11  # the mid-fill draws follow --seed
    assert run_config(ROOT / "config.yaml").accounts[0].fill_model.seed == 7
