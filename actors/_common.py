from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

from thetadesk.config import Config
from thetadesk.logging import configure_logging
from thetadesk.store import LEDGER_FILE, Ledger

SIM_NOW = "sim_now"  # the tick in progress (the supervisor records it as a tick starts)
SIM_LAST_TICK = "sim_last_tick"  # the last finished tick, where a new supervisor resumes


# numba's target context, when the first compiled kernel loads, imports scipy.linalg (about
# 12 MB per process) only to learn whether BLAS is there for np.dot and the like inside jitted
# code; ThetaDesk's kernels use none of it. While the kernels load at start-up the answer is
# "no" (numba then leaves linear algebra out of nopython mode); nothing else runs meanwhile, and
# scipy.linalg is importable as ever afterwards (the replay market's volatility models use it).
_NUMBA_BLAS_PROBE = "scipy.linalg.cython_blas"


def start_process(config: Config, state_dir: Path, component: str, console: bool,
                  kernels: bool = True) -> None:
    """An actor process's first step: its log file, then (``kernels``) the compiled pricing
    kernels, loaded now (a few hundred ms the first time in a process) rather than on the
    first trade. ``kernels=False`` for an actor that prices nothing (the notification actor)
    or a few elements at a time (an account: ``thetadesk.pricing`` runs those as Python):
    numba costs a process about 45 MB once imported and its first kernel loaded."""
    configure_logging(state_dir, component, config.logging.level,
                      console=console and config.logging.console)
    if kernels:
        load_kernels()


def load_kernels() -> None:
    """Load the pricing kernels (numba's cache) in this process, numba's BLAS probe answered
    "no" if numba has not started yet (see above)."""
    import numpy as np

    probe = not ({"scipy.linalg", "numba.np.arraymath", _NUMBA_BLAS_PROBE} & set(sys.modules))
    if probe:
        sys.modules[_NUMBA_BLAS_PROBE] = None  # its import fails: numba takes it as no BLAS
    try:
        from thetadesk.pricing import bsm_greeks, bsm_price, compile_kernels, implied_vol

        compile_kernels()  # else calls this small would run the kernels as Python
        strikes = np.array([90.0, 100.0])
        price = bsm_greeks(100.0, strikes, 0.1, 0.04, 0.2, 0.0, False).price
        implied_vol(price, 100.0, strikes, 0.1, 0.04, 0.0, False)
        bsm_price(100.0, strikes, 0.1, 0.04, 0.2, 0.0, False)  # the risk gate's book values
    finally:
        if probe and _NUMBA_BLAS_PROBE in sys.modules and sys.modules[_NUMBA_BLAS_PROBE] is None:
            del sys.modules[_NUMBA_BLAS_PROBE]


def ledger_for(state_dir: Path) -> Ledger:
    return Ledger(Path(state_dir) / LEDGER_FILE)


def current_time(ledger: Ledger, fallback: datetime) -> datetime:
    """The run's current instant: the simulated clock as the supervisor last recorded it.

    An actor restarted by Ray re-runs its constructor with its original arguments, so the time
    it was first created at would be stale; the ledger has the tick in progress.
    """
    value = ledger.get_state(SIM_NOW)
    return datetime.fromisoformat(value) if value else fallback


def warm_market(config: Config, market, symbol: str) -> None:
    """A simulated market's first chain and quote, now rather than at the first tick: they
    load the market's own compiled kernels (numba, from its cache: about 0.8 s in a fresh
    process), which would otherwise land on the first entry tick of every actor at once. A
    market built from the config is a pure function of time, so this changes nothing it
    answers later. Live sources are left alone (no vendor call at start-up)."""
    if config.market.live:
        return
    from datetime import timedelta

    from thetadesk.clock import MarketCalendar
    from thetadesk.errors import DataError

    calendar = MarketCalendar()
    at = calendar.session_open(calendar.next_session(config.market.start)) + timedelta(
        minutes=35)
    try:
        chain = market.chain(symbol, at)
        expiries = chain.expiries()
        if expiries:
            for row in chain.rows(expiries[0])[:1]:
                market.quote(row.contract, at)
    except (DataError, ValueError) as exc:  # nothing to warm there: the ticks will say why
        from thetadesk.logging import get_logger

        get_logger("actor").info("warm_up_skipped", symbol=symbol, reason=str(exc)[:200])


def pid() -> int:
    return os.getpid()


def footprint() -> dict:
    """This process's memory in MB (``rss_mb``, ``pss_mb``: shared pages split among the
    processes sharing them, ``private_mb``; Linux only) and whether it has loaded numba and
    the compiled pricing kernels: what the supervisor records per actor in run_stats.json."""
    from thetadesk.pricing import kernels_compiled

    out: dict = {"pid": os.getpid(), "numba": "numba" in sys.modules,
                 "compiled_kernels": kernels_compiled()}
    try:
        lines = Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]
    except OSError:  # not Linux: the flags alone
        return out
    kb = {}
    for line in lines:
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            kb[name.strip()] = int(value.split()[0])
    out["rss_mb"] = round(kb.get("Rss", 0) / 1024, 1)
    out["pss_mb"] = round(kb.get("Pss", 0) / 1024, 1)
    out["private_mb"] = round((kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) / 1024, 1)
    return out


def settle() -> None:
    """End of an actor's start-up: move everything built so far out of the garbage collector's
    way so full collections do not stall ticks (the kernels loaded in ``start_process``)."""
    import gc

    gc.collect()
    gc.freeze()
