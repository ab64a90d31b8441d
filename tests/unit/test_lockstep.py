"""The in-process lockstep desk: what it refuses and that it runs the supervisor's round."""

import copy

import pytest
import yaml

from thetadesk.config import DEFAULT_CONFIG, parse_config
from thetadesk.errors import ConfigError
from thetadesk.lockstep import LockstepDesk

DATA = yaml.safe_load(DEFAULT_CONFIG.read_text())


def test_live_sources_are_refused(tmp_path):
    data = copy.deepcopy(DATA)
    data["market"]["source"] = "polygon"
    config = parse_config(data, env={"POLYGON_API_KEY": "k"})
    with pytest.raises(ConfigError, match="simulations only"):
        LockstepDesk(config, tmp_path)


def test_two_sessions_trade_and_resume_on_the_next_session(tmp_path):
    data = copy.deepcopy(DATA)
    data["market"]["tick_seconds"] = 1800
    desk = LockstepDesk(parse_config(data, env={}), tmp_path)
    try:
        first = desk.run(1)
        second = desk.run(1)
        orders = desk.ledger.orders("paper")
    finally:
        desk.close()
    assert [r.session.isoformat() for r in (*first, *second)] == ["2025-01-06", "2025-01-07"]
    assert orders  # the default strategy enters in its window
    assert first[0].equity == pytest.approx(100_000 + first[0].day_pnl)


def test_breakers_are_evaluated_at_each_sessions_first_round_then_only_when_needed(tmp_path):
    data = copy.deepcopy(DATA)
    data["market"]["tick_seconds"] = 1800
    desk = LockstepDesk(parse_config(data, env={}), tmp_path)
    rounds, updates = [], []
    tick, update = desk.tick, desk.risk.update

    def counting_tick(now):
        rounds.append(now)
        return tick(now)

    def counting_update(now, ticks):
        updates.append(now)
        return update(now, ticks)

    desk.tick, desk.risk.update = counting_tick, counting_update
    try:
        desk.run(2)
    finally:
        desk.close()
    first_rounds = [min(r for r in rounds if r.date() == d) for d in sorted({r.date()
                                                                              for r in rounds})]
    assert len(first_rounds) == 2
    assert set(first_rounds) <= set(updates)  # a warning still reached is recorded each session
    assert len(updates) < len(rounds)  # a calm desk's other rounds skip the evaluation
