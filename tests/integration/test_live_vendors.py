"""``python supervisor.py --config`` on a live config (Polygon data, an Alpaca paper account),
with the vendors played by a local server (``tests/fakes/vendors.py``) on the wall clock.

The run starts its own local Ray cluster, as a user's would: the actors read the vendor keys from
the environment they inherit, which a joined cluster's workers do not have (the supervisor does
not ship secrets through Ray). What it checks holds whatever the hour: start-up reconciles with
Alpaca before the first tick (an external order is adopted and reported), the actors reach the
vendors only through the URLs given, SIGTERM stops the run cleanly, and the keys appear in no
log or ledger. If the market happens to be open the run may also trade; nothing asserted here
depends on that.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.fakes.vendors import FakeVendors
from tests.integration.conftest import wait_for
from thetadesk.adapters.sim_market import SimMarket, SimSymbol
from thetadesk.store import LEDGER_FILE, Ledger

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def wall_now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def vendors():
    start = (wall_now() - timedelta(days=10)).date()
    market = SimMarket(seed=5, symbols={"SPY": SimSymbol(580.0, 0.16, 0.013, 1.0)}, rate=0.04,
                       start=start)
    fake = FakeVendors(market, wall_now).start()
    yield fake
    fake.stop()


def test_a_live_run_reconciles_with_alpaca_at_start_up_and_stops_cleanly(tmp_path, vendors):
    data = yaml.safe_load((ROOT / "examples" / "alpaca-paper.yaml").read_text())
    data["market"]["polygon"]["requests_per_minute"] = 10_000
    data["accounts"][0]["alpaca"]["stream"] = False
    # A recipient, so the alert gets an outbox row (suppressed: no Twilio keys here).
    data["notifications"] = {"sms_to": ["+15005550006"]}
    config = tmp_path / "live.yaml"
    config.write_text(yaml.safe_dump(data))
    state = tmp_path / "state"
    vendors.add_external_order("placed-in-the-alpaca-app", "SPY260918P00500000")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(vendors.env())

    checked = subprocess.run([sys.executable, "supervisor.py", "--config", str(config),
                              "--check-config"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr

    proc = subprocess.Popen([sys.executable, "supervisor.py", "--config", str(config),
                             "--state-dir", str(state)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        def adopted():
            if not (state / LEDGER_FILE).exists():
                return None
            ledger = Ledger(state / LEDGER_FILE)
            try:
                return ledger.external_orders("alpaca_paper")
            finally:
                ledger.close()

        (external,) = wait_for(adopted, timeout=180, what="the external order to be adopted")
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)

    assert proc.returncode == 0, err[-3000:]
    assert external["client_order_id"] == "placed-in-the-alpaca-app"
    assert "Traceback" not in err
    paths = {r["path"] for r in vendors.requests}
    assert {"/v2/orders", "/v2/positions"} <= paths  # start-up reconciliation
    assert not vendors.errors
    ledger = Ledger(state / LEDGER_FILE)
    try:
        alerts = [r for r in ledger.outbox() if r["kind"] == "external_order"]
        dump = "\n".join(ledger._conn.iterdump())
    finally:
        ledger.close()
    assert len(alerts) == 1
    logs = "\n".join(p.read_text() for p in (state / "logs").glob("*"))
    for secret in (env["ALPACA_SECRET_KEY"], env["ALPACA_API_KEY"], env["POLYGON_API_KEY"]):
        assert secret not in dump
        assert secret not in logs
        assert secret not in err + out
