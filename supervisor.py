"""ThetaDesk's entry point: load config, start Ray, spawn the actors, drive the clock, keep them
alive, and shut down cleanly.

    python supervisor.py                      watch the simulator trade, until Ctrl-C
    python supervisor.py --sim-days 5         run 5 simulated trading days at full speed
    python supervisor.py --check-config       validate config.yaml and exit

Exit status: 0 on success (and after a clean stop on SIGINT/SIGTERM), 2 for a bad config.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from thetadesk.config import DEFAULT_CONFIG, Config, load_config
from thetadesk.errors import ConfigError

ACTOR_MAX_RESTARTS = 3
PING_TIMEOUT_S = 60.0
RUN_STATS = "run_stats.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="supervisor.py",
        description="Run ThetaDesk: a supervised system of Ray actors trading option spreads.",
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG),
                   help="YAML config (default: %(default)s)")
    p.add_argument("--sim-days", type=int, metavar="N",
                   help="run N simulated trading days as fast as possible, print a summary, exit "
                        "(an interrupted run in the same --state-dir resumes where it stopped)")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--state-dir", default="state",
                   help="ledger thetadesk.db, paper broker files and JSON logs (default: state/)")
    p.add_argument("--check-config", action="store_true", help="validate the config and exit")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. auto or ray://host:10001);"
                                     " default: RAY_ADDRESS, else a new local cluster")
    p.add_argument("--max-restarts", type=int, default=ACTOR_MAX_RESTARTS, metavar="N",
                   help="times Ray restarts a dead actor before the supervisor re-creates it "
                        "(default: %(default)s)")
    p.add_argument("--pace", type=float,
                   help="watch mode: simulated seconds per wall second (default: market.pace)")
    args = p.parse_args(argv)
    if args.sim_days is not None and args.sim_days < 1:
        p.error("--sim-days must be >= 1")
    if args.seed is not None and args.seed < 0:
        p.error("--seed must be >= 0")
    if args.max_restarts < 0:
        p.error("--max-restarts must be >= 0")
    if args.pace is not None and args.pace <= 0:
        p.error("--pace must be > 0")
    return args


@dataclass
class ActorSlot:
    """A named actor the supervisor keeps alive: how to (re)create it, and its handle."""

    name: str
    make: Callable[[], Any]
    handle: Any = None
    pid: int | None = None
    generation: int = 0  # bumped on every recovery; calls sent before it are stale

    def send(self, method: str, *args: Any) -> tuple[ActorSlot, Any, int]:
        return self, getattr(self.handle, method).remote(*args), self.generation


@dataclass
class RunStats:
    started_wall: float
    first_tick_s: float | None = None
    ticks: int = 0
    sim_minutes: float = 0.0
    tick_wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


class Supervisor:
    def __init__(self, config: Config, args: argparse.Namespace, started_wall: float) -> None:
        self.config = config
        self.args = args
        self.state_dir = Path(args.state_dir)
        self.watch = args.sim_days is None
        self.stopping = False
        self.stats = RunStats(started_wall)
        self.slots: dict[str, ActorSlot] = {}
        self._prepared: tuple[datetime, list] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        import ray

        from thetadesk.clock import MarketCalendar
        from thetadesk.logging import get_logger
        from thetadesk.store import LEDGER_FILE, Ledger

        self.ray = ray
        self.log = get_logger("supervisor")
        self.ledger = Ledger(self.state_dir / LEDGER_FILE)
        self.calendar = MarketCalendar()
        self._start_ray()
        self._install_signal_handlers()  # after Ray, whose core worker installs its own
        first_session = self._first_session()
        now = self.calendar.session_open(first_session)
        last = self.ledger.get_state("sim_last_tick")
        if last:
            now = datetime.fromisoformat(last)
        self.ledger.set_state("sim_now", now.isoformat())
        self._spawn_all(now)
        try:
            self._drive(first_session)
        finally:
            self._shutdown()
        if not self.watch:
            print(self.summary_table())
        return 0

    def _install_signal_handlers(self) -> None:
        def stop(signum, _frame):
            if self.stopping:  # a second Ctrl-C: leave now
                raise KeyboardInterrupt
            self.stopping = True
            print(f"\n{signal.Signals(signum).name}: finishing this tick, no new entries, "
                  "then shutting down (again to force)", file=sys.stderr, flush=True)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    def _start_ray(self) -> None:
        address = self.args.address or os.environ.get("RAY_ADDRESS") or "local"
        env = {k: v for k, v in os.environ.items()
               if k.startswith("THETADESK_FAILPOINT")}
        options: dict[str, Any] = {}
        if address == "local":
            options = {"include_dashboard": self.watch}  # a one-machine cluster of our own
        context = self.ray.init(
            address=address,
            log_to_driver=True,
            logging_level=logging.WARNING,
            configure_logging=True,
            runtime_env={"env_vars": env} if env else None,
            **options,
        )
        url = getattr(context, "dashboard_url", None)
        where = "local cluster" if address == "local" else address
        if self.watch:
            print(f"Ray {where} started; dashboard: "
                  f"{'http://' + url if url else 'not available'}", flush=True)
        self.log.info("ray_started", address=where, dashboard=url)

    def _shutdown(self) -> None:
        now = self._sim_now()
        self.ledger.record_actor_event(actor="supervisor", kind="stopped", now=now,
                                       pid=os.getpid(), detail="clean shutdown")
        self._write_stats()
        try:
            self.ray.shutdown()
        except Exception as exc:  # shutting down anyway
            self.log.warning("ray_shutdown_failed", reason=str(exc))

    # -- actors --------------------------------------------------------------------------------

    def _options(self, name: str) -> dict[str, Any]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # Actors that write the ledger stay on this (the head) node: SQLite is a local file.
        node = self.ray.get_runtime_context().get_node_id()
        return {
            "name": name,
            "max_restarts": self.args.max_restarts,
            "max_task_retries": 0,  # never re-run a tick (orders) behind our back
            "num_cpus": 0,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False),
        }

    def _spawn_all(self, now: datetime) -> None:
        from actors.account import AccountActor
        from actors.notification import NotificationActor
        from actors.risk import RiskActor
        from actors.symbol import SymbolActor

        ray, cfg, sd, console = self.ray, self.config, self.state_dir, self.watch

        def remote(cls, name):
            return ray.remote(cls).options(**self._options(name))

        self._add(ActorSlot("notification", lambda: remote(NotificationActor, "notification")
                            .remote(cfg, sd, console)))
        self._add(ActorSlot("risk", lambda: remote(RiskActor, "risk").remote(cfg, sd, console)))
        for symbol in cfg.market.symbols:
            self._add(ActorSlot(
                f"symbol-{symbol}",
                lambda s=symbol: remote(SymbolActor, f"symbol-{s}").remote(s, cfg, sd, console)))
        for account in cfg.accounts:
            self._add(ActorSlot(
                f"account-{account.name}",
                lambda a=account.name: remote(AccountActor, f"account-{a}").remote(
                    a, cfg, sd, self.slots["risk"].handle, now, console)))
        for slot in self.slots.values():
            slot.pid = ray.get(slot.handle.ping.remote())
            self.ledger.record_actor_event(actor=slot.name, kind="started", now=now,
                                           pid=slot.pid)

    def _add(self, slot: ActorSlot) -> None:
        slot.handle = slot.make()
        self.slots[slot.name] = slot

    def _recover_actor(self, slot: ActorSlot, error: BaseException) -> None:
        """An actor's call failed because its process died: wait for Ray's restart, or
        re-create the actor if its restarts ran out. Each step goes to actor_events."""
        ray, now = self.ray, self._sim_now()
        self.ledger.record_actor_event(actor=slot.name, kind="died", now=now, pid=slot.pid,
                                       detail=f"{type(error).__name__}: {str(error)[:300]}")
        self.log.warning("actor_died", actor=slot.name, pid=slot.pid, error=type(error).__name__)
        try:
            slot.pid = self._ping_through_restart(slot)
            kind = "restarted"
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            try:
                ray.kill(slot.handle, no_restart=True)
            except Exception as exc:
                self.log.warning("actor_kill_failed", actor=slot.name, reason=str(exc))
            slot.handle = slot.make()
            slot.pid = ray.get(slot.handle.ping.remote(), timeout=PING_TIMEOUT_S)
            kind = "recreated"
            if slot.name == "risk":
                for other in self.slots.values():
                    if other.name.startswith("account-"):
                        ray.get(other.handle.set_risk.remote(slot.handle))
        slot.generation += 1
        self.ledger.record_actor_event(actor=slot.name, kind=kind, now=now, pid=slot.pid)
        self._alert_critical(f"actor_{kind}", slot.name,
                             f"{slot.name} died ({type(error).__name__}) and was {kind}")

    def _ping_through_restart(self, slot: ActorSlot) -> int:
        """The actor's pid once Ray has restarted it. "Unavailable" means Ray is restarting
        it: keep asking until PING_TIMEOUT_S. Raises if it is dead for good or never answers."""
        ray = self.ray
        deadline = time.monotonic() + PING_TIMEOUT_S
        while True:
            try:
                return ray.get(slot.handle.ping.remote(),
                               timeout=max(1.0, deadline - time.monotonic()))
            except ray.exceptions.ActorUnavailableError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def _call(self, calls: list[tuple[ActorSlot, Any, int]]) -> dict[str, Any]:
        """Wait for one call per actor; a dead actor is recovered (once, however many of its
        calls failed with it) and its result omitted."""
        results = {}
        for slot, ref, generation in calls:
            try:
                results[slot.name] = self.ray.get(ref)
            except self.ray.exceptions.RayActorError as exc:
                if generation == slot.generation:
                    self._recover_actor(slot, exc)
            except self.ray.exceptions.RayTaskError as exc:
                self.log.error("actor_call_failed", actor=slot.name, error=str(exc)[:2000])
                self._alert_critical("actor_call_failed", slot.name,
                                     f"{slot.name} failed a tick: {str(exc).splitlines()[-1]}")
        return results

    def _alert_critical(self, kind: str, key: str, message: str) -> None:
        from thetadesk.messages import Alert, Severity

        self._notify([Alert(Severity.CRITICAL, kind, key, message, self._sim_now())])

    def _notify(self, alerts: list) -> None:
        if not alerts:
            return
        slot = self.slots["notification"]
        self._call([slot.send("notify", alerts)])

    # -- the clock -------------------------------------------------------------------------------

    def _first_session(self) -> date:
        stored = self.ledger.get_state("sim_start")
        if stored:
            start = date.fromisoformat(stored)
            if start != self.calendar.next_session(self.config.market.start):
                self.log.warning("sim_start_from_ledger", ledger=stored,
                                 config=self.config.market.start.isoformat())
            return start
        start = self.calendar.next_session(self.config.market.start)
        self.ledger.set_state("sim_start", start.isoformat())
        return start

    def _sim_now(self) -> datetime:
        from datetime import UTC

        value = self.ledger.get_state("sim_now")
        return datetime.fromisoformat(value) if value else datetime.now(UTC)

    def _drive(self, first_session: date) -> None:
        last = self.ledger.get_state("sim_last_tick")
        last_tick = datetime.fromisoformat(last) if last else None
        days = self.args.sim_days
        session = first_session
        index = 0
        while not self.stopping and (days is None or index < days):
            ticks = self.calendar.ticks(session, self.config.market.tick_seconds)
            for i, now in enumerate(ticks):
                if self.stopping:
                    break
                if last_tick is not None and now <= last_tick:
                    continue
                if self.watch:
                    self._pace(now)
                self._tick(now, ticks[i + 1] if i + 1 < len(ticks) else None)
                self.ledger.set_state("sim_last_tick", now.isoformat())
            else:
                self._end_of_day(session)
            index += 1
            session = self.calendar.next_session(session + timedelta(days=1))

    def _pace(self, now: datetime) -> None:
        pace = self.args.pace or self.config.market.pace
        if not hasattr(self, "_pace_anchor"):
            self._pace_anchor = (time.monotonic(), now)
        wall0, sim0 = self._pace_anchor
        due = wall0 + (now - sim0).total_seconds() / pace
        if due - time.monotonic() > 3600 / pace:  # overnight: do not sleep through the night
            self._pace_anchor = (time.monotonic(), now)
            return
        while not self.stopping and time.monotonic() < due:
            time.sleep(min(0.2, due - time.monotonic()))

    def _tick(self, now: datetime, next_now: datetime | None = None) -> None:
        from thetadesk.chain import NEW_YORK

        started = time.monotonic()
        self.ledger.set_state("sim_now", now.isoformat())
        symbols = [s for n, s in self.slots.items() if n.startswith("symbol-")]
        accounts = [s for n, s in self.slots.items() if n.startswith("account-")]
        # Each account's first half of the round (fills, order upkeep, exits) was sent at the end
        # of the previous tick, so the symbols have the CPUs to themselves now. Ray runs an
        # actor's calls in the order they were sent: `enter` always follows its `prepare`.
        pending, self._prepared = self._prepared, None
        if pending is not None and pending[0] == now:
            prepare_refs = pending[1]
        else:
            prepare_refs = [a.send("prepare", now) for a in accounts]
        symbol_refs = [s.send("tick", now) for s in symbols]
        sym = self._call(symbol_refs)
        if self.stats.first_tick_s is None:
            self.stats.first_tick_s = time.time() - self.stats.started_wall
            self.log.info("first_tick", seconds=round(self.stats.first_tick_s, 2))
        intents, walls = [], {}
        for result, wall in sym.values():
            intents.extend(result.intents)
            walls[result.symbol] = wall
        calls = []
        cfg_accounts = {a.name: a for a in self.config.accounts}
        for slot in accounts:
            account = cfg_accounts[slot.name.removeprefix("account-")]
            mine = [i for i in intents if i.symbol in account.symbols] if not self.stopping else []
            wall = min((walls[i.symbol] for i in mine), default=None)
            calls.append(slot.send("enter", now, mine, wall))
        self._call(prepare_refs)
        ticks = self._call(calls)
        if next_now is not None and not self.stopping:
            self._prepared = (next_now, [a.send("prepare", next_now) for a in accounts])
        alerts = []
        for tick in ticks.values():
            if self.watch and (tick.submitted or tick.opened or tick.closed or tick.rejected):
                print(f"{now.astimezone(NEW_YORK):%Y-%m-%d %H:%M} New York  {tick.account}: "
                      f"{len(tick.submitted)} orders sent, {tick.opened} opened, {tick.closed} "
                      f"closed, {len(tick.rejected)} refused; equity {tick.equity:,.2f}, "
                      f"day P&L {tick.day_pnl:+,.2f}, {tick.open_positions} open", flush=True)
            self.stats.latencies_ms.extend(tick.latencies_ms)
            alerts.extend(tick.alerts)
        risk = self.slots["risk"]
        alerts.extend(self._call([risk.send("update", now, list(ticks.values()))]).get("risk", []))
        self._notify(alerts)
        self.stats.ticks += 1
        self.stats.sim_minutes += self.config.market.tick_seconds / 60
        self.stats.tick_wall_s += time.monotonic() - started

    def _end_of_day(self, session: date) -> None:
        row = self._day_rows(session)
        if self.watch:
            for r in row:
                print(f"{session} {r['account']}: opened {r['opened']} closed {r['closed']} "
                      f"P&L {r['pnl']:+,.2f} equity {r['equity']:,.2f} open {r['open']}",
                      flush=True)
        else:
            done = sum(1 for _ in self.ledger.days()) // max(1, len(self.config.accounts))
            print(f"day {done}: {session} done", file=sys.stderr, flush=True)

    # -- reporting -------------------------------------------------------------------------------

    def _day_rows(self, session: date) -> list[dict[str, Any]]:
        from thetadesk.chain import NEW_YORK

        rows = []
        for day in self.ledger.days():
            if day["session"] != session.isoformat():
                continue
            acct = day["account"]
            all_positions = self.ledger.positions(acct, status=None)

            def on(ts: str | None) -> bool:
                return ts is not None and datetime.fromisoformat(ts).astimezone(
                    NEW_YORK).date() == session

            closed = [p for p in all_positions if p["status"] == "closed" and on(p["closed_at"])]
            end = day["end_equity"] if day["end_equity"] is not None else day["start_equity"]
            rows.append({
                "session": session, "account": acct,
                "opened": sum(1 for p in all_positions if on(p["opened_at"])),
                "closed": len(closed),
                "realized": sum(p["realized_pnl"] or 0.0 for p in closed),
                "pnl": end - day["start_equity"], "equity": end,
                "open": day["open_positions"] or 0,
            })
        return rows

    def summary_table(self) -> str:
        sessions = sorted({date.fromisoformat(d["session"]) for d in self.ledger.days()})
        header = (f"{'date':<10}  {'account':<12} {'opened':>6} {'closed':>6} "
                  f"{'realized':>10} {'P&L':>10} {'equity':>12} {'open':>4}")
        lines = ["", header, "-" * len(header)]
        for session in sessions:
            for r in self._day_rows(session):
                lines.append(
                    f"{r['session']!s:<10}  {r['account']:<12} {r['opened']:>6} {r['closed']:>6} "
                    f"{r['realized']:>10,.2f} {r['pnl']:>10,.2f} {r['equity']:>12,.2f} "
                    f"{r['open']:>4}")
        return "\n".join(lines)

    def _write_stats(self) -> None:
        s = self.stats
        lat = sorted(s.latencies_ms)
        stats = {
            "first_tick_s": s.first_tick_s,
            "ticks": s.ticks,
            "sim_minutes": s.sim_minutes,
            "tick_wall_s": s.tick_wall_s,
            "sim_minutes_per_s": s.sim_minutes / s.tick_wall_s if s.tick_wall_s else None,
            "intent_to_broker_ms": lat,
            "intent_to_broker_p50_ms": statistics.median(lat) if lat else None,
            "intent_to_broker_p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))]
            if lat else None,
        }
        (self.state_dir / RUN_STATS).write_text(json.dumps(stats, indent=1))


def main(argv: Sequence[str] | None = None) -> int:
    started_wall = _process_start()
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        if args.seed is not None:
            config = config.model_copy(update={"seed": args.seed})
    except ConfigError as exc:
        print(f"config error in {args.config}:\n{exc}", file=sys.stderr)
        return 2
    if args.check_config:
        accounts = ", ".join(a.name for a in config.accounts)
        n = len(config.market.symbols)
        print(f"{args.config}: OK ({n} symbol{'' if n == 1 else 's'}: "
              f"{', '.join(config.market.symbols)}; accounts: {accounts})")
        return 0
    from thetadesk.logging import configure_logging

    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(state_dir, "supervisor", config.logging.level,
                      console=args.sim_days is None and config.logging.console)
    return Supervisor(config, args, started_wall).run()


def _process_start() -> float:
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # psutil comes with ray; fall back to now
        return time.time()


if __name__ == "__main__":
    sys.exit(main())
