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


def test_ledger_delete_state_reports_whether_a_key_was_removed(ledger):
    ledger.set_state("sim_now", "a")
    assert ledger.delete_state("sim_now") is True
    assert ledger.get_state("sim_now") is None
    assert ledger.delete_state("sim_now") is False
    assert ledger.delete_state("never_set") is False


# -- notification outbox: escalation steps ------------------------------------------------------

def _alert(ledger, alert_id="a1", severity="critical", created_at=NOW,
           deliveries=(("voice", "+15550000001", "pending"), ("sms", "+15550000009", "pending"))):
    return ledger.write_alert(alert_id=alert_id, severity=severity, kind="breaker_tripped",
                              key=f"k-{alert_id}", message="m", at=NOW, created_at=created_at,
                              deliveries=list(deliveries))


def test_v5_ledger_with_deliveries_migrates_to_steps_keeping_its_rows(tmp_path, monkeypatch):
    import thetadesk.store as store

    path = tmp_path / LEDGER_FILE
    monkeypatch.setattr(store, "MIGRATIONS", MIGRATIONS[:5])
    old = Ledger(path)
    assert old.schema_version == 5
    _alert(old)
    old._conn.execute(  # a delivered call, as a version-5 outbox recorded it
        "UPDATE deliveries SET status = 'delivered', attempts = 2, last_error = 'x',"
        " delivered_at = ?, provider_id = 'CA1', next_attempt_at = NULL"
        " WHERE channel = 'voice'", (NOW.isoformat(),))
    before = old._rows("SELECT * FROM deliveries ORDER BY channel")
    old.close()
    monkeypatch.setattr(store, "MIGRATIONS", MIGRATIONS)

    new = Ledger(path)
    try:
        assert new.schema_version == store.MIGRATIONS[-1][0]
        after = new._rows("SELECT * FROM deliveries ORDER BY channel")
        assert after == [{**row, "step": 0} for row in before]
        pk = [r for r in new._rows("PRAGMA table_info(deliveries)") if r["pk"]]
        assert [r["name"] for r in sorted(pk, key=lambda r: r["pk"])] == [
            "alert_id", "channel", "recipient", "step"]
        indexes = {r[0] for r in new._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"deliveries_due", "outbox_unacked"} <= indexes
        # the same recipient can now be called again as a later step, and the old row is intact
        assert new.add_delivery(alert_id="a1", channel="voice", recipient="+15550000001",
                                step=1, now=NOW) is True
        assert [(r["step"], r["status"]) for r in new.deliveries("a1", channel="voice")] == [
            (0, "delivered"), (1, "pending")]
        assert [r["step"] for r in new.due_deliveries(NOW)] == [0, 1]  # sms step 0, voice 1
        assert new._conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        new.close()


def test_ledger_record_delivery_addresses_one_step(ledger):
    _alert(ledger)
    ledger.add_delivery(alert_id="a1", channel="voice", recipient="+15550000001", step=1,
                        now=NOW)
    ledger.record_delivery(alert_id="a1", channel="voice", recipient="+15550000001",
                           status="delivered", now=NOW, provider_id="CA2", step=1)
    rows = ledger.deliveries("a1", channel="voice")
    assert [(r["step"], r["provider_id"]) for r in rows] == [(0, None), (1, "CA2")]
    assert rows[0]["status"] == "suppressed"  # superseded when step 1 was written
    assert rows[0]["last_error"] == "superseded by step 1"
    assert ledger.deliveries("a1", step=1)[0]["status"] == "delivered"
    with pytest.raises(DataError, match="step must be an integer >= 0"):
        ledger.record_delivery(alert_id="a1", channel="voice", recipient="+15550000001",
                               status="delivered", now=NOW, step=-1)


def test_ledger_add_delivery_writes_each_step_once_and_validates(ledger):
    _alert(ledger)
    kw = {"alert_id": "a1", "channel": "voice", "recipient": "+15550000002", "now": NOW}
    assert ledger.add_delivery(**kw, step=2) is True
    assert ledger.add_delivery(**kw, step=2) is False
    with pytest.raises(DataError, match="step 0 is planned with the alert"):
        ledger.add_delivery(**kw, step=0)
    with pytest.raises(DataError, match="step must be an integer"):
        ledger.add_delivery(**kw, step=True)
    with pytest.raises(DataError, match="no alert 'nope'"):
        ledger.add_delivery(**{**kw, "alert_id": "nope"}, step=1)
    assert ledger.deliveries("a1", channel="sms")[0]["status"] == "pending"  # other channels


def test_ledger_ack_suppresses_pending_escalation_calls_only(ledger):
    _alert(ledger)
    ledger.add_delivery(alert_id="a1", channel="voice", recipient="+15550000001", step=1,
                        now=NOW)
    assert ledger.ack_alert("a1", NOW) is True
    rows = {(r["channel"], r["step"]): r for r in ledger.deliveries("a1")}
    assert (rows["voice", 1]["status"], rows["voice", 1]["last_error"]) == (
        "suppressed", "acknowledged")
    assert rows["sms", 0]["status"] == "pending"
    assert ledger.ack_alert("a1", NOW) is False
    assert ledger.ack_alert("unknown", NOW) is False


def test_ledger_ack_open_acks_critical_and_warning_in_one_go(ledger):
    _alert(ledger, "c1")
    _alert(ledger, "w1", severity="warning")
    _alert(ledger, "i1", severity="info")
    ledger.add_delivery(alert_id="c1", channel="voice", recipient="+15550000001", step=1,
                        now=NOW)
    rows = ledger.ack_open(NOW)
    assert [r["alert_id"] for r in rows] == ["c1", "w1"]
    assert list(rows[0]) == ["alert_id", "severity", "kind", "key", "message", "at",
                             "created_at"]
    assert ledger.deliveries("c1", channel="voice", step=1)[0]["status"] == "suppressed"
    assert ledger.deliveries("c1", channel="voice", step=0)[0]["status"] == "suppressed"  # by 1
    assert ledger.ack_open(NOW) == []
    assert ledger.outbox("i1")[0]["acked_at"] is None
    with pytest.raises(DataError, match="non-empty tuple"):
        ledger.ack_open(NOW, severities="critical")


def test_ledger_open_escalations_reads_recent_unacked_critical_alerts_by_index(ledger):
    from datetime import timedelta

    _alert(ledger, "old", created_at=NOW - timedelta(hours=2))
    _alert(ledger, "new")
    _alert(ledger, "warn", severity="warning")
    _alert(ledger, "sms_only", deliveries=(("sms", "+15550000009", "pending"),))
    _alert(ledger, "acked")
    ledger.ack_alert("acked", NOW)
    statements = []
    ledger._conn.set_trace_callback(statements.append)  # the SQL as run, values bound
    try:
        found = ledger.open_escalations(NOW - timedelta(hours=1))
    finally:
        ledger._conn.set_trace_callback(None)
    assert [r["alert_id"] for r in found] == ["new"]
    assert found[0]["voice"] == [{"step": 0, "recipient": "+15550000001", "status": "pending"}]
    (query,) = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    plan = ledger._conn.execute(f"EXPLAIN QUERY PLAN {query}").fetchall()
    assert any("USING INDEX outbox_unacked" in row[-1] for row in plan)  # no outbox scan


def test_a_writer_waits_for_the_write_lock_and_then_writes(tmp_path):
    """Another process's transaction holds the lock; the ledger's writer polls in short steps
    until it is free, then commits; SQLite's own wait is back in place afterwards."""
    import sqlite3
    import threading

    path = tmp_path / "thetadesk.db"
    Ledger(path).close()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    released = threading.Event()

    def release():
        released.wait(5)
        holder.execute("COMMIT")

    ledger = Ledger(path, busy_timeout_s=10.0)
    holder.execute("BEGIN IMMEDIATE")
    thread = threading.Thread(target=release)
    thread.start()
    try:
        timer = threading.Timer(0.05, released.set)
        timer.start()
        ledger.set_state("k", "v")  # blocked until the holder commits
        assert ledger.get_state("k") == "v"
        assert ledger._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    finally:
        released.set()
        thread.join()
        holder.close()
        ledger.close()


def test_a_writer_gives_up_after_the_busy_timeout_and_writes_nothing(tmp_path):
    import sqlite3

    path = tmp_path / "thetadesk.db"
    ledger = Ledger(path, busy_timeout_s=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            ledger.set_state("k", "v")
        holder.execute("COMMIT")
        assert ledger.get_state("k") is None
        assert ledger._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 200
        ledger.set_state("k", "v")  # the lock is free: the next write goes through
        assert ledger.get_state("k") == "v"
    finally:
        holder.close()
        ledger.close()
