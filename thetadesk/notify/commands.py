"""Operator commands from Telegram, handled without I/O: parsing, the allow-list, confirmations.

``CommandRouter.handle(chat_id, text)`` returns the reply to send (Telegram HTML) or ``None``.

* Only chat ids in ``allowed_chat_ids`` may command; anything else is ignored and logged with
  the chat id and the command name only (never the message text).
* ``/start`` and ``/closeall`` need confirmation: the first call replies "send /start confirm
  within 60 s"; ``/start confirm`` from the same chat within the window runs the handler. The
  clock is injected (monotonic seconds).
* ``/help`` lists the commands; an unknown command gets the help text too.
* Handlers are ``(args) -> str`` callables supplied by the caller (the supervisor wires the real
  ones); they return Telegram HTML, e.g. built with ``table_reply`` or ``text_reply``. A handler
  that raises gets a short failure reply; the error is logged. While a handler runs,
  ``router.chat_id`` is the chat that sent the command (who acted, for the ledger).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from thetadesk.logging import get_logger
from thetadesk.notify.format import format_table

__all__ = [
    "COMMANDS",
    "CONFIRM_COMMANDS",
    "CONFIRM_WINDOW_S",
    "CommandRouter",
    "Handler",
    "help_text",
    "parse_command",
    "table_reply",
    "text_reply",
]

Handler = Callable[[tuple[str, ...]], str]

# Name -> what it does, in the order /help lists them.
COMMANDS: dict[str, str] = {
    "status": "run state, breaker state, equity, today's P&L (/status ACCOUNT, /status all)",
    "positions": "open spreads with P&L and Greeks (/positions ACCOUNT, /positions all)",
    "pnl": "P&L today, this week, this month, by strategy (/pnl ACCOUNT, /pnl all)",
    "risk": "portfolio Greeks, VaR/ES, limit usage, breakers (/risk ACCOUNT, /risk all)",
    "stop": "halt new entries now",
    "start": "resume entries; resets a tripped breaker (asks for confirmation)",
    "closeall": "close every open position (asks for confirmation)",
    "ack": "acknowledge the open alerts (stops escalation)",
    "help": "this list",
}
# What a confirmed command will do, for its confirmation prompt.
_CONFIRM_PROMPTS = {
    "start": "Resume new entries and reset a tripped breaker",
    "closeall": "Close ALL open positions",
}
CONFIRM_COMMANDS = frozenset(_CONFIRM_PROMPTS)
CONFIRM_WINDOW_S = 60.0
CONFIRM_WORD = "confirm"


def _log() -> Any:
    return get_logger("thetadesk.notify.commands")


def parse_command(
    text: str, bot_username: str | None = None
) -> tuple[str, tuple[str, ...]] | None:
    """``"/Status@ThetaDeskBot SPY"`` -> ``("status", ("SPY",))``.

    Returns ``None`` for text that is not a command, and for a command addressed to another bot
    (``/cmd@OtherBot``) when ``bot_username`` is known. Names are lower-cased; arguments are
    split on whitespace and kept as sent.
    """
    words = text.split()
    if not words or not words[0].startswith("/") or len(words[0]) < 2:
        return None
    name, _, target = words[0][1:].partition("@")
    if not name:
        return None
    if target and bot_username is not None and target.lower() != bot_username.lower().lstrip("@"):
        return None
    return name.lower(), tuple(words[1:])


def text_reply(text: str, title: str | None = None) -> str:
    """Plain ``text`` escaped for Telegram HTML, under an optional bold ``title``."""
    body = html.escape(text, quote=False)
    return f"<b>{html.escape(title, quote=False)}</b>\n{body}" if title else body


def table_reply(title: str, rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A bold ``title`` over a ``format_table`` table in ``<pre>`` (monospace in Telegram)."""
    table = html.escape(format_table(rows, headers), quote=False)
    return f"<b>{html.escape(title, quote=False)}</b>\n<pre>{table}</pre>"


def help_text() -> str:
    rows = [[f"/{name}", what] for name, what in COMMANDS.items()]
    return table_reply("ThetaDesk commands", rows, ["command", "what it does"])


class CommandRouter:
    """Routes commands from allowed chats to ``handlers`` (command name without ``/`` -> handler).

    ``clock`` returns monotonic seconds (``time.monotonic`` by default); ``bot_username`` makes
    ``/cmd@OtherBot`` in a group chat go ignored.
    """

    def __init__(
        self,
        allowed_chat_ids: Collection[int],
        handlers: Mapping[str, Handler],
        *,
        clock: Callable[[], float] = time.monotonic,
        confirm_window_s: float = CONFIRM_WINDOW_S,
        bot_username: str | None = None,
    ) -> None:
        unknown = sorted(set(handlers) - set(COMMANDS))
        if unknown:
            raise ValueError(f"handlers for unknown commands: {unknown}")
        if "help" in handlers:
            raise ValueError("/help is built in")
        if confirm_window_s <= 0:
            raise ValueError(f"confirm_window_s must be positive, got {confirm_window_s}")
        self.allowed_chat_ids = frozenset(int(c) for c in allowed_chat_ids)
        self.handlers = dict(handlers)
        self.clock = clock
        self.confirm_window_s = confirm_window_s
        self.bot_username = bot_username
        self._pending: dict[tuple[int, str], float] = {}  # (chat, command) -> deadline
        # The chat whose command is being handled, for handlers that record who acted.
        self.chat_id: int | None = None

    def handle(self, chat_id: int, text: str) -> str | None:
        """The reply to ``text`` from ``chat_id``, or ``None`` if nothing should be sent."""
        parsed = parse_command(text, self.bot_username)
        if chat_id not in self.allowed_chat_ids:
            _log().warning("telegram message from unauthorized chat ignored", chat_id=chat_id,
                           command=parsed[0] if parsed else None)
            return None
        if parsed is None:
            return None
        name, args = parsed
        _log().info("telegram command", chat_id=chat_id, command=name)
        if name == "help":
            return help_text()
        if name not in COMMANDS:
            return text_reply(f"Unknown command /{name}.") + "\n" + help_text()
        if name in CONFIRM_COMMANDS:
            confirmed, args = self._confirm(chat_id, name, args)
            if not confirmed:
                return args[0]
        handler = self.handlers.get(name)
        if handler is None:
            return text_reply(f"/{name} is not available yet.")
        self.chat_id = chat_id
        try:
            return handler(args)
        except Exception as exc:  # a failing handler must not stop the command loop
            _log().error("telegram command failed", chat_id=chat_id, command=name,
                         error=str(exc), error_type=type(exc).__name__)
            return text_reply(f"/{name} failed ({type(exc).__name__}); see the logs.")
        finally:
            self.chat_id = None

    def _confirm(self, chat_id: int, name: str, args: tuple[str, ...]
                 ) -> tuple[bool, tuple[str, ...]]:
        """``(True, remaining args)`` to run the command, else ``(False, (reply,))``."""
        now = self.clock()
        key = (chat_id, name)
        window = f"{self.confirm_window_s:g}"
        if args and args[0].lower() == CONFIRM_WORD:
            deadline = self._pending.pop(key, None)
            if deadline is not None and now <= deadline:
                return True, args[1:]
            return False, (text_reply(
                f"Nothing to confirm (no /{name} in the last {window} s). "
                f"Send /{name} first."),)
        self._pending[key] = now + self.confirm_window_s
        return False, (text_reply(
            f"{_CONFIRM_PROMPTS[name]}? To confirm, send /{name} {CONFIRM_WORD} within "
            f"{window} s"),)
