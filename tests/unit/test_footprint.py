"""What every actor process costs: the imports it pays for, the NYSE table shared between
processes through a cache file, and the commits it waits for each tick."""

import json
import sqlite3
import subprocess
import sys
from datetime import date, timedelta

from tests.configs import LADDERED_EXITS
from tests.unit.adapters.test_sim_broker import make_broker, market  # noqa: F401 (fixture)
from tests.unit.conftest import MORNING
from thetadesk import clock
from thetadesk.store import Ledger

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_an_actor_process_imports_no_pandas_scipy_signal_calendar_library_or_numba(tmp_path):
    # numba comes only with the compiled kernels (thetadesk.pricing), which accounts never load.
    code = (
        "import sys, datetime, actors.account, actors.symbol, actors.risk, actors.notification\n"
        "from thetadesk.clock import MarketCalendar\n"
        "MarketCalendar().next_session(datetime.date(2025, 1, 1))\n"
        "print(sorted(m for m in ('pandas', 'scipy.signal', 'scipy.stats', 'exchange_calendars',"
        " 'sqlite_utils', 'scipy.special', 'numba') if m in sys.modules))\n")
    env = {"THETADESK_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    second = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    # The first process builds the table with exchange_calendars (and its pandas) ...
    assert "exchange_calendars" in first.stdout
    # ... the next ones read the cache: none of the heavy libraries is loaded.
    assert second.stdout.strip() == "[]", second.stdout


def test_the_cached_session_table_is_exchange_calendars_own(tmp_path, monkeypatch):
    monkeypatch.setenv("THETADESK_CACHE_DIR", str(tmp_path))
    clock._nyse.cache_clear()
    try:
        built = clock._nyse()
        path = clock._cache_file()
        assert path.parent == tmp_path
        assert path.exists()
        clock._nyse.cache_clear()
        assert clock._nyse() == built == clock._build_nyse()
        # A damaged file is rebuilt, not trusted.
        path.write_text(json.dumps([["2025-01-02", "x"]]))
        clock._nyse.cache_clear()
        assert clock._nyse() == built
        assert len(json.loads(path.read_text())) == len(built.days)
        cal = clock.MarketCalendar()
        assert cal.session_close(date(2025, 11, 28)).hour == 18  # 13:00 New York, early close
    finally:
        clock._nyse.cache_clear()


def test_daily_marks_commit_without_waiting_for_the_disk_and_orders_still_do(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    full = 2
    assert ledger._conn.execute("PRAGMA synchronous").fetchone()[0] == full
    ledger.start_day(account="paper", session=date(2025, 1, 6), equity=100_000.0)
    ledger.end_day(account="paper", session=date(2025, 1, 6), equity=100_100.0, cash=1.0,
                   open_positions=0)
    assert ledger._conn.execute("PRAGMA synchronous").fetchone()[0] == full
    with ledger.transaction():  # inside a transaction the mark commits with it
        ledger.end_day(account="paper", session=date(2025, 1, 6), equity=100_200.0, cash=1.0,
                       open_positions=0)
    assert ledger.day("paper", date(2025, 1, 6))["end_equity"] == 100_200.0
    assert ledger._conn.execute("PRAGMA synchronous").fetchone()[0] == full
    assert ledger.db["daily"].count == 1  # sqlite-utils over the same connection, on demand
    ledger.close()


def test_a_poll_that_changes_nothing_writes_nothing_and_marks_at_its_clock(market, tmp_path):  # noqa: F811
    path = tmp_path / "b.sqlite"
    broker = make_broker(market, path)
    broker.poll(MORNING)
    later = MORNING + timedelta(minutes=5)
    before = sqlite3.connect(path).execute("SELECT clock FROM book").fetchone()[0]
    version = broker._db.total_changes
    assert broker.poll(later) == []
    assert broker._db.total_changes == version  # no write, no commit to wait for
    assert sqlite3.connect(path).execute("SELECT clock FROM book").fetchone()[0] == before
    assert broker._clock_unsaved == later
    broker.close()  # a clean close writes the clock it kept
    stored = sqlite3.connect(path).execute("SELECT clock FROM book").fetchone()[0]
    assert stored.startswith(later.isoformat()[:19])


def test_deltas_computed_only_for_decisions_change_no_decision(tmp_path, monkeypatch):
    import copy

    import yaml

    from thetadesk.account import AccountEngine
    from thetadesk.config import DEFAULT_CONFIG, parse_config
    from thetadesk.lockstep import LockstepDesk

    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["market"]["tick_seconds"] = 1800
    data["exits"].update(LADDERED_EXITS)  # positions managed to a close within six sessions

    def run(where, always):
        if always:
            monkeypatch.setattr(AccountEngine, "_rules_read_deltas", lambda self: True)
        else:
            monkeypatch.undo()
        desk = LockstepDesk(parse_config(copy.deepcopy(data), env={}), tmp_path / where)
        try:
            desk.run(6)
            decisions = [(d["kind"], d["reason"], d["detail"]) for d in desk.ledger.decisions()]
            orders = [(o["client_order_id"], o["status"]) for o in desk.ledger.orders()]
        finally:
            desk.close()
        return decisions, orders

    lazy, eager = run("lazy", False), run("eager", True)
    assert lazy[0], "six sessions should manage positions"
    assert lazy == eager
    recorded = [json.loads(d[2])["short_deltas"] for d in lazy[0]
                if "short_deltas" in json.loads(d[2])]
    assert recorded
    assert all(0 < x < 1 for deltas in recorded for x in deltas)


def test_loading_the_kernels_leaves_scipy_linalg_out_and_importable_afterwards():
    code = (
        "import sys, numpy as np\n"
        "from actors._common import load_kernels\n"
        "load_kernels()\n"
        "from thetadesk.pricing import bsm_price\n"
        "p = float(bsm_price(100.0, np.array([100.0]), 1.0, 0.0, 0.2, 0.0, True)[0])\n"
        "loaded = 'scipy.linalg' in sys.modules\n"
        "import scipy.linalg\n"
        "print(loaded, round(p, 4), float(scipy.linalg.det(np.eye(2))))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "7.9656", "1.0"]  # the at-the-money call, 20% vol
