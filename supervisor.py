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
import math
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

from thetadesk.config import DEFAULT_CONFIG, Config, load_config, load_config_data, parse_config
from thetadesk.errors import ConfigError, OperationalError

ACTOR_MAX_RESTARTS = 3
QUIET_TICKS = 12  # at most this many more ticks in one account call (see Supervisor._tick)
PING_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 30.0  # a Telegram command's actor call; the reply says it failed after this
RUN_STATS = "run_stats.json"
# An account whose broker fails (bad keys, a reconciliation that cannot run, a broken paper
# broker file) is isolated: its actor is stopped and the other accounts trade on. After this
# many failed rounds in a row (at once for an OperationalError: a person must step in) ...
ISOLATE_AFTER_FAILURES = 3
# ... and it is tried again every this many minutes of market time.
ISOLATION_RETRY_MINUTES = 30


@dataclass
class Isolation:
    """An isolated account: its slot (to re-create it), why, and when to try it again."""

    slot: ActorSlot
    reason: str
    retry_at: datetime


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
    p.add_argument("--quiet-ticks", type=int, default=QUIET_TICKS, metavar="N",
                   help="full speed, one account: ticks an account may run on in one call while "
                        "nothing else can happen (default: %(default)s; 0: one call per tick)")
    p.add_argument("--wait-for-reports", action="store_true",
                   help="wait for each close's risk report (Monte Carlo included) before the "
                        "next session starts, as a live desk has it done overnight; by default "
                        "a full-speed simulation runs on while the report is computed")
    args = p.parse_args(argv)
    if args.sim_days is not None and args.sim_days < 1:
        p.error("--sim-days must be >= 1")
    if args.seed is not None and args.seed < 0:
        p.error("--seed must be >= 0")
    if args.max_restarts < 0:
        p.error("--max-restarts must be >= 0")
    if args.pace is not None and args.pace <= 0:
        p.error("--pace must be > 0")
    if args.quiet_ticks < 0:
        p.error("--quiet-ticks must be >= 0")
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
    tick_ms: list[float] = field(default_factory=list)  # wall time of each tick's round
    actors: dict[str, dict] = field(default_factory=dict)  # name -> footprint at the end


class SupervisorDesk:
    """The Telegram bot's ``DeskControl`` (``thetadesk.notify.bot``) over the supervisor's
    actors: every command reaches the actor that owns what it changes, through the handles the
    supervisor keeps alive (looked up per call, so a restarted actor is the one asked). It runs
    on the bot's thread with the bot's own ledger connection. Breakers, the manual halt
    included, are the risk actor's; close-all is each account actor's; acknowledgements are
    the notification actor's outbox."""

    def __init__(self, supervisor: Supervisor, ledger: Any) -> None:
        self.supervisor = supervisor
        self.ledger = ledger

    def _call(self, name: str, method: str, *args: Any) -> Any:
        sup = self.supervisor
        handle = sup.slots[name].handle
        return sup.ray.get(getattr(handle, method).remote(*args), timeout=COMMAND_TIMEOUT_S)

    def now(self) -> datetime:
        from thetadesk.clock import LiveClock

        value = self.ledger.get_state("sim_now")
        return datetime.fromisoformat(value) if value else LiveClock().now()

    def _accounts(self) -> list[str]:
        return [n for n in self.supervisor.slots if n.startswith("account-")]

    def breaker_readings(self) -> dict:
        return self._call("risk", "breaker_readings", self.now())

    def position_values(self) -> dict:
        return self._call("risk", "position_values", self.now())

    def halt(self, by: str) -> dict:
        return self._call("risk", "halt", by, self.now(), f"stopped from Telegram by {by}")

    def resume(self, by: str) -> dict:
        return self._call("risk", "resume", by, self.now(), f"resumed from Telegram by {by}")

    def close_all(self, by: str) -> dict:
        now = self.now()
        self._call("risk", "halt", by, now, f"close-all from Telegram by {by}")
        return {slot.removeprefix("account-"): self._call(slot, "close_all", now, by)
                for slot in self._accounts()}

    def ack_open(self) -> list:
        return self._call("notification", "ack_open")


class Supervisor:
    def __init__(self, config: Config, args: argparse.Namespace, started_wall: float) -> None:
        self.config = config
        self.args = args
        self.state_dir = Path(args.state_dir)
        self.watch = args.sim_days is None
        self.stopping = False
        self.stats = RunStats(started_wall)
        self.slots: dict[str, ActorSlot] = {}
        # The next tick's instant and, per account that prepared it, the symbols it would act on.
        self._prepared: tuple[datetime, dict[str, tuple[str, ...]]] | None = None
        self._last_done: datetime | None = None  # the last finished tick, not yet in the ledger
        self._restarted = False  # an actor restarted: the risk update checks the restart storm
        self.isolated: dict[str, Isolation] = {}  # account slot name -> why and when to retry
        self._failures: dict[str, int] = {}  # account slot name -> failed rounds in a row

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        import ray

        from thetadesk.clock import MarketCalendar
        from thetadesk.logging import get_logger
        from thetadesk.risk.breakers import BreakerWatch, breaker_limits_from_config
        from thetadesk.store import LEDGER_FILE, Ledger
        from thetadesk.symbol import Profiles

        self.ray = ray
        self.entry_rules = Profiles.from_config(self.config)
        self.log = get_logger("supervisor")
        self.ledger = Ledger(self.state_dir / LEDGER_FILE)
        self.breakers = BreakerWatch(self.ledger, breaker_limits_from_config(self.config))
        self.calendar = MarketCalendar()
        self._start_ray()
        self._install_signal_handlers()  # after Ray, whose core worker installs its own
        first_session = self._first_session()
        now = self.calendar.session_open(first_session)
        if self.config.market.live:
            from thetadesk.clock import LiveClock

            now = max(now, LiveClock().now())
        last = self.ledger.get_state("sim_last_tick")
        if last:
            # A simulation resumes where it stopped; a live run never goes back in time (the
            # last tick of yesterday's run is history, not the present).
            then = datetime.fromisoformat(last)
            now = max(now, then) if self.config.market.live else then
        self.ledger.set_state("sim_now", now.isoformat())
        self._spawn_all(now)
        self._report_recovery()
        self._start_bot()
        try:
            self._drive(first_session)
        finally:
            self._shutdown()
        if not self.watch:
            print(self.summary_table())
            print(self.risk_table())
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

    def _report(self, at: datetime, monte_carlo: bool) -> None:
        """Ask the risk actor to re-measure the books without waiting for it: the answer (the
        figures are in the ledger) is collected before the next request or at shutdown."""
        self._collect_report()
        self._pending_report = self.slots["risk"].send("refresh", at, monte_carlo)

    def _collect_report(self) -> None:
        pending, self._pending_report = getattr(self, "_pending_report", None), None
        if pending is not None:
            self._call([pending])

    def _start_bot(self) -> None:
        """The Telegram bot, if ``TELEGRAM_BOT_TOKEN`` is set (without it the notification
        actor has warned once already). Commands sent while the desk was down are answered
        before the first tick, so a /stop sent then holds from the start; then a thread polls."""
        self._bot = None
        if not os.environ.get("TELEGRAM_BOT_TOKEN", "").strip():
            return
        from actors.notification import ENV_TELEGRAM_BASE_URL
        from thetadesk.adapters.telegram import TelegramChannel, TelegramSettings
        from thetadesk.config import ALL_ACCOUNTS
        from thetadesk.errors import DataError
        from thetadesk.notify.bot import BotLoop, desk_handlers
        from thetadesk.notify.commands import CommandRouter
        from thetadesk.risk.gate import global_limits_from_config, portfolio_limits_from_config
        from thetadesk.store import LEDGER_FILE, Ledger

        chat_ids = self.config.notifications.telegram_chat_ids
        try:
            settings = TelegramSettings.from_env(os.environ, chat_ids)
            if settings is None:
                return  # the adapter warned what is missing
            channel = TelegramChannel(settings, base_url=os.environ.get(ENV_TELEGRAM_BASE_URL)
                                      or None)
        except DataError as exc:
            self.log.warning("telegram_bot_disabled", reason=str(exc))
            return
        ledger = Ledger(self.state_dir / LEDGER_FILE)
        accounts = [a.name for a in self.config.accounts]
        limits = dict(portfolio_limits_from_config(self.config))
        glimits = global_limits_from_config(self.config)
        if glimits is not None:
            limits[ALL_ACCOUNTS] = glimits
        handlers = desk_handlers(
            ledger, accounts, SupervisorDesk(self, ledger), lambda: f"telegram:{router.chat_id}",
            limits)
        router = CommandRouter(settings.allowed_chat_ids, handlers)
        self._bot = (BotLoop(channel, router, ledger), ledger)
        if self._bot[0].step(timeout_s=0) >= 0:  # what arrived while the desk was down
            self._bot[0].start()
        self.log.info("telegram_bot_started", chats=len(settings.allowed_chat_ids))

    def _stop_bot(self) -> None:
        bot, self._bot = getattr(self, "_bot", None), None
        if bot is None:
            return
        loop, ledger = bot
        loop.stop()
        ledger.close()

    def _shutdown(self) -> None:
        self._stop_bot()
        self._collect_report()
        notification = getattr(self, "slots", {}).get("notification")
        if notification is not None:  # what is due goes out before the actors stop
            self._call([notification.send("pump")])
        self._record_last_tick()
        now = self._sim_now()
        self.ledger.record_actor_event(actor="supervisor", kind="stopped", now=now,
                                       pid=os.getpid(), detail="clean shutdown")
        self.stats.actors = self._footprints()
        self._write_stats()
        try:
            self.ray.shutdown()
        except Exception as exc:  # shutting down anyway
            self.log.warning("ray_shutdown_failed", reason=str(exc))

    def _footprints(self) -> dict[str, dict]:
        """Each live actor's memory and whether it loaded numba (``actors._common.footprint``),
        for run_stats.json; an actor that cannot answer is left out and logged."""
        refs = {name: slot.handle.footprint.remote() for name, slot in self.slots.items()
                if slot.handle is not None and name not in self.isolated}
        out = {}
        for name, ref in refs.items():
            try:
                out[name] = self.ray.get(ref, timeout=COMMAND_TIMEOUT_S)
            except Exception as exc:  # shutting down anyway
                self.log.warning("footprint_unavailable", actor=name, reason=_last_line(exc))
        return out

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
        if cfg.hedging.enabled:
            from actors.hedging import HedgingActor

            self._add(ActorSlot("hedging", lambda: remote(HedgingActor, "hedging")
                                .remote(cfg, sd, console)))
        for symbol in cfg.market.symbols:
            self._add(ActorSlot(
                f"symbol-{symbol}",
                lambda s=symbol: remote(SymbolActor, f"symbol-{s}").remote(s, cfg, sd, console)))
        for account in cfg.accounts:
            self._add(ActorSlot(
                f"account-{account.name}",
                lambda a=account.name: remote(AccountActor, f"account-{a}").remote(
                    a, cfg, sd, self.slots["risk"].handle, now, console)))
        for slot in list(self.slots.values()):
            try:
                slot.pid = ray.get(slot.handle.ping.remote(), timeout=PING_TIMEOUT_S)
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as exc:
                if not slot.name.startswith("account-"):
                    raise  # the desk cannot run without its shared actors
                self._isolate(slot, exc, now)
                continue
            self.ledger.record_actor_event(actor=slot.name, kind="started", now=now,
                                           pid=slot.pid)

    def _report_recovery(self) -> None:
        """Send what the accounts' start-up reconciliation found (external orders, position
        mismatches) now, before waiting for the first tick."""
        accounts = [s for s in self.slots.values() if s.name.startswith("account-")]
        found = self._call([slot.send("take_alerts") for slot in accounts])
        self._notify([alert for alerts in found.values() for alert in alerts])

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
            self._kill(slot)
            slot.handle = slot.make()
            slot.pid = ray.get(slot.handle.ping.remote(), timeout=PING_TIMEOUT_S)
            kind = "recreated"
            if slot.name == "risk":
                for other in self.slots.values():
                    if other.name.startswith("account-"):
                        ray.get(other.handle.set_risk.remote(slot.handle))
        slot.generation += 1
        self.ledger.record_actor_event(actor=slot.name, kind=kind, now=now, pid=slot.pid)
        self._restarted = True
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
        calls failed with it) and its result omitted. An account whose calls keep failing, or
        whose recovery fails, is isolated (``_isolate``)."""
        results = {}
        for slot, ref, generation in calls:
            account = slot.name.startswith("account-")
            try:
                results[slot.name] = self.ray.get(ref)
                if account:
                    self._failures.pop(slot.name, None)
            except self.ray.exceptions.RayActorError as exc:
                if generation != slot.generation or slot.name not in self.slots:
                    continue
                try:
                    self._recover_actor(slot, exc)
                except (self.ray.exceptions.RayError, self.ray.exceptions.GetTimeoutError) as err:
                    if not account:
                        raise
                    self._isolate(slot, err, self._sim_now())
            except self.ray.exceptions.RayTaskError as exc:
                self.log.error("actor_call_failed", actor=slot.name, error=str(exc)[:2000])
                if not account or slot.name not in self.slots:
                    self._alert_critical("actor_call_failed", slot.name,
                                         f"{slot.name} failed a tick: {_last_line(exc)}")
                    continue
                failures = self._failures[slot.name] = self._failures.get(slot.name, 0) + 1
                if (failures >= ISOLATE_AFTER_FAILURES
                        or isinstance(getattr(exc, "cause", None), OperationalError)):
                    self._isolate(slot, exc, self._sim_now())
                else:
                    self._alert_critical("actor_call_failed", slot.name,
                                         f"{slot.name} failed a tick: {_last_line(exc)}")
        return results

    def _kill(self, slot: ActorSlot) -> None:
        """Kill the slot's actor for good (no Ray restart); one that is already dead is fine."""
        try:
            self.ray.kill(slot.handle, no_restart=True)
        except Exception as exc:  # already dead, or never created
            self.log.warning("actor_kill_failed", actor=slot.name, reason=str(exc)[:200])

    def _isolate(self, slot: ActorSlot, error: BaseException, now: datetime) -> None:
        """Stop an account whose broker fails, so that the others keep trading: its actor is
        killed and left out of every round, the ledger records why (actor_events: isolated),
        a critical alert says so, and it is tried again every ISOLATION_RETRY_MINUTES of
        market time (``_retry_isolated``). Its ledger rows are left as they are."""
        reason = _last_line(error)[:300]
        self.slots.pop(slot.name, None)
        self._failures.pop(slot.name, None)
        self._prepared = None  # the next round prepares afresh, without this account
        self._kill(slot)
        self.isolated[slot.name] = Isolation(
            slot, reason, now + timedelta(minutes=ISOLATION_RETRY_MINUTES))
        self.ledger.record_actor_event(actor=slot.name, kind="isolated", now=now, pid=slot.pid,
                                       detail=reason)
        self.log.error("account_isolated", actor=slot.name, reason=reason)
        account = slot.name.removeprefix("account-")
        self._alert_critical(
            "account_isolated", f"{account}:isolated",
            f"{account}: isolated, its broker fails ({reason}). Its open positions are NOT "
            f"managed until it is back; the other accounts keep trading. Tried again every "
            f"{ISOLATION_RETRY_MINUTES} market minutes; fix the cause (keys, broker) or close "
            "its positions at the broker.")

    def _retry_isolated(self, now: datetime) -> None:
        """Try each isolated account whose retry is due: re-created and answering, it rejoins
        the rounds (its constructor reconciles with the broker first); else it waits again."""
        for name, iso in list(self.isolated.items()):
            if iso.retry_at > now or self.stopping:
                continue
            slot = iso.slot
            try:
                slot.handle = slot.make()
                slot.pid = self.ray.get(slot.handle.ping.remote(), timeout=PING_TIMEOUT_S)
            except (self.ray.exceptions.RayError, self.ray.exceptions.GetTimeoutError) as exc:
                iso.reason = _last_line(exc)[:300]
                iso.retry_at = now + timedelta(minutes=ISOLATION_RETRY_MINUTES)
                self.log.warning("account_still_isolated", actor=name, reason=iso.reason)
                self._kill(slot)
                continue
            del self.isolated[name]
            slot.generation += 1
            self.slots[name] = slot
            self._prepared = None
            self.ledger.record_actor_event(actor=name, kind="rejoined", now=now, pid=slot.pid)
            account = name.removeprefix("account-")
            from thetadesk.messages import Alert, Severity

            found = self._call([slot.send("take_alerts")]).get(name, [])
            self._notify([Alert(Severity.WARNING, "account_rejoined", f"{account}:rejoined",
                                f"{account}: its broker answers again; the account is back "
                                "and trading", now), *found])

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
        if self.config.market.live:  # live: today's session, or the next one
            from thetadesk.chain import NEW_YORK
            from thetadesk.clock import LiveClock

            return self.calendar.next_session(LiveClock().now().astimezone(NEW_YORK).date())
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
            i = 0
            while i < len(ticks):
                if self.stopping:
                    break
                now = ticks[i]
                if last_tick is not None and now <= last_tick:
                    i += 1
                    continue
                if self.config.market.live:
                    if not self._wait_until(now):  # a tick already gone by: never trade late
                        i += 1
                        continue
                elif self.watch:
                    self._pace(now)
                done = self._tick(now, ticks[i + 1:])
                i += done
                self._last_done = ticks[i - 1]  # recorded with the next tick's start
            else:
                self._record_last_tick()
                self._end_of_day(session)
            index += 1
            session = self.calendar.next_session(session + timedelta(days=1))

    def _wait_until(self, at: datetime, clock: Any = None,
                    sleep: Callable[[float], None] = time.sleep) -> bool:
        """Live: sleep until the wall clock reaches the tick at ``at`` (overnight included; a
        stop request ends the wait). False if the tick is more than one tick interval in the
        past when asked (a late start, a long pause): it is skipped, not traded late."""
        if clock is None:
            from thetadesk.clock import LiveClock

            clock = LiveClock()
        if (clock.now() - at).total_seconds() > self.config.market.tick_seconds:
            return False
        while not self.stopping:
            left = (at - clock.now()).total_seconds()
            if left <= 0:
                return True
            sleep(min(1.0, left))
        return True  # stopping: the loop sees it before the tick

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

    def _record_last_tick(self) -> None:
        if self._last_done is not None:
            self.ledger.set_state("sim_last_tick", self._last_done.isoformat())
            self._last_done = None

    def _tick(self, now: datetime, upcoming: Sequence[datetime] = ()) -> int:
        """One lockstep round at ``now`` (``upcoming``: the session's later ticks); returns how
        many ticks it completed (more than one only in a quiet run, see below).

        Steady state it is one call per account: ``round`` finishes this tick (the symbols'
        intents) and prepares the next (fills, order upkeep, exits), and says which symbols'
        intents it could act on then. The symbol actors are asked only for those, and only in
        the strategy's entry window; elsewhere they would propose nothing anyone takes. The risk
        actor's breaker update runs only when a breaker could change state (``BreakerWatch``
        over the ticks, or an actor restarted since the last update: the restart storm).

        Quiet runs: with a single account and no one watching, the account may go on through
        up to ``--quiet-ticks`` more ticks in the same call for as long as the supervisor would
        do nothing between them but record the clock (no symbol to ask, no alert, no breaker to
        check); it records the clock itself, tick by tick, as here. Every tick is still a
        separate round, in order, with the same inputs, so the trades are the same. A SIGTERM
        waits for the call (at most a few dozen ms). If the account dies during one, the run
        carries on after the last tick whose clock it recorded (a tick whose own write did not
        commit is run again; one that did is not, as after any failed round)."""
        from thetadesk.chain import NEW_YORK
        from thetadesk.risk.breakers import update_needed

        started = time.monotonic()
        if self.isolated:
            self._retry_isolated(now)
        # The tick starts (sim_now, for restarted actors) and the previous one is done
        # (sim_last_tick, where a new supervisor resumes): one commit, made while the first
        # calls of the tick run (a restarted actor reads sim_now seconds later, not sooner),
        # or before the call when the account may record later ticks itself (a quiet run).
        states = {"sim_now": now.isoformat()}
        if self._last_done is not None:
            states["sim_last_tick"] = self._last_done.isoformat()
            self._last_done = None

        def record_start() -> None:
            if states:
                self.ledger.set_states(states)
                states.clear()

        symbols = [s for n, s in self.slots.items() if n.startswith("symbol-")]
        accounts = [s for n, s in self.slots.items() if n.startswith("account-")]
        cfg_accounts = {a.name: a for a in self.config.accounts}
        pending, self._prepared = self._prepared, None
        if pending is not None and pending[0] == now:
            ready = pending[1]
        else:  # the first tick, or after a failed round: prepare now
            record_start()
            ready = self._call([a.send("prepare", now) for a in accounts])
        sym = {}
        symbol_refs = []
        if not self.stopping and self.entry_rules.in_entry_window(now):
            # An account that did not say (it died, say) gets every symbol's intents.
            wanted = set().union(*(
                ready.get(slot.name, cfg_accounts[slot.name.removeprefix("account-")].symbols)
                for slot in accounts))
            symbol_refs = [s.send("tick", now) for s in symbols
                           if s.name.removeprefix("symbol-") in wanted]
        hedging = self.slots.get("hedging")
        if hedging is not None and not self.stopping and self._hedge_due(now):
            symbol_refs.append(hedging.send("tick", now))  # reads the ledger, as symbols do
            self._hedge_checked = now
        if symbol_refs:
            record_start()
            sym = self._call(symbol_refs)
        hedges = sym.pop("hedging", None) or {}
        if self.stats.first_tick_s is None:
            self.stats.first_tick_s = time.time() - self.stats.started_wall
            self.log.info("first_tick", seconds=round(self.stats.first_tick_s, 2))
        intents, walls = [], {}
        for result, wall in sym.values():
            intents.extend(result.intents)
            walls[result.symbol] = wall
        upcoming = tuple(upcoming) if not self.stopping else ()
        quiet = (self.args.quiet_ticks if len(accounts) == 1 and not self.watch
                 and not self.stopping else 0)
        if quiet and hedging is not None:  # a quiet run stops before the next hedge check
            quiet = min(quiet, sum(1 for t in upcoming if not self._hedge_due(t)))
        if quiet:
            record_start()  # before the account records later ticks itself
        calls = []
        for slot in accounts:
            account = cfg_accounts[slot.name.removeprefix("account-")]
            mine = [i for i in intents
                    if i.symbol in account.symbols and i.profile in account.strategies
                    ] if not self.stopping else []
            wall = min((walls[i.symbol] for i in mine), default=None)
            calls.append(slot.send("rounds", now, mine, wall, upcoming[:quiet + 1], quiet,
                                   hedges.get(account.name, ())))
        record_start()
        results = self._call(calls)
        done = max((len(r) for r in results.values()), default=1)
        if quiet and not results:  # the account failed during a quiet run: carry on after
            # the last tick whose clock it recorded (see above)
            at = self._sim_now()
            done = 1 + sum(1 for t in upcoming[:quiet] if t <= at)
        times = (now, *upcoming)
        this = [({name: r[j].tick for name, r in results.items() if len(r) > j}, times[j])
                for j in range(done)]
        last = {name: r[-1] for name, r in results.items() if len(r) == done}
        if last and done <= len(upcoming) and not self.stopping:
            self._prepared = (upcoming[done - 1], {name: r.ready for name, r in last.items()
                                                   if r.ready is not None})
        alerts = []
        for ticks, at in this:
            for tick in ticks.values():
                if self.watch and (tick.submitted or tick.opened or tick.closed or tick.rejected):
                    print(f"{at.astimezone(NEW_YORK):%Y-%m-%d %H:%M} New York  {tick.account}: "
                          f"{len(tick.submitted)} orders sent, {tick.opened} opened, "
                          f"{tick.closed} closed, {len(tick.rejected)} refused; equity "
                          f"{tick.equity:,.2f}, day P&L {tick.day_pnl:+,.2f}, "
                          f"{tick.open_positions} open", flush=True)
                self.stats.latencies_ms.extend(tick.latencies_ms)
                alerts.extend(tick.alerts)
            if any(tick.opened or tick.closed for tick in ticks.values()):
                self._report(at, monte_carlo=False)  # after fills
            if self._restarted or update_needed(ticks.values(), self.breakers):
                self._restarted = False
                risk = self.slots["risk"]
                alerts.extend(self._call([risk.send("update", at, list(ticks.values()))])
                              .get("risk", []))
        self._notify(alerts)
        self.stats.ticks += done
        self.stats.sim_minutes += done * self.config.market.tick_seconds / 60
        took = time.monotonic() - started
        self.stats.tick_wall_s += took
        if done:  # a quiet call's ticks share its time
            self.stats.tick_ms.extend([1000.0 * took / done] * done)
        return done

    def _hedge_due(self, at: datetime) -> bool:
        """Whether the hedging actor is due a check at ``at`` (every hedging.check_minutes of
        market time; the first tick of a run checks)."""
        last = getattr(self, "_hedge_checked", None)
        return last is None or (at - last).total_seconds() >= (
            self.config.hedging.check_minutes * 60 - 1e-6)

    def _end_of_day(self, session: date) -> None:
        # The day's Monte Carlo risk report runs while the next day starts; it is collected at
        # the next fill or close (or at shutdown), so its Ray tasks never hold up a tick. With
        # --wait-for-reports it is collected now, as a live desk has it by the next open: the
        # next session's first ticks then do not share the CPUs (and the risk actor) with it.
        self._report(self.calendar.session_close(session), monte_carlo=True)
        if not self.config.market.live and not self.stopping:
            # The night between two sessions: each account's market quotes its book for the
            # next session's first tick now (a new day's market, built in every account
            # process), so that tick does not; live there is nothing to quote yet.
            following = self.calendar.next_session(session + timedelta(days=1))
            first = self.calendar.ticks(following, self.config.market.tick_seconds)[0]
            self._call([slot.send("prewarm", first) for name, slot in self.slots.items()
                        if name.startswith("account-")])
        if self.args.wait_for_reports:
            self._collect_report()
        from thetadesk.messages import Alert, Severity

        # The notification actor builds the message (P&L, trades, open risk) from the ledger.
        self._notify([Alert(Severity.INFO, "daily_summary", f"daily_summary:{session}", "",
                            self.calendar.session_close(session))])
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
        from thetadesk.store import HEDGE_PREFIX

        rows = []
        for day in self.ledger.days():
            if day["session"] != session.isoformat():
                continue
            acct = day["account"]
            # The strategies' positions: the hedge book has its own lines (hedge_lines).
            all_positions = [p for p in self.ledger.positions(acct, status=None)
                             if not p["strategy"].startswith(HEDGE_PREFIX)]

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
        lines = ["", "opened, closed, realized and open count the strategies' positions; P&L and "
                 "equity are the account's (hedges included)", header, "-" * len(header)]
        for session in sessions:
            rows = self._day_rows(session)
            if len(self.config.accounts) > 1 and rows:  # the accounts together
                rows.append({"session": session, "account": "total",
                             **{k: sum(r[k] for r in rows)
                                for k in ("opened", "closed", "realized", "pnl", "equity",
                                          "open")}})
            for r in rows:
                lines.append(
                    f"{r['session']!s:<10}  {r['account']:<12} {r['opened']:>6} {r['closed']:>6} "
                    f"{r['realized']:>10,.2f} {r['pnl']:>10,.2f} {r['equity']:>12,.2f} "
                    f"{r['open']:>4}")
        return "\n".join(lines)

    def risk_table(self) -> str:
        """Each account's latest risk figures, as the risk actor measured them (and, with
        several accounts, the figures of their books together: ``all``)."""
        from thetadesk.config import ALL_ACCOUNTS
        from thetadesk.risk.engine import RISK_FIGURES

        lines = ["", "risk (latest measured; 1-day VaR/ES in dollars of loss)"]
        names = [a.name for a in self.config.accounts]
        if len(names) > 1:
            names.append(ALL_ACCOUNTS)  # the accounts' books together
        for name in names:
            text = self.ledger.get_state(RISK_FIGURES + name)
            if text is None:
                lines.append(f"  {name}: not measured yet")
                continue
            f = json.loads(text)
            mc = f.get("monte_carlo")
            mc_text = (f"; Monte Carlo ({mc['scenarios']:,} scenarios, {mc['workers']} tasks) "
                       f"VaR99 {mc['var99']:,.2f} ES99 {mc['es99']:,.2f}" if mc else "")
            lines.append(
                f"  {name} at {f['at']}: VaR95 {f.get('var95') or 0:,.2f} "
                f"VaR99 {f.get('var99') or 0:,.2f} ES99 {f.get('es99') or 0:,.2f} "
                f"(delta-gamma-vega); beta-weighted delta "
                f"{f.get('beta_weighted_delta') or 0:+,.1f} SPY shares; vega "
                f"{f.get('vega_per_vol_point') or 0:+,.2f}/vol pt; theta "
                f"{f.get('theta_per_day') or 0:+,.2f}/day; open max loss "
                f"{f['total_max_loss']:,.2f}{mc_text}")
            if f.get("stress"):
                worst = sorted(f["stress"], key=lambda row: row[1])[:3]
                lines.append("    worst stress scenarios: " + "; ".join(
                    f"{name} {pnl:+,.2f}" for name, pnl in worst))
            if f.get("betas"):
                lines.append("    betas vs SPY (from daily closes): " + ", ".join(
                    f"{k} {v:.2f}" for k, v in sorted(f["betas"].items())))
        lines.extend(self.hedge_lines())
        return "\n".join(lines)

    def hedge_lines(self) -> list[str]:
        """Realised P&L by book (strategies vs hedges) and, with hedging on, the latest hedge
        check's figures per account."""
        from thetadesk.hedging import HEDGE_STATE

        lines = ["", "P&L attribution (realised, after commissions)"]
        for account in self.config.accounts:
            pnl = self.ledger.pnl_attribution(account.name)
            decisions = self.ledger.decisions(account.name)
            hedges = sum(1 for d in decisions if d["kind"].startswith("hedge")
                         and d["status"] != "abandoned")
            lines.append(f"  {account.name}: strategies {pnl['strategy']:+,.2f}, hedges "
                         f"{pnl['hedge']:+,.2f} ({hedges} hedge orders)")
            text = self.ledger.get_state(HEDGE_STATE + account.name)
            if text is None:
                continue
            h = json.loads(text)
            upkeep = h.get("rebalance") or {}
            tail = h.get("tail") or {}
            gamma = ", ".join(f"{k} {v:+.2f}" for k, v in sorted((h.get("gamma") or {}).items()))
            book = h.get("book") or {}
            if book:
                shares = ", ".join(f"{q:+d} {s}" for s, q in sorted(book["shares"].items()))
                lines.append(f"    hedge book: {book['positions']} option hedges, shares "
                             f"{shares or 'none'}; open P&L {book['unrealized']:+,.2f} at mid")
            lines.append(
                f"    hedging at {h['at']}: delta {h['beta_weighted_delta']:+,.1f} in "
                f"{h['target']:+.0f} +/- {h['band']:.0f} (stress {h['stress']:.2f}); gamma "
                f"{gamma or 'none'} shares/$; expected upkeep "
                f"{upkeep.get('hedges_per_day', 0):.2f} hedges, "
                f"${upkeep.get('cost_per_day', 0):,.2f} a day; tail budget "
                f"${tail.get('budget', 0):,.2f}, {tail.get('held', 0)} puts held")
        return lines

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
            "tick_p50_ms": _percentile(s.tick_ms, 50),
            "tick_p99_ms": _percentile(s.tick_ms, 99),
            "tick_ms": [round(t, 2) for t in s.tick_ms],  # each tick's round, in order
            "actors": s.actors,  # memory and numba per actor at the end of the run
        }
        (self.state_dir / RUN_STATS).write_text(json.dumps(stats, indent=1))


def _last_line(error: BaseException) -> str:
    """The last line of an error's text (a Ray error's is the original exception's)."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


def _percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``; None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def run_config(path: str | os.PathLike[str], seed: int | None = None) -> Config:
    """The config a run uses: the file at ``path`` with ``--seed`` in place of its seed before
    validation, so what defaults to the seed (the paper broker's fill draws) follows it too."""
    if seed is None:
        return load_config(path)
    data = load_config_data(path)
    if isinstance(data, dict):
        data = {**data, "seed": seed}
    return parse_config(data, source=str(path))


def main(argv: Sequence[str] | None = None) -> int:
    started_wall = _process_start()
    args = parse_args(argv)
    try:
        config = run_config(args.config, args.seed)
    except ConfigError as exc:
        print(f"config error in {args.config}:\n{exc}", file=sys.stderr)
        return 2
    if args.sim_days is not None and config.market.live:
        print(f"--sim-days needs a simulated market (market.source sim or replay); "
              f"{args.config} trades live prices from {config.market.source}", file=sys.stderr)
        return 2
    from thetadesk.wiring import missing_env

    missing = missing_env(config, os.environ)
    if missing:
        print(f"{args.config}: set the environment variable"
              f"{'s' if len(missing) > 1 else ''} {', '.join(missing)} (vendor keys are never "
              "read from the config file; see README, 'Real brokers and data')",
              file=sys.stderr)
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
