"""Telegram messages and operator commands, through the official ``python-telegram-bot`` client.

* ``TelegramSettings.from_env(env, allowed_chat_ids)`` reads ``TELEGRAM_BOT_TOKEN``; the numeric
  chat ids allowed to command the bot (and to receive alerts) come from the config. A missing
  token, or no allowed chat id, disables the channel: it returns ``None`` and logs ONE warning.
  A token of the wrong shape raises ``DataError`` (the message never contains the token). The
  token is registered with ``thetadesk.logging.register_secret``.
* ``TelegramChannel.send`` calls ``sendMessage`` (``parse_mode=HTML``) and returns the message id;
  ``TelegramChannel.poll`` long-polls ``getUpdates`` and returns ``IncomingMessage`` tuples.
* ``dispatch_updates`` is one turn of the command loop: poll, route every message through a
  ``CommandRouter`` (``thetadesk.notify.commands``), send the replies, return the next offset.
* Errors are classified: 429 (``RetryAfter``, carrying ``retry_after_s``), 5xx, 409 (another
  poller, usually a restart overlapping the old process), timeouts and connection errors raise
  ``TemporaryError``; 400, 401, 403 and 404 raise ``TelegramRejected`` (a ``DataError``). No error
  text and no log event contains the token.

Sync facade. python-telegram-bot is asyncio-only, and its ``httpx.AsyncClient`` connection pool
belongs to the event loop it was first used on. ``asyncio.run`` per call would create and close a
loop every call, leaving the pooled connections tied to a dead loop ("Event loop is closed" on the
next call), and it cannot be called at all from a thread that already runs a loop (an async Ray
actor). So each channel owns one private event loop on a daemon thread (``_LoopThread``); every
sync method submits its coroutine with ``asyncio.run_coroutine_threadsafe`` and waits for the
result with a deadline. It works from any thread, including several at once (the coroutines
interleave on the one loop), and ``close`` shuts the HTTP pools down on that same loop before it
stops it.

Both the Bot API URL (``.../bot<token>/sendMessage``) and the debug logs of ``httpx`` and
python-telegram-bot contain the token, so a redacting filter is attached to their loggers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import threading
from collections.abc import Awaitable, Collection, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest

from thetadesk.errors import DataError, TemporaryError
from thetadesk.logging import get_logger, register_secret

__all__ = [
    "IncomingMessage",
    "TelegramChannel",
    "TelegramRejected",
    "TelegramSettings",
    "TelegramTemporaryError",
    "dispatch_updates",
]

ENV_BOT_TOKEN = "TELEGRAM_BOT_TOKEN"
DEFAULT_BASE_URL = "https://api.telegram.org/bot"
# "<bot id>:<secret>": the id is numeric, the secret (35 characters today) is URL-safe base64.
# The vendor samples' "123456:TEST" is deliberately rejected: it is not a real token's shape.
_TOKEN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{30,64}$")
_REDACTED = "***"
_T = TypeVar("_T")

# Opt in to python-telegram-bot's future behaviour (time periods as ``timedelta``): without it,
# building a ``RetryAfter`` on every 429 emits a PTBDeprecationWarning (v22.2+). An explicit
# setting by the operator wins.
os.environ.setdefault("PTB_TIMEDELTA", "1")


def _log() -> Any:
    # Looked up per call so that structlog.testing.capture_logs sees the events.
    return get_logger("thetadesk.adapters.telegram")


@dataclass(frozen=True)
class TelegramSettings:
    """A validated bot token and the chat ids allowed to command. ``repr`` hides the token."""

    bot_token: str
    allowed_chat_ids: frozenset[int]

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.bot_token):
            raise DataError(
                f"{ENV_BOT_TOKEN} must look like '<digits>:<30-64 letters, digits, _ or ->' "
                f"(got {len(self.bot_token)} characters)"
            )
        if not self.allowed_chat_ids:
            raise DataError("Telegram needs at least one allowed chat id")
        for chat_id in self.allowed_chat_ids:
            if isinstance(chat_id, bool) or not isinstance(chat_id, int):
                raise DataError(f"Telegram chat id {chat_id!r} is not an integer")
        register_secret(self.bot_token)

    def __repr__(self) -> str:
        return (f"TelegramSettings(bot_token='{_REDACTED}', "
                f"allowed_chat_ids={sorted(self.allowed_chat_ids)!r})")

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] = os.environ, allowed_chat_ids: Collection[int] = ()
    ) -> TelegramSettings | None:
        """Settings from ``TELEGRAM_BOT_TOKEN`` and the configured chat ids, or ``None`` and one
        warning if the token is missing or no chat id is configured.

        Raises ``DataError`` for a malformed token or a chat id that is not an integer.
        """
        token = env.get(ENV_BOT_TOKEN) or ""
        missing = []
        if not token.strip():
            missing.append(ENV_BOT_TOKEN)
        if not allowed_chat_ids:
            missing.append("allowed_chat_ids")
        if missing:
            _log().warning("telegram channel disabled: missing settings", missing=missing)
            return None
        return cls(bot_token=token, allowed_chat_ids=frozenset(allowed_chat_ids))


class TelegramRejected(DataError):
    """Telegram refused a request for good (400, 401, 403, 404): do not retry it."""

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason  # the python-telegram-bot exception name: BadRequest, InvalidToken…
        super().__init__(message)


class TelegramTemporaryError(TemporaryError):
    """A transient Telegram failure; ``retry_after_s`` is set when Telegram said how long."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class IncomingMessage(NamedTuple):
    """One update from ``getUpdates``. ``chat_id``/``text`` are ``None`` for updates without a
    text message; their ``update_id`` still moves the offset on."""

    update_id: int
    chat_id: int | None
    text: str | None


class _TokenFilter(logging.Filter):
    """Replaces the token in a stdlib log record (httpx logs every request URL)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        if self.token in message:
            record.msg = message.replace(self.token, _REDACTED)
            record.args = None
        return True


_FILTERED_LOGGERS = ("httpx", "httpcore", "telegram", "telegram.Bot", "telegram.ext.ExtBot",
                     "telegram.request.BaseRequest", "telegram.request.HTTPXRequest")


class _LoopThread:
    """A private asyncio event loop running on a daemon thread."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[_T], timeout_s: float) -> _T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("TelegramChannel's sync methods cannot be called from its loop")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        try:
            return future.result(timeout_s)
        except FutureTimeout:
            future.cancel()
            raise TelegramTemporaryError(
                f"Telegram call did not finish within {timeout_s:g} s") from None

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class TelegramChannel:
    """Sends HTML messages and polls for updates as the bot named by ``settings``.

    ``base_url`` replaces ``https://api.telegram.org/bot`` (the token is appended to it, or put
    where ``{token}`` stands). ``timeout_s`` bounds connecting, writing and reading one request;
    a long poll reads for ``timeout_s`` more than its own timeout.
    """

    def __init__(
        self, settings: TelegramSettings, base_url: str | None = None, timeout_s: float = 10
    ) -> None:
        if timeout_s <= 0:
            raise DataError(f"timeout_s must be positive, got {timeout_s}")
        self.settings = settings
        self._token = settings.bot_token
        self._timeout_s = float(timeout_s)
        httpx_kwargs = {"trust_env": False} if base_url is not None else None
        # Two request objects, as python-telegram-bot recommends: a long poll must not hold the
        # connection a sendMessage needs.
        self._requests = [
            HTTPXRequest(connection_pool_size=1, read_timeout=timeout_s, write_timeout=timeout_s,
                         connect_timeout=timeout_s, pool_timeout=timeout_s,
                         httpx_kwargs=httpx_kwargs)
            for _ in range(2)
        ]
        self._filter = _TokenFilter(self._token)
        for name in _FILTERED_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        self._bot = Bot(self._token, base_url=base_url or DEFAULT_BASE_URL,
                        request=self._requests[0], get_updates_request=self._requests[1])
        self._loop = _LoopThread("telegram-channel")
        self._closed = False

    def __repr__(self) -> str:
        return f"TelegramChannel({self.settings!r})"

    def send(self, chat_id: int, html_text: str) -> int:
        """Send ``html_text`` (Telegram HTML: only ``<``, ``>``, ``&`` escaped) to ``chat_id``;
        returns the sent message's id."""
        message = self._call(self._bot.send_message(
            chat_id=chat_id, text=html_text, parse_mode=ParseMode.HTML))
        return int(message.message_id)

    def poll(self, offset: int | None = None, timeout_s: float = 30) -> list[IncomingMessage]:
        """Long-poll ``getUpdates`` for messages after ``offset`` (the last ``update_id`` + 1),
        waiting up to ``timeout_s`` seconds for one to arrive."""
        if timeout_s < 0:
            raise DataError(f"poll timeout_s must not be negative, got {timeout_s}")
        wait = int(timeout_s)
        updates = self._call(
            self._bot.get_updates(offset=offset, timeout=wait, allowed_updates=["message"],
                                  read_timeout=self._timeout_s + wait),
            extra_s=wait,
        )
        out = []
        for update in updates:
            message = update.effective_message
            chat = update.effective_chat
            out.append(IncomingMessage(
                update_id=int(update.update_id),
                chat_id=int(chat.id) if chat is not None else None,
                text=message.text if message is not None else None,
            ))
        return out

    def close(self) -> None:
        """Close the HTTP connection pools and stop the private event loop."""
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._shutdown(), self._timeout_s)
        finally:
            self._loop.close()
            for name in _FILTERED_LOGGERS:
                logging.getLogger(name).removeFilter(self._filter)

    def __enter__(self) -> TelegramChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _shutdown(self) -> None:
        for request in self._requests:
            await request.shutdown()

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, _REDACTED)

    def _call(self, coro: Awaitable[_T], extra_s: float = 0) -> _T:
        # Errors are re-raised "from None": the library's exception chain can hold the URL.
        if self._closed:
            if asyncio.iscoroutine(coro):
                coro.close()
            raise DataError("TelegramChannel is closed")
        try:
            # A margin over httpx's own timeouts, so they (not this guard) normally fire.
            return self._loop.run(coro, 4 * self._timeout_s + extra_s + 1)
        except RetryAfter as exc:
            retry_after = _retry_after_s(exc)
            raise TelegramTemporaryError(
                self._scrub(f"Telegram flood control: retry after {retry_after:g} s"),
                retry_after_s=retry_after,
            ) from None
        except (BadRequest, InvalidToken, Forbidden) as exc:
            # BadRequest is a NetworkError subclass, so this clause must come first.
            kind = type(exc).__name__
            raise TelegramRejected(
                self._scrub(f"Telegram refused the request ({kind}): {exc}"), reason=kind
            ) from None
        except (NetworkError, Conflict) as exc:  # 5xx, other codes, timeouts, connection errors
            kind = type(exc).__name__
            raise TelegramTemporaryError(
                self._scrub(f"Telegram request failed ({kind}): {exc}")) from None
        except TelegramError as exc:  # an unreadable reply, a migrated chat
            kind = type(exc).__name__
            raise DataError(self._scrub(f"unusable Telegram reply ({kind}): {exc}")) from None


def _retry_after_s(exc: RetryAfter) -> float:
    # ``retry_after`` is a timedelta with PTB_TIMEDELTA set, an int (with a warning) without.
    value = getattr(exc, "_retry_after", None)  # the timedelta behind it, warning-free
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    match = re.search(r"(\d+(?:\.\d+)?) seconds", str(exc))
    return float(match.group(1)) if match else 0.0


class CommandHandler(Protocol):
    def handle(self, chat_id: int, text: str) -> str | None: ...


def dispatch_updates(
    channel: TelegramChannel, router: CommandHandler, offset: int | None, timeout_s: float = 30
) -> int | None:
    """One turn of the command loop: poll, route each text message, send each reply to the
    chat it came from. Returns the offset for the next call (unchanged if nothing arrived).

    A failure to send one reply is logged (without the text) and does not stop the others;
    ``poll``'s errors propagate to the caller's retry policy.
    """
    for update in channel.poll(offset, timeout_s):
        offset = update.update_id + 1
        if update.chat_id is None or update.text is None:
            continue
        reply = router.handle(update.chat_id, update.text)
        if reply is None:
            continue
        try:
            channel.send(update.chat_id, reply)
        except (TemporaryError, DataError) as exc:
            _log().error("telegram reply not sent", chat_id=update.chat_id,
                         error=str(exc), error_type=type(exc).__name__)
    return offset
