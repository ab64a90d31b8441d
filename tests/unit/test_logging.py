"""Specifications of logging: JSON lines per component, console output, redaction, idempotence."""

import json
from datetime import UTC, datetime

import pytest

from thetadesk.logging import configure_logging, get_logger, register_secret, shutdown_logging


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    shutdown_logging()
    configure_logging(None, "thetadesk")  # the console-only default other tests may rely on


def _lines(tmp_path, component):
    text = (tmp_path / "logs" / f"{component}.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_configure_logging_writes_parseable_json_lines_with_component(tmp_path):
    configure_logging(tmp_path, "risk", console=False)
    log = get_logger("thetadesk.risk")

    log.info("verdict", approved=True, client_order_id="td-1")
    log.warning("breaker tripped", account="paper")

    # Read while the file is still open: each event is flushed as it is written.
    records = _lines(tmp_path, "risk")
    assert [r["event"] for r in records] == ["verdict", "breaker tripped"]
    assert {r["component"] for r in records} == {"risk"}
    assert [r["level"] for r in records] == ["info", "warning"]
    assert records[0]["approved"] is True
    assert records[0]["logger"] == "thetadesk.risk"
    stamp = datetime.fromisoformat(records[0]["timestamp"])
    assert stamp.utcoffset() == UTC.utcoffset(None)


def test_configure_logging_console_true_writes_readable_line_to_stderr(tmp_path, capsys):
    configure_logging(tmp_path, "symbol-SPY", console=True)

    get_logger("test").info("proposed", symbol="SPY")

    err = capsys.readouterr().err
    assert "proposed" in err
    assert "symbol=SPY" in err
    assert "component=symbol-SPY" in err


def test_configure_logging_console_false_writes_nothing_to_stderr(tmp_path, capsys):
    configure_logging(tmp_path, "risk", console=False)

    get_logger("test").info("quiet")

    assert capsys.readouterr().err == ""
    assert len(_lines(tmp_path, "risk")) == 1


def test_redaction_by_key_name_hides_values_in_file_and_console(tmp_path, capsys):
    configure_logging(tmp_path, "account-paper", console=True)

    get_logger("test").info(
        "connected",
        api_key="AKXYZ-1",
        password="pw-2",
        account_sid="AC-3",
        side="sell",
        nested={"auth_token": "tok-4", "items": [{"client_secret": "cs-5"}], "ok": "kept"},
    )

    record = _lines(tmp_path, "account-paper")[0]
    assert record["api_key"] == record["password"] == record["account_sid"] == "***"
    assert record["nested"] == {
        "auth_token": "***",
        "items": [{"client_secret": "***"}],
        "ok": "kept",
    }
    assert record["side"] == "sell"  # "side" is not "sid"
    err = capsys.readouterr().err
    for value in ("AKXYZ-1", "pw-2", "AC-3", "tok-4", "cs-5"):
        assert value not in err
    assert "api_key=***" in err
    assert "side=sell" in err


def test_redaction_by_registered_value_hides_it_anywhere_in_strings(tmp_path, capsys):
    secret = "tok-9f8e7d6c"
    register_secret(secret)
    configure_logging(tmp_path, "notification", console=True)

    get_logger("test").info(
        f"posting to https://api.example/bot{secret}/send",
        detail={"url": f"/bot{secret}"},
        items=[f"a {secret} b", 3],
    )

    record = _lines(tmp_path, "notification")[0]
    assert record["event"] == "posting to https://api.example/bot***/send"
    assert record["detail"] == {"url": "/bot***"}
    assert record["items"] == ["a *** b", 3]
    err = capsys.readouterr().err
    assert secret not in err
    assert "bot***/send" in err


def test_redaction_covers_exception_text(tmp_path, capsys):
    secret = "pw-exception-1234"
    register_secret(secret)
    configure_logging(tmp_path, "supervisor", console=True)
    log = get_logger("test")

    try:
        raise RuntimeError(f"login failed with {secret}")
    except RuntimeError:
        log.exception("broker call failed")

    record = _lines(tmp_path, "supervisor")[0]
    assert "RuntimeError: login failed with ***" in record["exception"]
    assert secret not in capsys.readouterr().err


def test_register_secret_shorter_than_four_characters_is_ignored(tmp_path):
    register_secret("abc")
    configure_logging(tmp_path, "risk", console=False)

    get_logger("test").info("abc stays")

    assert _lines(tmp_path, "risk")[0]["event"] == "abc stays"


def test_configure_logging_twice_does_not_duplicate_output(tmp_path, capsys):
    configure_logging(tmp_path, "risk", console=True)
    configure_logging(tmp_path, "risk", console=True)

    get_logger("test").info("once")

    assert len(_lines(tmp_path, "risk")) == 1
    assert capsys.readouterr().err.count("once") == 1


def test_configure_logging_new_component_switches_file(tmp_path):
    configure_logging(tmp_path, "first", console=False)
    log = get_logger("test")  # obtained before the switch: follows the current setup
    log.info("one")

    configure_logging(tmp_path, "second", console=False)
    log.info("two")

    assert [r["event"] for r in _lines(tmp_path, "first")] == ["one"]
    assert [(r["event"], r["component"]) for r in _lines(tmp_path, "second")] == [("two", "second")]


def test_configure_logging_level_filters_lower_levels(tmp_path):
    configure_logging(tmp_path, "risk", level="warning", console=False)
    log = get_logger("test")

    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")

    assert [r["event"] for r in _lines(tmp_path, "risk")] == ["w", "e"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"component": "../escape"}, "component must match"),
        ({"component": "risk", "level": "verbose"}, "log level must be one of"),
    ],
)
def test_configure_logging_bad_arguments_raise_value_error(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        configure_logging(tmp_path, **kwargs)
