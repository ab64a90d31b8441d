"""The Telegram bot: the operator's commands wired to the running desk, and the polling loop.

* ``DeskControl`` is what a command may do to the running system. The supervisor implements it
  over its actors (``supervisor.SupervisorDesk``): commands reach the actors through the
  supervisor, never around it. Tests implement it with a fake.
* ``desk_handlers`` builds the handlers of ``/status``, ``/positions``, ``/pnl``, ``/risk``
  (read-only: the ledger and the risk actor's readings, formatted by ``thetadesk.notify.desk``),
  ``/stop`` (the manual halt breaker: new entries refused at the risk gate, exits continue),
  ``/start`` (resets every breaker that is not active, the manual halt included), ``/closeall``
  (halts entries, then every account closes everything from its next round) and ``/ack``
  (acknowledges the open alerts, which stops escalation calls). ``/start`` and ``/closeall``
  ask for confirmation first (``CommandRouter``). Who acted (``telegram:<chat id>``) is recorded
  with every change. The read commands take an account's name (``/pnl ira``: that account
  alone) or ``all`` (the accounts together alone); without one they cover every account and,
  with several, the total (``/risk``: the global limits' usage and the global breaker).
* ``BotLoop`` long-polls ``getUpdates`` on a daemon thread and answers each message
  (``thetadesk.adapters.telegram.dispatch_updates``). The update offset is kept in the ledger
  (run state ``telegram_offset``) after each batch, so a restart neither loses a command sent
  while the desk was down nor answers one twice, except a batch whose offset was not saved
  before a crash: it is handled again, which every command tolerates (a second ``/stop`` finds
  the desk halted; a replayed confirmation finds nothing to confirm). Temporary errors back off
  (Telegram's ``retry_after`` when it gives one, else doubling up to ``MAX_BACKOFF_S``); a
  refused token (401/403/404) stops the loop with one error, since retrying cannot help.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from thetadesk.config import ALL_ACCOUNTS
from thetadesk.errors import DataError, TemporaryError
from thetadesk.logging import get_logger
from thetadesk.notify.commands import CommandRouter, Handler, text_reply
from thetadesk.notify.desk import pnl_reply, positions_reply, risk_reply, status_reply
from thetadesk.store import Ledger

__all__ = ["OFFSET_KEY", "BotLoop", "DeskControl", "desk_handlers"]

OFFSET_KEY = "telegram_offset"
POLL_TIMEOUT_S = 25.0  # long poll; Telegram holds the request open until a message arrives
MAX_BACKOFF_S = 60.0


class DeskControl(Protocol):
    """What the bot's commands may do to the running desk (see the module doc)."""

    def now(self) -> datetime:
        """The run's current instant (the simulated clock in a simulation)."""

    def breaker_readings(self) -> Mapping[str, Mapping[str, Any]]:
        """account -> breaker name -> reading (``.state``, ``.reason``)."""

    def position_values(self) -> Mapping[str, Mapping[str, float]]:
        """account -> position id -> net price per share to close it now (> 0 debit)."""

    def halt(self, by: str) -> Mapping[str, bool]:
        """Halt new entries on every account; account -> newly halted."""

    def resume(self, by: str) -> Mapping[str, Sequence[str]]:
        """Reset every breaker not active; account -> the breakers reset."""

    def close_all(self, by: str) -> Mapping[str, int]:
        """Halt entries, then close everything; account -> positions and holdings open."""

    def ack_open(self) -> Sequence[Mapping[str, Any]]:
        """Acknowledge the open alerts; their outbox rows."""


def _log() -> Any:
    return get_logger("thetadesk.notify.bot")


def _guarded(what: str, read: Callable[[], Any]) -> Any:
    """A reading a reply can do without (it shows ``unknown``/``n/a``): None if it fails."""
    try:
        return read()
    except Exception as exc:  # an actor restarting must not cost the operator the whole reply
        _log().warning("bot_reading_unavailable", what=what, error=str(exc)[:300],
                       error_type=type(exc).__name__)
        return None


def desk_handlers(ledger: Ledger, accounts: Sequence[str], control: DeskControl,
                  who: Callable[[], str], limits: Mapping[str, Any] | None = None,
                  ) -> dict[str, Handler]:
    """The handlers of every command but ``/help`` (built into the router). ``who`` names the
    person acting (``telegram:<chat id>``); ``limits``: account -> its portfolio limits, for
    ``/risk``'s usage column."""
    accounts = tuple(accounts)

    def pick(name: str, args: tuple[str, ...]) -> tuple[tuple[str, ...], bool] | str:
        """The accounts a read command covers and whether it adds the total: no argument,
        every account (and, with several, the total); ``all``, the total alone; an account's
        name, that account alone. A reply instead for anything else."""
        if not args:
            return accounts, len(accounts) > 1
        wanted = args[0].lower()
        if len(args) == 1 and wanted == ALL_ACCOUNTS:
            return (), True
        if len(args) == 1 and wanted in accounts:
            return (wanted,), False
        return text_reply(f"/{name} takes one account name or 'all' (the accounts are "
                          f"{', '.join(accounts)}); got {' '.join(args)[:40]!r}.")

    def read(name: str, reply: Callable[[tuple[str, ...], bool], str]) -> Handler:
        """A read command: its account argument checked by ``pick``, then ``reply(shown,
        total)``."""
        def handler(args: tuple[str, ...]) -> str:
            chosen = pick(name, args)
            return chosen if isinstance(chosen, str) else reply(*chosen)

        return handler

    status = read("status", lambda shown, total: status_reply(
        ledger, shown, control.now(), _guarded("breakers", control.breaker_readings),
        total=accounts if total else ()))
    positions = read("positions", lambda shown, total: positions_reply(
        ledger, shown, _guarded("values", control.position_values), total=total))
    pnl = read("pnl", lambda shown, total: pnl_reply(
        ledger, shown, control.now(), total=accounts if total else ()))
    risk = read("risk", lambda shown, total: risk_reply(
        ledger, (*shown, ALL_ACCOUNTS) if total else shown, limits,
        _guarded("breakers", control.breaker_readings)))

    def stop(_args: tuple[str, ...]) -> str:
        done = control.halt(who())
        fresh = [a for a, new in done.items() if new]
        already = [a for a, new in done.items() if not new]
        lines = []
        if fresh:
            lines.append(f"New entries halted on {', '.join(fresh)}. Open positions are still "
                         "managed (exits continue).")
        if already:
            lines.append(f"Already halted by hand: {', '.join(already)}.")
        lines.append("Send /start to resume.")
        return text_reply("\n".join(lines), "Stopped")

    def start(_args: tuple[str, ...]) -> str:
        done = control.resume(who())
        lines = [f"{account}: reset {', '.join(names)}" if names
                 else f"{account}: nothing was halted" for account, names in done.items()]
        lines.append("New entries resume at the next tick. A breaker whose cause is still "
                     "there (a daily loss past its limit) trips again at the next check.")
        return text_reply("\n".join(lines), "Resumed")

    def closeall(_args: tuple[str, ...]) -> str:
        done = control.close_all(who())
        lines = [f"{account}: closing {n} open position{'' if n == 1 else 's'} and holdings"
                 for account, n in done.items()]
        lines.append("New entries are halted. Closing orders go out at the next tick; a "
                     "message follows when each account is flat. /start resumes entries.")
        return text_reply("\n".join(lines), "Closing all")

    def ack(_args: tuple[str, ...]) -> str:
        rows = control.ack_open()
        if not rows:
            return text_reply("No open alerts.")
        lines = [f"{r['severity']} {r['kind']}: {r['message']}" for r in rows]
        return text_reply("\n".join(lines),
                          f"Acknowledged {len(rows)} alert{'' if len(rows) == 1 else 's'}; "
                          "no more calls for them")

    return {"status": status, "positions": positions, "pnl": pnl, "risk": risk, "stop": stop,
            "start": start, "closeall": closeall, "ack": ack}


class _Channel(Protocol):
    def poll(self, offset: int | None = None, timeout_s: float = 30) -> list: ...

    def send(self, chat_id: int, html_text: str) -> int: ...


class BotLoop:
    """Answers the bot's messages on a daemon thread (see the module doc).

    ``step`` is one turn (poll, answer, save the offset) and is what tests drive; ``start``
    runs turns until ``stop``, which also closes the channel. The ledger is the loop's own
    connection.
    """

    def __init__(self, channel: _Channel, router: CommandRouter, ledger: Ledger, *,
                 poll_timeout_s: float = POLL_TIMEOUT_S, max_backoff_s: float = MAX_BACKOFF_S,
                 ) -> None:
        if poll_timeout_s < 0:
            raise DataError(f"poll_timeout_s must not be negative, got {poll_timeout_s}")
        self.channel = channel
        self.router = router
        self.ledger = ledger
        self.poll_timeout_s = float(poll_timeout_s)
        self.max_backoff_s = float(max_backoff_s)
        stored = ledger.get_state(OFFSET_KEY)
        self.offset: int | None = int(stored) if stored else None
        self.failures = 0
        self.dead: str | None = None  # why the loop gave up (a refused token)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self, timeout_s: float | None = None) -> float:
        """One poll and its answers; returns how long to wait before the next (0: at once)."""
        from thetadesk.adapters.telegram import TelegramRejected, dispatch_updates

        if self.dead is not None:
            return -1.0
        wait = self.poll_timeout_s if timeout_s is None else timeout_s
        try:
            offset = dispatch_updates(self.channel, self.router, self.offset, wait)
        except TelegramRejected as exc:
            self.dead = str(exc)
            _log().error("telegram_bot_stopped", reason=str(exc), what_to_do=(
                "check TELEGRAM_BOT_TOKEN (from @BotFather); commands are off until restart"))
            return -1.0
        except (TemporaryError, DataError) as exc:
            if self._stop.is_set():  # the channel was closed under the poll to end the loop
                return -1.0
            return self._backoff(exc)
        self.failures = 0
        if offset is not None and offset != self.offset:
            self.ledger.set_state(OFFSET_KEY, str(offset))
            self.offset = offset
        return 0.0

    def _backoff(self, exc: Exception) -> float:
        self.failures += 1
        if isinstance(exc, TemporaryError):
            told = getattr(exc, "retry_after_s", None)
            delay = float(told) if told else min(self.max_backoff_s, 2.0 ** self.failures)
            _log().warning("telegram_poll_failed", error=str(exc), retry_in_s=delay,
                           failures=self.failures)
            return delay
        # An unreadable reply (DataError): log it, poll again after a pause.
        delay = min(self.max_backoff_s, 2.0 ** self.failures)
        _log().error("telegram_poll_unusable", error=str(exc), retry_in_s=delay)
        return delay

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="telegram-bot", daemon=True)
        self._thread.start()

    def stop(self, join_s: float = 5.0) -> None:
        """End the loop: closing the channel cuts a long poll short. The loop owns the channel
        from construction on."""
        self._stop.set()
        close = getattr(self.channel, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # stopping anyway
                _log().warning("telegram_close_failed", error=str(exc))
        if self._thread is not None:
            self._thread.join(join_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = self.step()
            if delay < 0:
                return
            if delay:
                self._stop.wait(delay)
