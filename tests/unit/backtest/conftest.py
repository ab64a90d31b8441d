"""Small backtests on the simulator: 15-minute ticks, no Monte Carlo VaR, a handful of
sessions, so each runs in seconds."""

import copy
from datetime import date

import pytest

from thetadesk.config import DEFAULT_CONFIG, load_config_data

BASE = load_config_data(DEFAULT_CONFIG)
START = date(2025, 1, 6)


def sim_data(**changes):
    """The default config's data with 15-minute ticks, no Monte Carlo, and ``changes`` given
    as dotted paths (``{"strategy.min_credit_fraction": 0.99}``)."""
    data = copy.deepcopy(BASE)
    data["market"]["tick_seconds"] = 900
    data["risk_reports"]["monte_carlo_scenarios"] = 0
    for path, value in changes.items():
        node = data
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[keys[-1]] = value
    return data


@pytest.fixture
def quiet_logs(tmp_path):
    from thetadesk.logging import configure_logging, shutdown_logging

    configure_logging(tmp_path / "logs", "test", "warning", console=False)
    yield
    shutdown_logging()
