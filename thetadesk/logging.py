"""Structured logging for one ThetaDesk process: JSON lines on disk, readable lines on stderr.

Each process (the supervisor, every actor) calls ``configure_logging`` once with its own
``component`` name and writes its own file, ``<state_dir>/logs/<component>.jsonl``, so processes
never share a file. Every event is flushed to the operating system as it is written: a process
killed with SIGKILL loses at most the event it was writing.

Secrets never reach an output. Before either renderer runs, a processor replaces with ``***``

- the value of any key that names a secret (``api_key``, ``auth_token``, ``password``,
  ``account_sid``, ...), at any depth of nested dicts and lists, and
- every occurrence of a registered secret (``register_secret``; the config loader registers
  each value it interpolates from the environment) inside any string, exception text included.

Timestamps are the wall time of the log record, ISO 8601 UTC; times the trading logic reasons
about come from the injected ``Clock`` and are logged as fields.
"""

from __future__ import annotations

import atexit
import functools
import json
import re
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Literal

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

__all__ = ["LogLevel", "configure_logging", "get_logger", "register_secret", "shutdown_logging"]

LogLevel = Literal["debug", "info", "warning", "error"]

REDACTED = "***"
_MIN_SECRET_LENGTH = 4
_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Key names that hold secrets. "sid" (Twilio's account SID) counts only as a word of its own
# (sid, account_sid, accountSid): a bare substring match would hide every order's "side".
_SECRET_KEY = re.compile(
    r"(?i:secret|token|passw(?:or)?d|api_?key|auth|credential)"
    r"|(?<![A-Za-z])[Ss][Ii][Dd](?![a-z])"
    r"|(?<=[a-z])S(?:id|ID)(?![a-z])"
)


class _Secrets:
    """Registered secret values, matched longest first so no fragment of one survives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            ordered = sorted(self._values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(v) for v in ordered))


_SECRETS = _Secrets()


def register_secret(value: str) -> None:
    """Redact ``value`` wherever it appears in a logged string from now on.

    Values shorter than 4 characters are ignored: redacting them would mangle ordinary text.
    """
    if not isinstance(value, str):
        raise TypeError(f"a secret must be a str, got {type(value).__name__}")
    if len(value) >= _MIN_SECRET_LENGTH:
        _SECRETS.add(value)


def _redact(value: Any, pattern: re.Pattern[str] | None) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value) if pattern is not None else value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if _SECRET_KEY.search(str(k)) else _redact(v, pattern)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(_redact(v, pattern) for v in value)
    if value is None or isinstance(value, bool | int | float) or pattern is None:
        return value
    # Anything else is rendered through repr(); hide a secret that would show up there.
    text = repr(value)
    return pattern.sub(REDACTED, text) if pattern.search(text) else value


def _redact_processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return _redact(event_dict, _SECRETS.pattern)


class _State:
    """This process's logging targets; the processors read them at every event."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.component = "thetadesk"
        self.file: IO[str] | None = None
        self.path: Path | None = None
        self.console = True
        self.configured = False


_STATE = _State()


def _add_component(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict["component"] = _STATE.component
    return event_dict


class _Render:
    """Final processor: render the (already redacted) event once per output."""

    def __init__(self, colors: bool) -> None:
        self._json = structlog.processors.JSONRenderer(serializer=json.dumps)
        self._console = structlog.dev.ConsoleRenderer(colors=colors)

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> dict[str, Any]:
        line = self._json(logger, name, dict(event_dict)) if _STATE.file is not None else None
        text = self._console(logger, name, dict(event_dict)) if _STATE.console else None
        return {"line": line, "text": text}


class _Writer:
    """The wrapped logger: writes a rendered event to this process's file and stderr."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _write(self, line: str | None = None, text: str | None = None) -> None:
        with _STATE.lock:
            if line is not None and _STATE.file is not None:
                _STATE.file.write(line + "\n")
                _STATE.file.flush()
            if text is not None:
                # Looked up per event, so redirection of stderr (pytest's capsys) is honoured.
                sys.stderr.write(text + "\n")
                sys.stderr.flush()

    debug = info = warning = warn = error = critical = fatal = exception = msg = log = _write


@functools.cache
def _writer(name: str = "thetadesk") -> _Writer:
    return _Writer(name)


def _add_logger_name(logger: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    name = getattr(logger, "name", None)
    if name is not None:
        event_dict.setdefault("logger", name)
    return event_dict


def _install(state_dir: Path | None, component: str, level: str, console: bool) -> None:
    if level not in ("debug", "info", "warning", "error"):
        raise ValueError(f"log level must be one of debug, info, warning, error; got {level!r}")
    if not _COMPONENT.match(component):
        raise ValueError(f"component must match {_COMPONENT.pattern}, got {component!r}")
    path = None if state_dir is None else Path(state_dir) / "logs" / f"{component}.jsonl"
    with _STATE.lock:
        if path != _STATE.path:
            if _STATE.file is not None:
                _STATE.file.close()
                _STATE.file = None
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Line-buffered and flushed per event: a killed process loses at most one event.
                _STATE.file = path.open("a", encoding="utf-8", buffering=1)
            _STATE.path = path
        _STATE.component = component
        _STATE.console = console
        _STATE.configured = True
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_component,
            _add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            # Redact after everything that adds text (exception tracebacks included) and
            # before the renderers, so neither output can see a secret.
            _redact_processor,
            _Render(colors=console and sys.stderr.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_writer,
        context_class=dict,
        # Not cached: a logger obtained before configure_logging follows the final setup.
        cache_logger_on_first_use=False,
    )


def configure_logging(
    state_dir: Path | None, component: str, level: str = "info", console: bool = True
) -> None:
    """Set up structlog for this process.

    Events go as JSON lines to ``<state_dir>/logs/<component>.jsonl`` (directories created;
    no file when ``state_dir`` is None) and, when ``console`` is true, as readable lines to
    stderr. Every event carries ``component``, ``level`` and an ISO UTC ``timestamp``.
    ``level`` is one of debug, info, warning, error. Calling again replaces the previous setup
    (nothing is written twice); the file is kept open if its path is unchanged.
    """
    _install(state_dir, component, level, console)


def get_logger(name: str) -> FilteringBoundLogger:
    """A structlog logger whose events carry ``logger=name``.

    Before ``configure_logging`` runs in this process (and unless structlog was configured some
    other way, as ``structlog.testing.capture_logs`` does), events go to stderr only, redacted.
    """
    if not _STATE.configured and not structlog.is_configured():
        _install(None, "thetadesk", "info", True)
    return structlog.get_logger(name)


def shutdown_logging() -> None:
    """Close this process's log file; later events still reach the console, redacted.

    Runs at interpreter exit; tests call it to release the file.
    """
    with _STATE.lock:
        if _STATE.file is not None:
            _STATE.file.close()
        _STATE.file = None
        _STATE.path = None


atexit.register(shutdown_logging)
