"""One Ray cluster for the whole integration session; supervisors run as real subprocesses that
join it with --address, so a test can SIGKILL them (or their actors) like an operator would."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_address():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


class Run:
    """A `python supervisor.py` subprocess on a state dir."""

    def __init__(self, state_dir: Path, address: str, *args: str, env: dict | None = None):
        self.state_dir = state_dir
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "supervisor.py"), "--state-dir", str(state_dir),
             "--address", address, *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )

    def wait(self, timeout: float = 240) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=60)


def default_config_with(changes: dict) -> str:
    """The shipped config.yaml's text with ``changes`` given as dotted paths
    (``{"accounts.0.risk.daily_loss_limit": 1}``; ``walkforward.apply_params``: a path the
    config does not have fails here or when the file is loaded)."""
    from thetadesk.backtest.walkforward import apply_params
    from thetadesk.config import DEFAULT_CONFIG

    data = apply_params(yaml.safe_load(DEFAULT_CONFIG.read_text()), list(changes.items()))
    return yaml.safe_dump(data, sort_keys=False)


def wait_for(predicate, timeout: float = 120, every: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def run_supervisor(ray_address):
    runs = []

    def start(state_dir: Path, *args: str, env: dict | None = None) -> Run:
        run = Run(state_dir, ray_address, *args, env=env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.proc.poll() is None:
            run.kill()
