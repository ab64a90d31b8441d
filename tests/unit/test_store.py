"""Specifications of the ledger: durability settings, migrations, write-ahead, de-duplication."""

import sqlite3
from datetime import UTC, date, datetime

import pytest

from thetadesk.errors import DataError
from thetadesk.models import Contract, Fill, Leg
from thetadesk.store import LEDGER_FILE, MIGRATIONS, Ledger, legs_from_json, legs_to_json

NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
LEGS = (Leg(Contract.from_occ("SPY250404P00550000"), -1),
        Leg(Contract.from_occ("SPY250404P00545000"), 1))


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / LEDGER_FILE)
    yield led
    led.close()


def _write_ahead(ledger, cid="td-1", intent_id="SPY:bull_put_credit:1", opening=True):
    return ledger.record_intent_and_order(
        intent_id=intent_id, account="paper", symbol="SPY", strategy="bull_put_credit",
        decided_at=NOW, context={"spot": 560.0}, client_order_id=cid, position_id=cid,
        opening=opening, purpose="entry", legs=LEGS, quantity=2, limit_price=0.85, now=NOW,
    )


def test_ledger_uses_wal_and_full_synchronous_and_records_schema_version(ledger):
    conn = ledger._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert ledger.schema_version == MIGRATIONS[-1][0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"intents", "orders", "fills", "positions", "risk_verdicts", "actor_events",
            "schema_version"} <= tables


def test_ledger_reopening_does_not_rerun_migrations(tmp_path):
    Ledger(tmp_path / "x.db").close()
    again = Ledger(tmp_path / "x.db")
    assert again._conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == len(
        MIGRATIONS)


def test_ledger_write_ahead_creates_intent_and_pending_order_once(ledger):
    assert _write_ahead(ledger) is True
    assert _write_ahead(ledger) is False  # the same decision again writes nothing

    order = ledger.order("td-1")
    assert order["status"] == "pending_submit"
    assert legs_from_json(order["legs"]) == LEGS
    assert [i["client_order_id"] for i in ledger.intents("paper")] == ["td-1"]
    assert ledger.intent_for_order("td-1")["context"] == '{"spot": 560.0}'


def test_ledger_client_order_id_is_unique_at_the_database_level(ledger):
    _write_ahead(ledger)
    with pytest.raises(sqlite3.IntegrityError):
        ledger._conn.execute(
            "INSERT INTO orders (client_order_id, account, symbol, position_id, opening, purpose,"
            " legs, quantity, limit_price, status, created_at, updated_at) VALUES"
            " ('td-1', 'paper', 'SPY', 'td-1', 1, 'entry', '[]', 1, 1.0, 'new', 'x', 'x')")


def test_ledger_transaction_rolls_back_every_row_on_error(ledger):
    def crash_between_two_writes():
        with ledger.transaction():
            _write_ahead(ledger, cid="td-2", intent_id="i2")
            raise RuntimeError("crash between two writes")

    with pytest.raises(RuntimeError):
        crash_between_two_writes()
    assert ledger.order("td-2") is None
    assert ledger.intents() == []


def test_ledger_fill_is_deduplicated_by_exec_id(ledger):
    _write_ahead(ledger)
    fill = Fill("td-1-1", "td-1", 2, 0.85, 2.60, NOW)
    assert ledger.record_fill(fill, "paper") is True
    assert ledger.record_fill(fill, "paper") is False
    assert len(ledger.fills(client_order_id="td-1")) == 1


def test_ledger_position_open_add_and_close_with_commissions(ledger):
    ledger.open_position(position_id="p1", account="paper", symbol="SPY",
                         strategy="bull_put_credit", legs=LEGS, quantity=1, entry_price=0.80,
                         max_loss_per_spread=420.0, max_profit_per_spread=80.0, commission=1.30,
                         now=NOW)
    ledger.open_position(position_id="p1", account="paper", symbol="SPY",
                         strategy="bull_put_credit", legs=LEGS, quantity=1, entry_price=0.90,
                         max_loss_per_spread=420.0, max_profit_per_spread=80.0, commission=1.30,
                         now=NOW)
    assert ledger.position("p1")["entry_price"] == pytest.approx(0.85)

    # Buy back both for a 0.40 debit: (0.85 - 0.40) x 100 x 2 - 2.60 close - 2.60 open.
    ledger.close_position("p1", quantity=2, exit_price=-0.40, commission=2.60, reason="take_profit",
                          multiplier=100, now=NOW)

    pos = ledger.position("p1")
    assert pos["status"] == "closed"
    assert pos["realized_pnl"] == pytest.approx(90.0 - 5.20)
    assert ledger.positions("paper") == []


def test_ledger_update_unknown_order_raises_data_error(ledger):
    with pytest.raises(DataError, match="no order"):
        ledger.update_order("nope", status="new", now=NOW)


def test_ledger_breaker_trips_once_per_session(ledger):
    assert ledger.trip_breaker(account="paper", name="daily_loss", session=date(2025, 3, 3),
                               reason="r", now=NOW)
    assert not ledger.trip_breaker(account="paper", name="daily_loss",
                                   session=date(2025, 3, 3), reason="r", now=NOW)
    assert len(ledger.breakers("paper", date(2025, 3, 3))) == 1
    assert ledger.breakers("paper", date(2025, 3, 4)) == []


def test_ledger_rejects_naive_timestamps(ledger):
    with pytest.raises(DataError, match="timezone-aware"):
        ledger.record_actor_event(actor="x", kind="started", now=datetime(2025, 1, 1))  # noqa: DTZ001


def test_ledger_state_and_days_round_trip(ledger):
    ledger.set_state("sim_now", "a")
    ledger.set_state("sim_now", "b")
    assert ledger.get_state("sim_now") == "b"
    assert ledger.start_day(account="paper", session=date(2025, 3, 3), equity=100_000.0)
    assert not ledger.start_day(account="paper", session=date(2025, 3, 3), equity=1.0)
    ledger.end_day(account="paper", session=date(2025, 3, 3), equity=100_050.0, cash=1.0,
                   open_positions=1)
    assert ledger.day("paper", date(2025, 3, 3))["end_equity"] == 100_050.0


def test_legs_json_round_trip():
    assert legs_from_json(legs_to_json(LEGS)) == LEGS
