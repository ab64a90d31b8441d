"""Specifications of the configuration: the shipped config.yaml, interpolation, clear errors."""

import copy
from datetime import date, time

import pytest
import yaml
from pydantic import ValidationError

from thetadesk.config import DEFAULT_CONFIG, Config, load_config, parse_config
from thetadesk.errors import ConfigError

DEFAULT_DATA = yaml.safe_load(DEFAULT_CONFIG.read_text())


def _data():
    return copy.deepcopy(DEFAULT_DATA)


def _error(data, env=None):
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={} if env is None else env)
    return info.value


def test_load_config_repo_default_loads_sim_market_and_one_paper_account():
    config = load_config(DEFAULT_CONFIG, env={})

    assert config.seed == 7
    assert config.market.source == "sim"
    assert config.market.start == date(2025, 1, 6)
    assert list(config.market.symbols) == ["SPY", "QQQ"]
    assert config.market.symbols["SPY"].spot == 580.0
    assert config.strategy.entry_start == time(10, 0)
    assert config.strategy.entry_end == time(15, 30)
    assert [a.name for a in config.accounts] == ["paper"]
    assert config.accounts[0].symbols == ("SPY", "QQQ")
    assert config.accounts[0].risk.daily_loss_limit == 4000
    assert config.logging.level == "info"


def test_parse_config_optional_sections_missing_use_defaults():
    data = _data()
    del data["notifications"], data["logging"]

    config = parse_config(data, env={})

    assert (config.notifications.console, config.notifications.min_severity) == (True, "info")
    assert (config.logging.level, config.logging.console) == ("info", True)


def test_config_is_frozen_assignment_raises():
    config = parse_config(_data(), env={})

    with pytest.raises(ValidationError):
        config.seed = 8


def _set(path, value):
    """A mutation setting ``path`` (keys and list indices) to ``value``; missing mapping keys
    along the way are created."""

    def mutate(data):
        *parents, last = path
        node = data
        for key in parents:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[last] = value

    return mutate


def _delete(path):
    def mutate(data):
        *parents, last = path
        node = data
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


def _duplicate_account(data):
    data["accounts"].append(copy.deepcopy(data["accounts"][0]))


@pytest.mark.parametrize(
    ("mutate", "path", "text"),
    [
        pytest.param(
            _set(["accounts", 0, "risk", "max_loss_per_trade"], 0),
            "accounts[0].risk.max_loss_per_trade",
            "accounts[0].risk.max_loss_per_trade: must be > 0",
            id="bound",
        ),
        pytest.param(
            _set(["strategy", "target_delta"], 0.3),
            "strategy.target_delta",
            "strategy.target_delta: unknown key (allowed: kind, target_dte, min_dte, short_delta,"
            " width, width_pct, width_sd, min_iv, min_credit_fraction, entry_start, entry_end,"
            " ladder, trend_sma, vrp)",
            id="unknown-key",
        ),
        pytest.param(
            _set(["accounts", 0, "symbols"], ["SPY", "IWM"]),
            "accounts[0].symbols[1]",
            "accounts[0].symbols[1]: unknown symbol 'IWM' (market.symbols has: QQQ, SPY)",
            id="account-symbol-not-in-market",
        ),
        pytest.param(
            _set(["strategy", "min_dte"], 40),
            "strategy.min_dte",
            "strategy.min_dte: must be <= target_dte (35)",
            id="min-dte-above-target",
        ),
        pytest.param(
            _duplicate_account,
            "accounts[1].name",
            "accounts[1].name: duplicate account name 'paper' (also accounts[0])",
            id="duplicate-account-name",
        ),
        pytest.param(
            _set(["strategy", "entry_end"], "09:45"),
            "strategy.entry_end",
            "strategy.entry_end: must be after entry_start (10:00)",
            id="entry-end-before-start",
        ),
        pytest.param(
            _set(["market", "tick_seconds"], "fast"),
            "market.tick_seconds",
            "market.tick_seconds: must be an integer, got 'fast'",
            id="wrong-type-int",
        ),
        pytest.param(
            _set(["accounts", 0, "starting_cash"], True),
            "accounts[0].starting_cash",
            "accounts[0].starting_cash: must be a number, got 'true'",
            id="bool-for-number",
        ),
        pytest.param(
            _set(["notifications", "console"], "loud"),
            "notifications.console",
            "notifications.console: must be true or false, got 'loud'",
            id="wrong-type-bool",
        ),
        pytest.param(
            _set(["logging", "level"], "verbose"),
            "logging.level",
            "logging.level: must be one of: debug, info, warning, error",
            id="literal",
        ),
        pytest.param(
            _delete(["exits", "close_dte"]),
            "exits.close_dte",
            "exits.close_dte: required",
            id="missing",
        ),
        pytest.param(
            _set(["accounts", 0, "name"], "Paper Account"),
            "accounts[0].name",
            "accounts[0].name: must match ^[a-z0-9_-]{1,32}$",
            id="pattern",
        ),
        pytest.param(
            _set(["market", "symbols", "spy"], DEFAULT_DATA["market"]["symbols"]["SPY"]),
            "market.symbols.spy",
            "market.symbols.spy: key must match ^[A-Z]{1,6}$",
            id="symbol-key-pattern",
        ),
        pytest.param(
            _set(["market", "symbols", "SPY", "vol"], 3.5),
            "market.symbols.SPY.vol",
            "market.symbols.SPY.vol: must be <= 3",
            id="upper-bound",
        ),
        pytest.param(
            _set(["market", "symbols", "SPY", "spot"], float("inf")),
            "market.symbols.SPY.spot",
            "market.symbols.SPY.spot: must be a finite number",
            id="infinite",
        ),
        pytest.param(
            _set(["market", "start"], date(1999, 1, 4)),
            "market.start",
            "market.start: must be >= 2000-01-01",
            id="start-before-calendar",
        ),
        pytest.param(
            _set(["accounts"], []),
            "accounts",
            "accounts: must not be empty",
            id="no-accounts",
        ),
        pytest.param(
            _set(["market"], "sim"),
            "market",
            "market: must be a mapping, got 'sim'",
            id="section-not-mapping",
        ),
        pytest.param(
            _set(["exits", "close_dte"], 21),
            "exits.close_dte",
            "exits.close_dte: must be < strategy.min_dte (21), "
            "or every new position would be closed at once",
            id="close-dte-not-below-min-dte",
        ),
        pytest.param(
            _set(["accounts", 0, "symbols"], ["SPY", "SPY"]),
            "accounts[0].symbols[1]",
            "accounts[0].symbols[1]: duplicate symbol 'SPY'",
            id="duplicate-account-symbol",
        ),
    ],
)
def test_parse_config_bad_value_raises_config_error_with_path_and_reason(mutate, path, text):
    data = _data()
    mutate(data)

    error = _error(data)

    assert error.path == path
    assert str(error) == text


def test_parse_config_several_problems_reports_each_on_its_own_line():
    data = _data()
    data["seed"] = -1
    data["accounts"][0]["risk"]["max_open_positions"] = 0

    error = _error(data)

    assert error.path == "seed"
    assert str(error).splitlines() == [
        "seed: must be >= 0",
        "accounts[0].risk.max_open_positions: must be >= 1",
    ]


def test_load_config_unquoted_time_explains_yaml_reads_a_number(tmp_path):
    file = tmp_path / "config.yaml"
    file.write_text(DEFAULT_CONFIG.read_text().replace('"10:00"', "10:00", 1))

    with pytest.raises(ConfigError) as info:
        load_config(file, env={})

    assert str(info.value) == (
        'strategy.entry_start: must be a time "HH:MM" in quotes '
        "(YAML reads an unquoted 10:00 as the number 600)"
    )


def test_load_config_yaml_syntax_error_names_file_and_line(tmp_path):
    file = tmp_path / "broken.yaml"
    file.write_text("seed: 7\nmarket:\n  source: sim\n   start: 2025-01-06\n")

    with pytest.raises(ConfigError) as info:
        load_config(file, env={})

    assert str(info.value).startswith(f"{file}, line 4, column 9: ")


def test_load_config_duplicate_yaml_key_names_both_lines(tmp_path):
    file = tmp_path / "dup.yaml"
    file.write_text("seed: 7\nseed: 8\n")

    with pytest.raises(ConfigError) as info:
        load_config(file, env={})

    assert str(info.value) == f"{file}, line 2, column 1: duplicate key 'seed' (first on line 1)"


def test_load_config_missing_file_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- seed: 7\n", "the top level must be a mapping of sections, got a list"),
        ("", "is empty; expected a mapping of sections"),
    ],
)
def test_load_config_top_level_not_mapping_raises_config_error(tmp_path, text, message):
    file = tmp_path / "config.yaml"
    file.write_text(text)

    with pytest.raises(ConfigError) as info:
        load_config(file, env={})

    assert str(info.value) == f"{file}: {message}"


def test_parse_config_interpolates_whole_and_embedded_values_and_registers_secrets(monkeypatch):
    registered = []
    monkeypatch.setattr("thetadesk.config.register_secret", registered.append)
    data = _data()
    data["accounts"][0]["name"] = "paper-${DESK}"
    data["market"]["tick_seconds"] = "${TICK}"
    data["logging"]["level"] = "${LOG_LEVEL}"

    config = parse_config(data, env={"DESK": "desk42", "TICK": "60", "LOG_LEVEL": "debug"})

    assert config.accounts[0].name == "paper-desk42"
    assert config.market.tick_seconds == 60
    assert config.logging.level == "debug"
    # Free text is registered for redaction; numbers and fixed choices ("debug") are not,
    # or every log line mentioning them would be mangled.
    assert registered == ["desk42"]


def test_parse_config_env_defaults_to_process_environment(monkeypatch):
    monkeypatch.setenv("THETADESK_TEST_DESK", "envdesk")
    data = _data()
    data["accounts"][0]["name"] = "${THETADESK_TEST_DESK}"

    config = parse_config(data)

    assert config.accounts[0].name == "envdesk"


def test_parse_config_double_dollar_escapes_a_literal_reference():
    data = _data()
    data["strategy"]["entry_start"] = "$${NOT_AN_ENV_VAR}"

    error = _error(data)

    assert str(error) == "strategy.entry_start: must be a time \"HH:MM\", got '${NOT_AN_ENV_VAR}'"


def test_parse_config_missing_variable_names_path_and_variable():
    data = _data()
    data["accounts"][0]["name"] = "${TD_ACCOUNT_NAME}"

    error = _error(data, env={"OTHER": "x"})

    assert error.path == "accounts[0].name"
    assert str(error) == "accounts[0].name: environment variable TD_ACCOUNT_NAME is not set"


def test_parse_config_malformed_reference_raises_config_error():
    data = _data()
    data["accounts"][0]["name"] = "${bad-name}"

    error = _error(data)

    assert error.path == "accounts[0].name"
    assert "malformed reference" in str(error)


def test_parse_config_invalid_interpolated_value_never_appears_in_error():
    secret = "hunter2-s3cr3t"
    data = _data()
    data["accounts"][0]["starting_cash"] = "${CASH}"

    error = _error(data, env={"CASH": secret})

    assert str(error) == (
        "accounts[0].starting_cash: must be a number, got the value of ${CASH} (hidden)"
    )
    assert error.__context__ is None
    assert error.__cause__ is None


def test_parse_config_secret_in_cross_field_message_is_masked():
    secret = "desk-s3cr3t"
    data = _data()
    data["accounts"][0]["name"] = "${ACCOUNT}"
    data["accounts"].append(copy.deepcopy(data["accounts"][0]))

    error = _error(data, env={"ACCOUNT": secret})

    assert secret not in str(error)
    assert str(error) == "accounts[1].name: duplicate account name '***' (also accounts[0])"


def test_config_model_direct_construction_still_runs_cross_field_checks():
    data = _data()
    data["strategy"]["min_dte"] = 40

    with pytest.raises(ValidationError, match=r"min_dte: must be <= target_dte \(35\)"):
        Config.model_validate(data)
