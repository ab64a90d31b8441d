"""The ledger: ThetaDesk's durable memory, one SQLite file (``<state-dir>/thetadesk.db``).

Every decision, order, fill, position, risk verdict and actor event is written here, and every
actor rebuilds its state from it on start (crash-only design). The file is in WAL mode with
``synchronous=FULL`` so that a committed row survives a power cut; several processes (the account
actors, the risk actor, the supervisor) write it concurrently, each through its own ``Ledger``,
waiting up to ``busy_timeout`` for the write lock. Multi-row changes happen in one transaction
(``with ledger.transaction():``).

Schema changes are forward migrations: append to ``MIGRATIONS``; the ``schema_version`` table
records which ran. Timestamps are ISO-8601 UTC strings; legs and contexts are JSON.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from thetadesk.errors import DataError
from thetadesk.models import Contract, Fill, Leg, Settlement

__all__ = ["HEDGE_PREFIX", "LEDGER_FILE", "MIGRATIONS", "Ledger", "legs_from_json", "legs_to_json"]

LEDGER_FILE = "thetadesk.db"

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE intents (
                intent_id TEXT NOT NULL,
                account TEXT NOT NULL,
                symbol TEXT NOT NULL,
                strategy TEXT NOT NULL,
                decided_at TEXT NOT NULL,
                client_order_id TEXT NOT NULL UNIQUE,
                context TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (intent_id, account)
            )""",
            """CREATE TABLE orders (
                client_order_id TEXT PRIMARY KEY,
                account TEXT NOT NULL,
                symbol TEXT NOT NULL,
                intent_id TEXT,
                position_id TEXT NOT NULL,
                opening INTEGER NOT NULL,
                purpose TEXT NOT NULL,
                legs TEXT NOT NULL,
                quantity INTEGER NOT NULL,
                limit_price REAL NOT NULL,
                status TEXT NOT NULL,
                broker_order_id TEXT,
                filled_quantity INTEGER NOT NULL DEFAULT 0,
                avg_fill_price REAL,
                reason TEXT,
                created_at TEXT NOT NULL,
                submitted_at TEXT,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX orders_account_status ON orders (account, status)",
            """CREATE TABLE fills (
                exec_id TEXT PRIMARY KEY,
                client_order_id TEXT NOT NULL REFERENCES orders (client_order_id),
                account TEXT NOT NULL,
                quantity INTEGER NOT NULL,
                price REAL NOT NULL,
                commission REAL NOT NULL,
                time TEXT NOT NULL
            )""",
            "CREATE INDEX fills_order ON fills (client_order_id)",
            """CREATE TABLE positions (
                position_id TEXT PRIMARY KEY,
                account TEXT NOT NULL,
                symbol TEXT NOT NULL,
                strategy TEXT NOT NULL,
                legs TEXT NOT NULL,
                quantity INTEGER NOT NULL,
                entry_price REAL NOT NULL,
                max_loss_per_spread REAL NOT NULL,
                max_profit_per_spread REAL NOT NULL,
                commissions REAL NOT NULL DEFAULT 0,
                opened_at TEXT NOT NULL,
                status TEXT NOT NULL,
                closed_at TEXT,
                exit_price REAL,
                realized_pnl REAL,
                exit_reason TEXT
            )""",
            "CREATE INDEX positions_account_status ON positions (account, status)",
            """CREATE TABLE risk_verdicts (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                account TEXT NOT NULL,
                client_order_id TEXT NOT NULL,
                intent_id TEXT,
                approved INTEGER NOT NULL,
                check_name TEXT,
                reason TEXT,
                request TEXT NOT NULL,
                at TEXT NOT NULL
            )""",
            """CREATE TABLE actor_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                actor TEXT NOT NULL,
                kind TEXT NOT NULL,
                pid INTEGER,
                detail TEXT,
                at TEXT NOT NULL
            )""",
            """CREATE TABLE breakers (
                account TEXT NOT NULL,
                name TEXT NOT NULL,
                session TEXT NOT NULL,
                tripped_at TEXT NOT NULL,
                reason TEXT NOT NULL,
                PRIMARY KEY (account, name, session)
            )""",
            """CREATE TABLE daily (
                account TEXT NOT NULL,
                session TEXT NOT NULL,
                start_equity REAL NOT NULL,
                end_equity REAL,
                cash REAL,
                open_positions INTEGER,
                PRIMARY KEY (account, session)
            )""",
            "CREATE TABLE run_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ],
    ),
    (
        # Physical settlement: what expiry did to each position, the shares it left, and the
        # share orders that close them.
        2,
        [
            "ALTER TABLE orders ADD COLUMN instrument TEXT NOT NULL DEFAULT 'options'",
            "ALTER TABLE orders ADD COLUMN side TEXT",
            """CREATE TABLE settlements (
                account TEXT NOT NULL,
                activity_id TEXT NOT NULL,
                position_id TEXT,
                occ TEXT NOT NULL,
                quantity INTEGER NOT NULL,
                kind TEXT NOT NULL,
                underlying_price REAL NOT NULL,
                intrinsic REAL NOT NULL,
                shares INTEGER NOT NULL,
                amount REAL NOT NULL,
                time TEXT NOT NULL,
                PRIMARY KEY (account, activity_id)
            )""",
            """CREATE TABLE share_positions (
                account TEXT NOT NULL,
                symbol TEXT NOT NULL,
                quantity INTEGER NOT NULL,
                avg_price REAL NOT NULL,
                realized_pnl REAL NOT NULL DEFAULT 0,
                commissions REAL NOT NULL DEFAULT 0,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (account, symbol)
            )""",
        ],
    ),
    (
        # Circuit breaker states: every warning (reducing), trip and reset, with who and why
        # (thetadesk.risk.breakers derives each breaker's state from them). ``breakers`` stays
        # the per-session trip record; its rows so far become trip events.
        3,
        [
            """CREATE TABLE breaker_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                account TEXT NOT NULL,
                name TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('reducing', 'tripped', 'reset')),
                session TEXT NOT NULL,
                at TEXT NOT NULL,
                reason TEXT NOT NULL,
                by TEXT
            )""",
            "CREATE INDEX breaker_events_account ON breaker_events (account, name, id)",
            "INSERT INTO breaker_events (account, name, kind, session, at, reason)"
            " SELECT account, name, 'tripped', session, tripped_at, reason FROM breakers"
            " ORDER BY tripped_at",
        ],
    ),
    (
        # The underlyings' closing prices the risk actor saw, for betas from return history.
        4,
        [
            """CREATE TABLE closes (
                symbol TEXT NOT NULL,
                session TEXT NOT NULL,
                price REAL NOT NULL CHECK (price > 0),
                PRIMARY KEY (symbol, session)
            )""",
        ],
    ),
    (
        # The notification outbox: every alert for people is written (with one row per planned
        # delivery) before anything is sent; a restart sends the pending rows and nothing else.
        # Recipients are phone numbers and chat ids; channel tokens are never stored.
        5,
        [
            """CREATE TABLE outbox (
                alert_id TEXT PRIMARY KEY,
                severity TEXT NOT NULL,
                kind TEXT NOT NULL,
                key TEXT NOT NULL,
                message TEXT NOT NULL,
                at TEXT NOT NULL,
                created_at TEXT NOT NULL,
                acked_at TEXT
            )""",
            """CREATE TABLE deliveries (
                alert_id TEXT NOT NULL REFERENCES outbox (alert_id),
                channel TEXT NOT NULL,
                recipient TEXT NOT NULL,
                status TEXT NOT NULL
                    CHECK (status IN ('pending', 'delivered', 'failed', 'suppressed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                next_attempt_at TEXT,
                delivered_at TEXT,
                provider_id TEXT,
                PRIMARY KEY (alert_id, channel, recipient)
            )""",
            "CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)",
        ],
    ),
    (
        # Escalation: an unacknowledged critical alert is called again and then the next contact
        # is called, each call one ``deliveries`` row numbered by ``step`` (0 is the first call,
        # planned with the alert). SQLite cannot change a primary key, so the table is rebuilt
        # with ``step`` in its key; the rows so far are step 0. ``outbox_unacked`` keeps the
        # escalation scan (every pump) and ``/ack`` to the open alerts of one severity.
        6,
        [
            """CREATE TABLE deliveries_v6 (
                alert_id TEXT NOT NULL REFERENCES outbox (alert_id),
                channel TEXT NOT NULL,
                recipient TEXT NOT NULL,
                status TEXT NOT NULL
                    CHECK (status IN ('pending', 'delivered', 'failed', 'suppressed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                next_attempt_at TEXT,
                delivered_at TEXT,
                provider_id TEXT,
                step INTEGER NOT NULL DEFAULT 0 CHECK (step >= 0),
                PRIMARY KEY (alert_id, channel, recipient, step)
            )""",
            "INSERT INTO deliveries_v6 (alert_id, channel, recipient, status, attempts,"
            " last_error, next_attempt_at, delivered_at, provider_id, step)"
            " SELECT alert_id, channel, recipient, status, attempts, last_error,"
            " next_attempt_at, delivered_at, provider_id, 0 FROM deliveries",
            "DROP TABLE deliveries",
            "ALTER TABLE deliveries_v6 RENAME TO deliveries",
            "CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)",
            "CREATE INDEX outbox_unacked ON outbox (severity, created_at) WHERE acked_at IS NULL",
        ],
    ),
    (
        # Orders found open at the broker that the ledger never placed (someone traded the
        # account by hand, another program): adopted as external, reported once, left alone.
        7,
        [
            """CREATE TABLE external_orders (
                account TEXT NOT NULL,
                client_order_id TEXT NOT NULL,
                broker_order_id TEXT NOT NULL,
                status TEXT NOT NULL,
                quantity INTEGER NOT NULL,
                first_seen TEXT NOT NULL,
                last_seen TEXT NOT NULL,
                PRIMARY KEY (account, client_order_id)
            )""",
        ],
    ),
    (
        # Position management and hedging (thetadesk.positions, thetadesk.hedging): each
        # position's ladder and repair state, the decisions behind every exit, roll, repair and
        # hedge (with the numbers; a roll is one decision over its closing and opening order),
        # the order each decision placed, and the hedge share book, kept apart from the shares
        # that assignment leaves (those are closed at once, hedges are held).
        8,
        [
            "ALTER TABLE positions ADD COLUMN initial_quantity INTEGER",
            "UPDATE positions SET initial_quantity = quantity",
            "ALTER TABLE positions ADD COLUMN rungs_hit INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE positions ADD COLUMN peak_profit REAL",
            "ALTER TABLE positions ADD COLUMN reduced INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE positions ADD COLUMN added INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE positions ADD COLUMN rolled_from TEXT",
            "ALTER TABLE positions ADD COLUMN rolls INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE orders ADD COLUMN decision_id TEXT",
            """CREATE TABLE decisions (
                decision_id TEXT PRIMARY KEY,
                account TEXT NOT NULL,
                symbol TEXT NOT NULL,
                position_id TEXT,
                kind TEXT NOT NULL,
                reason TEXT NOT NULL,
                detail TEXT NOT NULL,
                decided_at TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('open', 'done', 'abandoned')),
                close_order_id TEXT,
                open_order_id TEXT,
                new_position_id TEXT,
                note TEXT,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX decisions_account_status ON decisions (account, status)",
            """CREATE TABLE hedge_shares (
                account TEXT NOT NULL,
                symbol TEXT NOT NULL,
                quantity INTEGER NOT NULL,
                avg_price REAL NOT NULL,
                realized_pnl REAL NOT NULL DEFAULT 0,
                commissions REAL NOT NULL DEFAULT 0,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (account, symbol)
            )""",
        ],
    ),
    (
        # Each underlying's market regime history (thetadesk/signals/regime.py): one row per
        # change of the regime in force, with the inputs that confirmed it.
        9,
        [
            """CREATE TABLE regimes (
                symbol TEXT NOT NULL,
                at TEXT NOT NULL,
                trend TEXT NOT NULL CHECK (trend IN ('up', 'down', 'range')),
                volatility TEXT NOT NULL CHECK (volatility IN ('low', 'normal', 'high')),
                previous TEXT,
                inputs TEXT NOT NULL,
                PRIMARY KEY (symbol, at)
            )""",
        ],
    ),
    (
        # A position's own exit levels (JSON: take_profit, stop_multiple), set when it opens
        # from the adaptive strategy's regime parameters; NULL: the account's exits section.
        10,
        ["ALTER TABLE positions ADD COLUMN exit_rules TEXT"],
    ),
]

HEDGE_PREFIX = "hedge"  # strategies and order purposes of hedges start with it


def _iso(t: datetime) -> str:
    if t.tzinfo is None or t.utcoffset() is None:
        raise DataError(f"ledger timestamps must be timezone-aware, got {t!r}")
    return t.astimezone(UTC).isoformat()


def _step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise DataError(f"a delivery step must be an integer >= 0, got {step!r}")
    return step


def legs_to_json(legs: tuple[Leg, ...] | list[Leg]) -> str:
    return json.dumps([{"occ": leg.contract.occ, "ratio": leg.ratio} for leg in legs])


@functools.lru_cache(maxsize=4096)
def legs_from_json(text: str) -> tuple[Leg, ...]:
    """The legs a ledger row keeps as JSON (``legs_to_json``). Legs are immutable, so the same
    text is parsed once (a round reads every open position's and order's legs)."""
    return tuple(
        Leg(Contract.from_occ(item["occ"]), int(item["ratio"])) for item in json.loads(text)
    )


_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def verdict_request(request: Mapping[str, Any]) -> str:
    """A risk request as ``risk_verdicts.request`` holds it (JSON)."""
    return json.dumps(request, default=str, sort_keys=True)


class Ledger:
    """One process's connection to the ledger file. Not shared across threads."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0, *,
                 durable: bool = True) -> None:
        """``durable=False`` (``synchronous=OFF``: a commit is not waited onto the disk) is for
        scratch ledgers only, as a backtest's, which is rerun rather than recovered; every
        ledger a live or simulated run keeps is durable."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn = conn
        self._busy_timeout_s = busy_timeout_s
        self._db = None
        self._durable = durable
        self._lock = threading.RLock()
        self._depth = 0
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    @property
    def db(self):
        """The ledger as a ``sqlite_utils.Database`` over the same connection (for inspection
        and tools). Imported on first use: sqlite-utils imports pandas when it is installed,
        ~35 MB in every actor process that only needs the ledger."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self._conn)
        return self._db

    def close(self) -> None:
        self._conn.close()

    @property
    def changes(self) -> int:
        """Rows written through this ledger since it was opened (SQLite's total_changes): a
        cache key for what depends only on its own writes."""
        return self._conn.total_changes

    # -- transactions and migrations --------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all. Re-entrant."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._begin()
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def _begin(self) -> None:
        """``BEGIN IMMEDIATE``, waiting for the write lock in short steps (0.2 ms, growing to
        2 ms) up to ``busy_timeout_s``. SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20,
        25 ms and on: with a score of processes committing small transactions (every account
        actor and the risk actor on one entry tick) a writer that misses a lock held for a
        fraction of a millisecond would sleep many times that. Other statements keep SQLite's
        handler (a reader in WAL mode waits only in rare recovery cases)."""
        conn = self._conn
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = None
            pause = 0.0002
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if getattr(exc, "sqlite_errorcode", None) not in _BUSY:
                        raise
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + self._busy_timeout_s
                    elif now >= deadline:
                        raise
                time.sleep(pause)
                pause = min(pause * 1.5, 0.002)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")

    def _migrate(self) -> None:
        with self.transaction():
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            done = {row[0] for row in self._conn.execute("SELECT version FROM schema_version")}
            for version, statements in MIGRATIONS:
                if version in done:
                    continue
                for sql in statements:
                    self._conn.execute(sql)
                self._conn.execute(  # when the file was migrated: SQLite's clock, bookkeeping
                    "INSERT INTO schema_version (version, applied_at)"
                    " VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                    (version,),
                )

    @property
    def schema_version(self) -> int:
        row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _rows(self, sql: str, params: tuple | Mapping = ()) -> list[dict[str, Any]]:
        cursor = self._conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _select(self, table: str, order_by: str, **equal: Any) -> list[dict[str, Any]]:
        """Rows of ``table`` whose columns equal the given values (None means any)."""
        given = {k: v for k, v in equal.items() if v is not None}
        where = "".join(f" AND {column} = ?" for column in given)
        return self._rows(f"SELECT * FROM {table} WHERE 1=1{where} ORDER BY {order_by}",
                          tuple(given.values()))

    def _exec(self, sql: str, params: tuple | Mapping = ()) -> int:
        with self.transaction():
            return self._conn.execute(sql, params).rowcount

    def _exec_mark(self, sql: str, params: tuple | Mapping = ()) -> int:
        """A write of a mark that the next tick writes again (the daily row's end equity):
        committed at ``synchronous=NORMAL``, atomic and safe from a process crash (WAL) but not
        waited onto the disk, so a power cut may take the latest marks, never an order, a fill
        or an intent (the next commit at FULL syncs the marks before it too). Inside a
        transaction it commits with that transaction."""
        with self._lock:
            if self._depth or not self._durable:
                return self._exec(sql, params)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                return self._exec(sql, params)
            finally:
                self._conn.execute("PRAGMA synchronous=FULL")

    # -- intents and orders -----------------------------------------------------------------

    def record_intent_and_order(
        self,
        *,
        intent_id: str | None,
        account: str,
        symbol: str,
        strategy: str,
        decided_at: datetime,
        context: Mapping[str, Any],
        client_order_id: str,
        position_id: str,
        opening: bool,
        purpose: str,
        legs: tuple[Leg, ...],
        quantity: int,
        limit_price: float,
        now: datetime,
        instrument: str = "options",
        side: str | None = None,
        decision_id: str | None = None,
    ) -> bool:
        """Write-ahead: the decision and its order (status ``pending_submit``) in one
        transaction, before anything reaches the broker. False if the order already exists.

        Share orders: ``instrument="shares"``, no legs, ``quantity`` in shares (> 0) and
        ``side`` "buy" or "sell"; ``limit_price`` 0 for a market order. ``decision_id``: the
        ``decisions`` row (exit, roll, repair, hedge) the order carries out, if any."""
        if instrument not in ("options", "shares") or (instrument == "shares") != (
                side in ("buy", "sell")):
            raise DataError(f"order instrument {instrument!r} with side {side!r}: options "
                            "orders have no side, share orders buy or sell")
        with self.transaction():
            if self.order(client_order_id) is not None:
                return False
            if intent_id is not None:
                self._conn.execute(
                    "INSERT INTO intents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (intent_id, account, symbol, strategy, _iso(decided_at), client_order_id,
                     json.dumps(context, default=str, sort_keys=True), _iso(now)),
                )
            self._conn.execute(
                "INSERT INTO orders (client_order_id, account, symbol, intent_id, position_id,"
                " opening, purpose, legs, quantity, limit_price, status, created_at, updated_at,"
                " instrument, side, decision_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending_submit', ?, ?, ?, ?, ?)",
                (client_order_id, account, symbol, intent_id, position_id, int(opening), purpose,
                 legs_to_json(legs), quantity, float(limit_price), _iso(now), _iso(now),
                 instrument, side, decision_id),
            )
        return True

    def update_order(
        self,
        client_order_id: str,
        *,
        status: str,
        now: datetime,
        broker_order_id: str | None = None,
        filled_quantity: int | None = None,
        avg_fill_price: float | None = None,
        reason: str | None = None,
        submitted: bool = False,
    ) -> None:
        sets = ["status = ?", "updated_at = ?"]
        params: list[Any] = [status, _iso(now)]
        for column, value in (("broker_order_id", broker_order_id),
                              ("filled_quantity", filled_quantity),
                              ("avg_fill_price", avg_fill_price), ("reason", reason)):
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        if submitted:
            sets.append("submitted_at = COALESCE(submitted_at, ?)")
            params.append(_iso(now))
        params.append(client_order_id)
        if self._exec(f"UPDATE orders SET {', '.join(sets)} WHERE client_order_id = ?",
                      tuple(params)) != 1:
            raise DataError(f"no order {client_order_id!r} in the ledger")

    def order(self, client_order_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,))
        return rows[0] if rows else None

    def decision_orders(self, decision_id: str) -> list[dict[str, Any]]:
        """The orders that carry out one decision (a roll's two, a working entry's steps)."""
        return self._select("orders", "created_at, client_order_id", decision_id=decision_id)

    def orders(self, account: str | None = None, statuses: tuple[str, ...] | None = None,
               ) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM orders WHERE 1=1", []
        if account is not None:
            sql += " AND account = ?"
            params.append(account)
        if statuses:
            sql += f" AND status IN ({', '.join('?' * len(statuses))})"
            params.extend(statuses)
        return self._rows(sql + " ORDER BY created_at, client_order_id", tuple(params))

    def intent_for_order(self, client_order_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM intents WHERE client_order_id = ?", (client_order_id,))
        return rows[0] if rows else None

    def intents(self, account: str | None = None) -> list[dict[str, Any]]:
        if account is None:
            return self._rows("SELECT * FROM intents ORDER BY decided_at, intent_id")
        return self._rows("SELECT * FROM intents WHERE account = ? ORDER BY decided_at, intent_id",
                          (account,))

    # -- fills and positions ----------------------------------------------------------------

    def record_fill(self, fill: Fill, account: str) -> bool:
        """Insert an execution; False (and nothing written) if its exec_id is already here."""
        with self.transaction():
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO fills VALUES (?, ?, ?, ?, ?, ?, ?)",
                (fill.exec_id, fill.client_order_id, account, fill.quantity, float(fill.price),
                 float(fill.commission), _iso(fill.time)),
            )
            return cursor.rowcount == 1

    def fills(self, account: str | None = None, client_order_id: str | None = None,
              ) -> list[dict[str, Any]]:
        return self._select("fills", "time, exec_id", account=account,
                            client_order_id=client_order_id)

    def account_fills(self, account: str) -> list[Fill]:
        """The account's recorded executions as ``Fill`` values, oldest first (what a broker
        adapter that derives executions from cumulative order state is seeded with)."""
        return [Fill(exec_id=r["exec_id"], client_order_id=r["client_order_id"],
                     quantity=r["quantity"], price=r["price"], commission=r["commission"],
                     time=datetime.fromisoformat(r["time"]))
                for r in self.fills(account=account)]

    def open_position(
        self, *, position_id: str, account: str, symbol: str, strategy: str,
        legs: tuple[Leg, ...], quantity: int, entry_price: float, max_loss_per_spread: float,
        max_profit_per_spread: float, commission: float, now: datetime,
        exit_rules: Mapping[str, float] | None = None,
    ) -> None:
        """Open a position, or add a further fill of an opening order to it (a later fill of
        the same order, or a repair adding to it): the entry price and the per-spread max loss
        and max profit become quantity-weighted averages (each is linear in the price), and
        ``initial_quantity`` (what the profit ladder splits) grows with it. ``exit_rules``: the
        position's own exit levels, kept from its first fill."""
        with self.transaction():
            existing = self.position(position_id)
            if existing is None:
                self._conn.execute(
                    "INSERT INTO positions (position_id, account, symbol, strategy, legs, quantity,"
                    " entry_price, max_loss_per_spread, max_profit_per_spread, commissions,"
                    " opened_at, status, initial_quantity, exit_rules)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)",
                    (position_id, account, symbol, strategy, legs_to_json(legs), quantity,
                     entry_price, max_loss_per_spread, max_profit_per_spread, commission,
                     _iso(now), quantity,
                     json.dumps(dict(exit_rules), sort_keys=True) if exit_rules else None),
                )
                return
            have = existing["quantity"]
            total = have + quantity

            def mean(old: float, new: float) -> float:
                if not (math.isfinite(old) and math.isfinite(new)):
                    return old
                return (old * have + new * quantity) / total

            self._conn.execute(
                "UPDATE positions SET quantity = ?, entry_price = ?, max_loss_per_spread = ?,"
                " max_profit_per_spread = ?, commissions = commissions + ?,"
                " initial_quantity = COALESCE(initial_quantity, 0) + ?,"
                " status = 'open', closed_at = NULL WHERE position_id = ?",
                (total, mean(existing["entry_price"], entry_price),
                 mean(existing["max_loss_per_spread"], max_loss_per_spread),
                 mean(existing["max_profit_per_spread"], max_profit_per_spread), commission,
                 quantity, position_id),
            )

    def close_position(self, position_id: str, *, quantity: int, exit_price: float,
                       commission: float, reason: str, multiplier: int, now: datetime) -> None:
        """Close ``quantity`` spreads at ``exit_price`` (net per share, > 0 credit, as paid or
        received by the closing order). Realised P&L (dollars, after the closing commission and
        the opening commissions of the closed part) accumulates; the status turns ``closed``
        when nothing is left."""
        with self.transaction():
            pos = self.position(position_id)
            if pos is None:
                raise DataError(f"no position {position_id!r} in the ledger")
            closed = min(quantity, pos["quantity"])
            opening_commission = pos["commissions"] * closed / pos["quantity"]
            pnl = ((pos["entry_price"] + exit_price) * multiplier * closed - commission
                   - opening_commission)
            remaining = pos["quantity"] - closed
            self._conn.execute(
                "UPDATE positions SET quantity = ?, realized_pnl = COALESCE(realized_pnl, 0) + ?,"
                " commissions = commissions - ?, exit_price = ?, exit_reason = ?,"
                " status = ?, closed_at = ? WHERE position_id = ?",
                (remaining, pnl, opening_commission, exit_price, reason,
                 "open" if remaining > 0 else "closed", None if remaining > 0 else _iso(now),
                 position_id),
            )

    def latest_openings(self, account: str) -> dict[str, datetime]:
        """When each symbol's latest strategy position (open or closed) was opened; the hedge
        book's positions are not counted."""
        rows = self._conn.execute(
            "SELECT symbol, MAX(opened_at) FROM positions WHERE account = ?"
            " AND substr(strategy, 1, ?) != ? GROUP BY symbol",
            (account, len(HEDGE_PREFIX), HEDGE_PREFIX)).fetchall()
        return {symbol: datetime.fromisoformat(at) for symbol, at in rows}

    def position(self, position_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM positions WHERE position_id = ?", (position_id,))
        return rows[0] if rows else None

    def positions(self, account: str | None = None, status: str | None = "open",
                  ) -> list[dict[str, Any]]:
        """Positions of an account (all accounts if None) with a status (any if None)."""
        return self._select("positions", "opened_at, position_id", account=account,
                            status=status)

    # -- expiry settlements and shares --------------------------------------------------------

    def record_settlement(self, *, account: str, settlement: Settlement,
                          position_id: str | None) -> bool:
        """Record a broker settlement (expiry, exercise, assignment) against a position; False
        if its activity id is already here."""
        s = settlement
        with self.transaction():
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO settlements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (account, s.activity_id, position_id, s.contract.occ, s.quantity, s.kind,
                 s.underlying_price, s.intrinsic, s.shares, s.amount, _iso(s.time)),
            )
            return cursor.rowcount == 1

    def settlements(self, account: str | None = None) -> list[dict[str, Any]]:
        return self._select("settlements", "time, activity_id", account=account)

    def apply_shares(self, *, account: str, symbol: str, change: int, price: float,
                     commission: float, now: datetime, hedge: bool = False) -> float:
        """Add ``change`` shares bought (> 0) or sold (< 0) at ``price`` per share; returns the
        P&L in dollars realised by the part that reduced the position (after ``commission``),
        which accumulates in ``realized_pnl``. ``hedge``: the hedge book (``hedge_shares``),
        else the shares assignment left (``share_positions``)."""
        table = "hedge_shares" if hedge else "share_positions"
        with self.transaction():
            rows = self._rows(f"SELECT * FROM {table} WHERE account = ? AND symbol = ?",
                              (account, symbol))
            held, avg = (rows[0]["quantity"], rows[0]["avg_price"]) if rows else (0, 0.0)
            new = held + change
            reduced = min(abs(change), abs(held)) if held * change < 0 else 0
            pnl = reduced * (price - avg) * (1 if held > 0 else -1) - commission
            if held == 0 or held * new < 0:
                avg = price
            elif abs(new) > abs(held):
                avg = (abs(held) * avg + abs(change) * price) / abs(new)
            self._conn.execute(
                f"INSERT INTO {table} (account, symbol, quantity, avg_price, realized_pnl,"
                " commissions, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (account, symbol) DO UPDATE SET quantity = excluded.quantity,"
                " avg_price = excluded.avg_price,"
                " realized_pnl = realized_pnl + excluded.realized_pnl,"
                " commissions = commissions + excluded.commissions,"
                " updated_at = excluded.updated_at",
                (account, symbol, new, avg, pnl, commission, _iso(now)),
            )
            return pnl

    def share_positions(self, account: str | None = None, *, open_only: bool = True,
                        ) -> list[dict[str, Any]]:
        """Share holdings per account and symbol (only non-zero ones when ``open_only``)."""
        rows = self._select("share_positions", "account, symbol", account=account)
        return [r for r in rows if r["quantity"] != 0 or not open_only]

    def hedge_shares(self, account: str | None = None, *, open_only: bool = True,
                     ) -> list[dict[str, Any]]:
        """The hedge book's share holdings per account and symbol (as ``share_positions``)."""
        rows = self._select("hedge_shares", "account, symbol", account=account)
        return [r for r in rows if r["quantity"] != 0 or not open_only]

    def all_shares(self, account: str) -> dict[str, int]:
        """Every share the account holds per symbol, assignment leftovers and hedges together
        (what the broker holds)."""
        out: dict[str, int] = {}
        for row in (*self.share_positions(account), *self.hedge_shares(account)):
            out[row["symbol"]] = out.get(row["symbol"], 0) + row["quantity"]
        return {s: q for s, q in out.items() if q}

    # -- decisions: exits, rolls, repairs, hedges ---------------------------------------------

    def record_decision(self, *, decision_id: str, account: str, symbol: str,
                        position_id: str | None, kind: str, reason: str,
                        detail: Mapping[str, Any], now: datetime, status: str = "done",
                        close_order_id: str | None = None, open_order_id: str | None = None,
                        ) -> bool:
        """A management or hedge decision with the numbers behind it; False if recorded."""
        with self.transaction():
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO decisions (decision_id, account, symbol, position_id,"
                " kind, reason, detail, decided_at, status, close_order_id, open_order_id,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (decision_id, account, symbol, position_id, kind, reason,
                 json.dumps(detail, default=str, sort_keys=True), _iso(now), status,
                 close_order_id, open_order_id, _iso(now)))
            return cursor.rowcount == 1

    def update_decision(self, decision_id: str, *, now: datetime, status: str | None = None,
                        close_order_id: str | None = None, open_order_id: str | None = None,
                        new_position_id: str | None = None, note: str | None = None) -> None:
        sets, params = ["updated_at = ?"], [_iso(now)]
        for column, value in (("status", status), ("close_order_id", close_order_id),
                              ("open_order_id", open_order_id),
                              ("new_position_id", new_position_id), ("note", note)):
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        params.append(decision_id)
        if self._exec(f"UPDATE decisions SET {', '.join(sets)} WHERE decision_id = ?",
                      tuple(params)) != 1:
            raise DataError(f"no decision {decision_id!r} in the ledger")

    def decision(self, decision_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM decisions WHERE decision_id = ?", (decision_id,))
        return rows[0] if rows else None

    def decisions(self, account: str | None = None, status: str | None = None,
                  kind: str | None = None) -> list[dict[str, Any]]:
        return self._select("decisions", "decided_at, decision_id", account=account,
                            status=status, kind=kind)

    def update_position_state(self, position_id: str, **values: Any) -> None:
        """Set the management columns of a position (``rungs_hit``, ``peak_profit``,
        ``reduced``, ``added``, ``rolled_from``, ``rolls``)."""
        allowed = {"rungs_hit", "peak_profit", "reduced", "added", "rolled_from", "rolls"}
        if not values or set(values) - allowed:
            raise DataError(f"position state columns are {sorted(allowed)}, got {sorted(values)}")
        names = sorted(values)
        self._exec(f"UPDATE positions SET {', '.join(f'{n} = ?' for n in names)}"
                   " WHERE position_id = ?", (*[values[n] for n in names], position_id))

    def pnl_attribution(self, account: str) -> dict[str, float]:
        """Realised P&L in dollars split into the strategies' and the hedges' (hedge option
        positions and the hedge share book), after commissions."""
        out = {"strategy": 0.0, "hedge": 0.0}
        for pos in self.positions(account, status=None):
            book = "hedge" if pos["strategy"].startswith(HEDGE_PREFIX) else "strategy"
            out[book] += pos["realized_pnl"] or 0.0
        for row in self.share_positions(account, open_only=False):
            out["strategy"] += row["realized_pnl"]
        for row in self.hedge_shares(account, open_only=False):
            out["hedge"] += row["realized_pnl"]
        return out

    # -- risk, breakers, actors, days, run state ---------------------------------------------

    def record_verdict(self, *, account: str, client_order_id: str, intent_id: str | None,
                       approved: bool, check_name: str | None, reason: str | None,
                       request: Mapping[str, Any] | str, now: datetime) -> None:
        """One verdict of the risk gate; ``request`` as checked (a mapping, or its JSON as
        ``verdict_request`` made it)."""
        self._exec(
            "INSERT INTO risk_verdicts (account, client_order_id, intent_id, approved, check_name,"
            " reason, request, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (account, client_order_id, intent_id, int(approved), check_name, reason,
             request if isinstance(request, str) else verdict_request(request), _iso(now)),
        )

    def verdicts(self, account: str | None = None) -> list[dict[str, Any]]:
        if account is None:
            return self._rows("SELECT * FROM risk_verdicts ORDER BY id")
        return self._rows("SELECT * FROM risk_verdicts WHERE account = ? ORDER BY id", (account,))

    def trip_breaker(self, *, account: str, name: str, session: date, reason: str,
                     now: datetime) -> bool:
        """Record a breaker trip for a session; False if it had already tripped."""
        with self.transaction():
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO breakers VALUES (?, ?, ?, ?, ?)",
                (account, name, session.isoformat(), _iso(now), reason),
            )
            return cursor.rowcount == 1

    def breakers(self, account: str | None = None, session: date | None = None,
                 ) -> list[dict[str, Any]]:
        return self._select("breakers", "tripped_at", account=account,
                            session=None if session is None else session.isoformat())

    def record_breaker_event(self, *, account: str, name: str, kind: str, session: date,
                             now: datetime, reason: str, by: str | None = None) -> None:
        """Append a breaker's warning (``reducing``), trip (``tripped``) or ``reset`` (``by``:
        who reset it, ``auto`` for the next-session rule)."""
        self._exec(
            "INSERT INTO breaker_events (account, name, kind, session, at, reason, by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (account, name, kind, session.isoformat(), _iso(now), reason, by),
        )

    def adopt_external_order(self, *, account: str, client_order_id: str,
                             broker_order_id: str, status: str, quantity: int,
                             now: datetime) -> bool:
        """Record an order the broker has and the ledger never placed; True the first time it
        is seen (report it then), False after (its status and ``last_seen`` are updated)."""
        with self.transaction():
            fresh = self._conn.execute(
                "INSERT OR IGNORE INTO external_orders VALUES (?, ?, ?, ?, ?, ?, ?)",
                (account, client_order_id, broker_order_id, status, quantity, _iso(now),
                 _iso(now))).rowcount == 1
            if not fresh:
                self._conn.execute(
                    "UPDATE external_orders SET status = ?, last_seen = ?"
                    " WHERE account = ? AND client_order_id = ?",
                    (status, _iso(now), account, client_order_id))
            return fresh

    def external_orders(self, account: str | None = None) -> list[dict[str, Any]]:
        return self._select("external_orders", "first_seen, client_order_id", account=account)

    def breaker_events(self, account: str | None = None, name: str | None = None,
                       ) -> list[dict[str, Any]]:
        return self._select("breaker_events", "id", account=account, name=name)

    def last_breaker_event(self, account: str, name: str, kind: str) -> dict[str, Any] | None:
        """The newest event of ``kind`` of one breaker (the breakers read the last reset)."""
        rows = self._rows("SELECT * FROM breaker_events WHERE account = ? AND name = ? AND "
                          "kind = ? ORDER BY id DESC LIMIT 1", (account, name, kind))
        return rows[0] if rows else None

    def latest_closed_pnls(self, account: str, *, after: datetime | None,
                           limit: int) -> list[float]:
        """Realised P&L of the account's ``limit`` most recently closed positions (closed after
        ``after`` when given), newest first; hedges included, as ``positions`` gives them."""
        return [v or 0.0 for v in self._newest("realized_pnl", "positions", "closed_at",
                                               "position_id", account, after, limit,
                                               "status = 'closed'")]

    def latest_submitted_statuses(self, account: str, *, after: datetime | None,
                                  limit: int) -> list[str]:
        """Statuses of the account's ``limit`` most recently submitted orders (submitted after
        ``after`` when given), newest first."""
        return self._newest("status", "orders", "submitted_at", "client_order_id", account,
                            after, limit)

    def _newest(self, column: str, table: str, at: str, tiebreak: str, account: str,
                after: datetime | None, limit: int, where: str = "1=1") -> list[Any]:
        """``column`` of the account's ``limit`` rows with the latest ``at`` (later than
        ``after`` when given), newest first, ties broken by ``tiebreak``."""
        since = None if after is None else _iso(after)
        rows = self._conn.execute(
            f"SELECT {column} FROM {table} WHERE account = ? AND {where} AND {at} IS NOT NULL "
            f"AND (? IS NULL OR {at} > ?) ORDER BY {at} DESC, {tiebreak} DESC LIMIT ?",
            (account, since, since, limit)).fetchall()
        return [r[0] for r in rows]

    def actors_with_events(self, kinds: tuple[str, ...], *, after: datetime,
                           until: datetime) -> list[str]:
        """The actor of every event of one of ``kinds`` with ``after < at <= until``, oldest
        first (one entry per event)."""
        marks = ", ".join("?" for _ in kinds)
        rows = self._conn.execute(
            f"SELECT actor FROM actor_events WHERE kind IN ({marks}) AND at > ? AND at <= ? "
            "ORDER BY id", (*kinds, _iso(after), _iso(until))).fetchall()
        return [r[0] for r in rows]

    def peak_equity(self, account: str, *, before: date, after: date | None = None,
                    ) -> float | None:
        """The highest opening or closing equity of the account's sessions strictly between
        ``after`` (None: the first) and ``before``; None if there are none."""
        row = self._conn.execute(
            "SELECT MAX(MAX(start_equity, COALESCE(end_equity, start_equity))) FROM daily"
            " WHERE account = ? AND session < ? AND session > ?",
            (account, before.isoformat(), "" if after is None else after.isoformat()),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def record_close(self, symbol: str, session: date, price: float) -> None:
        """An underlying's closing price for a session (a re-recorded session keeps the last)."""
        self._exec("INSERT INTO closes VALUES (?, ?, ?) ON CONFLICT (symbol, session)"
                   " DO UPDATE SET price = excluded.price", (symbol, session.isoformat(), price))

    def closes(self, symbol: str, limit: int | None = None) -> list[tuple[date, float]]:
        """The latest ``limit`` (all if None) closes of ``symbol``, oldest first."""
        rows = self._conn.execute(
            "SELECT session, price FROM closes WHERE symbol = ? ORDER BY session DESC LIMIT ?",
            (symbol, -1 if limit is None else limit)).fetchall()
        return [(date.fromisoformat(d), float(p)) for d, p in reversed(rows)]

    def record_regime(self, *, symbol: str, at: datetime, trend: str, volatility: str,
                      inputs: dict, previous: str | None = None) -> bool:
        """A change of ``symbol``'s regime in force at ``at`` (``previous``: the regime it
        replaced, ``trend/volatility``; None for the first); False if that instant is recorded
        already (a re-run tick), which keeps the first record."""
        with self.transaction():
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO regimes (symbol, at, trend, volatility, previous, inputs)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (symbol, _iso(at), trend, volatility, previous,
                 json.dumps(inputs, sort_keys=True)))
            return cursor.rowcount == 1

    def regimes(self, symbol: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """``symbol``'s regime changes, oldest first (from ``since`` on, if given)."""
        rows = self._rows("SELECT * FROM regimes WHERE symbol = ? AND at >= ? ORDER BY at",
                          (symbol, "" if since is None else _iso(since)))
        for row in rows:
            row["inputs"] = json.loads(row["inputs"])
        return rows

    def latest_regime(self, symbol: str, at: datetime | None = None) -> dict[str, Any] | None:
        """The regime in force for ``symbol`` at ``at`` (now if None): its latest change then."""
        rows = self._rows("SELECT * FROM regimes WHERE symbol = ? AND at <= ? ORDER BY at DESC "
                          "LIMIT 1", (symbol, "9999" if at is None else _iso(at)))
        if not rows:
            return None
        rows[0]["inputs"] = json.loads(rows[0]["inputs"])
        return rows[0]

    def record_actor_event(self, *, actor: str, kind: str, now: datetime, pid: int | None = None,
                           detail: str | None = None) -> None:
        self._exec("INSERT INTO actor_events (actor, kind, pid, detail, at) VALUES (?, ?, ?, ?, ?)",
                   (actor, kind, pid, detail, _iso(now)))

    def actor_events(self, actor: str | None = None) -> list[dict[str, Any]]:
        if actor is None:
            return self._rows("SELECT * FROM actor_events ORDER BY id")
        return self._rows("SELECT * FROM actor_events WHERE actor = ? ORDER BY id", (actor,))

    def start_day(self, *, account: str, session: date, equity: float) -> bool:
        """Record the equity at a session's first tick; False if already recorded."""
        with self.transaction():
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO daily (account, session, start_equity) VALUES (?, ?, ?)",
                (account, session.isoformat(), equity),
            )
            return cursor.rowcount == 1

    def end_day(self, *, account: str, session: date, equity: float, cash: float,
                open_positions: int) -> None:
        """The session's latest equity, cash and open positions (every tick: a mark)."""
        self._exec_mark(
            "UPDATE daily SET end_equity = ?, cash = ?, open_positions = ?"
            " WHERE account = ? AND session = ?",
            (equity, cash, open_positions, account, session.isoformat()),
        )

    def day(self, account: str, session: date) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM daily WHERE account = ? AND session = ?",
                          (account, session.isoformat()))
        return rows[0] if rows else None

    def days(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM daily ORDER BY session, account")

    def set_state(self, key: str, value: str) -> None:
        self._exec("INSERT INTO run_state VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = ?",
                   (key, value, value))

    def set_states(self, values: Mapping[str, str]) -> None:
        """Several run-state keys in one transaction (one commit, one fsync)."""
        with self.transaction():
            for key, value in values.items():
                self._conn.execute(
                    "INSERT INTO run_state VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = ?",
                    (key, value, value))

    def get_state(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM run_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def delete_state(self, key: str) -> bool:
        """Removes a run-state key; True if it was there."""
        return self._exec("DELETE FROM run_state WHERE key = ?", (key,)) == 1

    # -- notification outbox ----------------------------------------------------------------

    def write_alert(self, *, alert_id: str, severity: str, kind: str, key: str, message: str,
                    at: datetime, created_at: datetime,
                    deliveries: list[tuple[str, str, str]],
                    state: Mapping[str, str] | None = None) -> bool:
        """Writes an alert and its planned ``(channel, recipient, status)`` deliveries, plus
        ``state`` run-state keys, in ONE transaction, before anything is sent.

        False (and nothing written) if ``alert_id`` is already in the outbox.
        """
        created = _iso(created_at)
        with self.transaction():
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO outbox (alert_id, severity, kind, key, message, at,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (alert_id, severity, kind, key, message, _iso(at), created))
            fresh = cursor.rowcount == 1
            if fresh:
                for channel, recipient, status in deliveries:
                    self._conn.execute(
                        "INSERT INTO deliveries (alert_id, channel, recipient, status,"
                        " next_attempt_at) VALUES (?, ?, ?, ?, ?)",
                        (alert_id, channel, recipient, status,
                         created if status == "pending" else None))
            for name, value in (state or {}).items():
                self._conn.execute(
                    "INSERT INTO run_state VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = ?",
                    (name, value, value))
            return fresh

    def due_deliveries(self, now: datetime) -> list[dict[str, Any]]:
        """Pending deliveries whose next attempt is due at ``now``, joined with their alert,
        oldest alert first (each row has its ``step``)."""
        return self._rows(
            "SELECT d.*, o.severity, o.kind, o.key, o.message, o.at, o.created_at, o.acked_at"
            " FROM deliveries d JOIN outbox o USING (alert_id)"
            " WHERE d.status = 'pending' AND d.next_attempt_at <= ?"
            " ORDER BY o.created_at, d.alert_id, d.channel, d.step, d.recipient", (_iso(now),))

    def record_delivery(self, *, alert_id: str, channel: str, recipient: str, status: str,
                        now: datetime, error: str | None = None,
                        next_attempt_at: datetime | None = None,
                        provider_id: str | None = None, step: int = 0) -> None:
        """The outcome of one attempt: ``delivered`` (with the provider's id), ``pending`` (a
        temporary error, retried at ``next_attempt_at``) or ``failed``. Counts the attempt.
        ``step`` addresses an escalation call (0: the delivery planned with the alert)."""
        if status not in ("pending", "delivered", "failed", "suppressed"):
            raise DataError(f"unknown delivery status {status!r}")
        if status == "pending" and next_attempt_at is None:
            raise DataError("a pending delivery needs next_attempt_at")
        self._exec(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?,"
            " next_attempt_at = ?, delivered_at = ?, provider_id = ?"
            " WHERE alert_id = ? AND channel = ? AND recipient = ? AND step = ?",
            (status, error, None if next_attempt_at is None else _iso(next_attempt_at),
             _iso(now) if status == "delivered" else None, provider_id,
             alert_id, channel, recipient, _step(step)))

    def add_delivery(self, *, alert_id: str, channel: str, recipient: str, step: int,
                     now: datetime) -> bool:
        """Writes escalation call ``step`` (> 0) of an alert as a delivery pending and due at
        ``now``, before it is attempted. In the same transaction the alert's deliveries on
        ``channel`` still pending with a lower step are ``suppressed`` ("superseded by step N"):
        one call at a time, never a retry and the next call together.

        False (and nothing changed) if that step is written already."""
        step = _step(step)
        if step == 0:
            raise DataError("step 0 is planned with the alert (write_alert); escalation "
                            "steps start at 1")
        with self.transaction():
            if not self._conn.execute("SELECT 1 FROM outbox WHERE alert_id = ?",
                                      (alert_id,)).fetchone():
                raise DataError(f"no alert {alert_id!r} in the outbox")
            fresh = self._conn.execute(
                "INSERT OR IGNORE INTO deliveries (alert_id, channel, recipient, status,"
                " next_attempt_at, step) VALUES (?, ?, ?, 'pending', ?, ?)",
                (alert_id, channel, recipient, _iso(now), step)).rowcount == 1
            if fresh:
                self._conn.execute(
                    "UPDATE deliveries SET status = 'suppressed', next_attempt_at = NULL,"
                    " last_error = ? WHERE alert_id = ? AND channel = ? AND status = 'pending'"
                    " AND step < ?", (f"superseded by step {step}", alert_id, channel, step))
            return fresh

    def open_escalations(self, since: datetime) -> list[dict[str, Any]]:
        """Unacknowledged critical alerts created at or after ``since`` that have voice
        deliveries, oldest first, each with ``voice``: its voice deliveries (``step``,
        ``recipient``, ``status``) by step. Reads through the ``outbox_unacked`` index, so the
        cost follows the recent open alerts, not the size of the outbox."""
        rows = self._rows(
            "SELECT o.alert_id, o.severity, o.kind, o.key, o.message, o.at, o.created_at,"
            " o.acked_at, d.step, d.recipient, d.status"
            " FROM outbox o JOIN deliveries d ON d.alert_id = o.alert_id AND d.channel = 'voice'"
            " WHERE o.severity = 'critical' AND o.acked_at IS NULL AND o.created_at >= ?"
            " ORDER BY o.created_at, o.alert_id, d.step, d.recipient", (_iso(since),))
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            delivery = {k: row.pop(k) for k in ("step", "recipient", "status")}
            out.setdefault(row["alert_id"], {**row, "voice": []})["voice"].append(delivery)
        return list(out.values())

    def ack_alert(self, alert_id: str, at: datetime) -> bool:
        """Marks an alert acknowledged (stops escalation): its pending voice calls after the
        first (step > 0) become ``suppressed`` ("acknowledged") in the same transaction.
        False if unknown or already acked."""
        with self.transaction():
            acked = self._conn.execute(
                "UPDATE outbox SET acked_at = ? WHERE alert_id = ? AND acked_at IS NULL",
                (_iso(at), alert_id)).rowcount == 1
            if acked:
                self._suppress_escalation(alert_id)
            return acked

    def ack_open(self, at: datetime,
                 severities: tuple[str, ...] = ("critical", "warning")) -> list[dict[str, Any]]:
        """Acknowledges every unacknowledged alert of ``severities`` at ``at`` (Telegram
        ``/ack``) and suppresses their pending escalation calls, in one transaction. Returns
        their outbox rows (alert_id, severity, kind, key, message, at, created_at), oldest first;
        ``[]`` when nothing was open."""
        if isinstance(severities, str) or not severities:
            raise DataError(f"severities must be a non-empty tuple of severities, "
                            f"got {severities!r}")
        when = _iso(at)
        marks = ", ".join("?" * len(severities))
        with self.transaction():
            rows = self._rows(
                "SELECT alert_id, severity, kind, key, message, at, created_at FROM outbox"
                f" WHERE severity IN ({marks}) AND acked_at IS NULL"
                " ORDER BY created_at, alert_id", tuple(severities))
            for row in rows:
                self._conn.execute("UPDATE outbox SET acked_at = ? WHERE alert_id = ?",
                                   (when, row["alert_id"]))
                self._suppress_escalation(row["alert_id"])
            return rows

    def _suppress_escalation(self, alert_id: str) -> None:
        self._conn.execute(
            "UPDATE deliveries SET status = 'suppressed', next_attempt_at = NULL,"
            " last_error = 'acknowledged' WHERE alert_id = ? AND channel = 'voice'"
            " AND status = 'pending' AND step > 0", (alert_id,))

    def outbox(self, alert_id: str | None = None) -> list[dict[str, Any]]:
        return self._select("outbox", "created_at, alert_id", alert_id=alert_id)

    def deliveries(self, alert_id: str | None = None, channel: str | None = None,
                   status: str | None = None, step: int | None = None) -> list[dict[str, Any]]:
        """Delivery rows matching the given values (None: any), by alert, channel, recipient
        and step."""
        return self._select("deliveries", "alert_id, channel, recipient, step",
                            alert_id=alert_id, channel=channel, status=status, step=step)

