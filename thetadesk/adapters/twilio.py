"""Twilio SMS and voice-call alerts, through the official ``twilio`` client.

* ``TwilioSettings.from_env`` reads ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``,
  ``TWILIO_FROM_NUMBER`` and ``TWILIO_TO_NUMBERS`` (comma-separated E.164). Missing variables
  disable the channel: it returns ``None`` and logs ONE warning naming them. Values that are
  present but malformed raise ``DataError`` (the message never contains the token).
* ``TwilioChannel.send_sms`` posts ``Messages.json`` (``messages.create``);
  ``TwilioChannel.call`` posts ``Calls.json`` (``calls.create``) with TwiML built by
  ``VoiceResponse().say(text)``, so the alert text is XML-escaped.
* Errors are classified: 5xx, 429, timeouts and connection errors raise ``TemporaryError``;
  any other 4xx raises ``TwilioRejected`` (a ``DataError``) carrying the HTTP status and the
  Twilio error code. No error text and no log event contains the auth token.
* ``send_with_retry`` retries ``TemporaryError`` with jittered backoff (sleep injectable) and
  returns a ``DeliveryResult`` (delivered / failed, attempts, last error) instead of raising.

``base_url`` points the client at another host (a local contract-test server): the requests go
through ``_RebasingHttpClient``, a ``TwilioHttpClient`` (the client's documented ``http_client``
hook) that keeps the path and query the SDK built and swaps only scheme and host. Unlike
overwriting ``client.api.base_url``, this holds whatever ``TWILIO_EDGE``/``TWILIO_REGION`` do to
the host name, and it covers every Twilio domain.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from thetadesk.errors import DataError, TemporaryError, ThetaDeskError
from thetadesk.logging import get_logger, register_secret

__all__ = [
    "DeliveryResult",
    "TwilioChannel",
    "TwilioRejected",
    "TwilioSettings",
    "send_with_retry",
]

ENV_ACCOUNT_SID = "TWILIO_ACCOUNT_SID"
ENV_AUTH_TOKEN = "TWILIO_AUTH_TOKEN"
ENV_FROM_NUMBER = "TWILIO_FROM_NUMBER"
ENV_TO_NUMBERS = "TWILIO_TO_NUMBERS"
_ENV_VARS = (ENV_ACCOUNT_SID, ENV_AUTH_TOKEN, ENV_FROM_NUMBER, ENV_TO_NUMBERS)

# An account SID is "AC" followed by 32 hex digits; E.164 is "+", no leading 0, at most 15 digits.
_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_REDACTED = "***"


def _log() -> Any:
    # Looked up per call so that structlog.testing.capture_logs sees the events.
    return get_logger("thetadesk.adapters.twilio")


def _check_e164(number: str, what: str) -> str:
    if not _E164.fullmatch(number):
        raise DataError(f"{what} {number!r} is not an E.164 phone number (like +15558675310)")
    return number


@dataclass(frozen=True)
class TwilioSettings:
    """Validated Twilio credentials and numbers. ``repr`` never shows the auth token."""

    account_sid: str
    auth_token: str
    from_number: str
    to_numbers: tuple[str, ...]

    def __post_init__(self) -> None:
        if not _ACCOUNT_SID.fullmatch(self.account_sid):
            shown = self.account_sid[:2] + "…" if self.account_sid else "''"
            raise DataError(
                f"{ENV_ACCOUNT_SID} must be 'AC' followed by 32 hex digits "
                f"(got {len(self.account_sid)} characters starting {shown})"
            )
        if not self.auth_token or self.auth_token != self.auth_token.strip():
            raise DataError(f"{ENV_AUTH_TOKEN} is empty or has surrounding whitespace")
        _check_e164(self.from_number, ENV_FROM_NUMBER)
        if not self.to_numbers:
            raise DataError(f"{ENV_TO_NUMBERS} names no phone number")
        for number in self.to_numbers:
            _check_e164(number, f"{ENV_TO_NUMBERS} entry")
        register_secret(self.auth_token)

    def __repr__(self) -> str:
        return (
            f"TwilioSettings(account_sid={self.account_sid!r}, auth_token='{_REDACTED}', "
            f"from_number={self.from_number!r}, to_numbers={self.to_numbers!r})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TwilioSettings | None:
        """Settings from the environment, or ``None`` (one warning) if any variable is missing.

        Raises ``DataError`` when all variables are present but one is malformed.
        """
        values = {name: (env.get(name) or "").strip() for name in _ENV_VARS}
        missing = [name for name, value in values.items() if not value]
        if missing:
            _log().warning(
                "twilio channel disabled: missing environment variables",
                missing=missing,
            )
            return None
        to_numbers = tuple(n.strip() for n in values[ENV_TO_NUMBERS].split(",") if n.strip())
        return cls(
            account_sid=values[ENV_ACCOUNT_SID],
            auth_token=env[ENV_AUTH_TOKEN],  # unstripped: whitespace is an error, not trimmed
            from_number=values[ENV_FROM_NUMBER],
            to_numbers=to_numbers,
        )


class TwilioRejected(DataError):
    """Twilio refused a request for good (4xx other than 429): do not retry it."""

    def __init__(self, message: str, *, status: int | None, code: int | None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class _RebasingHttpClient(TwilioHttpClient):
    """``TwilioHttpClient`` with a default timeout that can send every request to another host.

    The path and query stay exactly as the SDK built them (``/2010-04-01/Accounts/…``).
    """

    def __init__(self, timeout: float, base_url: str | None) -> None:
        super().__init__(timeout=timeout)
        self._base: tuple[str, str] | None = None
        if base_url is not None:
            parts = urlsplit(base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise DataError(f"base_url {base_url!r} must look like http://host:port")
            self._base = (parts.scheme, parts.netloc)
            if self.session is not None:
                # A test or private endpoint: no proxies or .netrc from the environment.
                self.session.trust_env = False

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if self._base is not None:
            parts = urlsplit(url)
            url = urlunsplit((*self._base, parts.path, parts.query, parts.fragment))
        return super().request(method, url, *args, **kwargs)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


class TwilioChannel:
    """Sends SMS and voice-call alerts from ``settings.from_number``."""

    def __init__(
        self, settings: TwilioSettings, base_url: str | None = None, timeout_s: float = 10
    ) -> None:
        if timeout_s <= 0:
            raise DataError(f"timeout_s must be positive, got {timeout_s}")
        self.settings = settings
        self._token = settings.auth_token
        self._http = _RebasingHttpClient(timeout=timeout_s, base_url=base_url)
        self._client = Client(
            username=settings.account_sid,
            password=settings.auth_token,
            account_sid=settings.account_sid,
            http_client=self._http,
        )

    def __repr__(self) -> str:
        return f"TwilioChannel({self.settings!r})"

    def send_sms(self, to: str, text: str) -> str:
        """Send ``text`` to ``to`` by SMS; returns the Message SID (``SM…``)."""
        _check_e164(to, "SMS recipient")
        message = self._create(
            lambda: self._client.messages.create(
                to=to, from_=self.settings.from_number, body=text
            )
        )
        return str(message.sid)

    def call(self, to: str, text: str) -> str:
        """Call ``to`` and speak ``text``; returns the Call SID (``CA…``)."""
        _check_e164(to, "call recipient")
        response = VoiceResponse()
        response.say(text)  # ElementTree escapes <, > and & in the spoken text
        twiml = response.to_xml(xml_declaration=False)
        created = self._create(
            lambda: self._client.calls.create(
                to=to, from_=self.settings.from_number, twiml=twiml
            )
        )
        return str(created.sid)

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> TwilioChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, _REDACTED) if self._token else text

    def _create(self, fn: Callable[[], Any]) -> Any:
        # Errors are re-raised "from None": the SDK's exception holds the server's raw body.
        try:
            return fn()
        except (TwilioRestException, TwilioServiceException) as exc:
            status = exc.status
            code = exc.code
            detail = exc.msg if isinstance(exc, TwilioRestException) else exc.detail
            message = self._scrub(f"Twilio HTTP {status}, error {code}: {detail}")
            if status is None or status >= 500 or status == 429:
                raise TemporaryError(message) from None
            raise TwilioRejected(message, status=status, code=code) from None
        except requests.Timeout as exc:
            raise TemporaryError(self._scrub(f"Twilio request timed out: {exc}")) from None
        except requests.RequestException as exc:
            # Connection refused or reset, DNS, a truncated body: all worth another try.
            kind = type(exc).__name__
            raise TemporaryError(self._scrub(f"Twilio request failed ({kind}): {exc}")) from None
        except (TwilioException, ValueError) as exc:
            # A 2xx whose body the SDK could not read.
            raise DataError(self._scrub(f"unusable Twilio reply: {exc}")) from None


@dataclass(frozen=True)
class DeliveryResult:
    """What became of one alert: ``sid`` on success, the last error's text on failure."""

    status: Literal["delivered", "failed"]
    attempts: int
    sid: str | None = None
    error: str | None = None
    error_type: str | None = None


def send_with_retry(
    fn: Callable[[], str],
    *,
    attempts: int = 3,
    backoff_s: tuple[float, ...] = (1.0, 4.0),
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
    what: str = "twilio alert",
) -> DeliveryResult:
    """Call ``fn`` (e.g. ``lambda: channel.send_sms(to, text)``) until it returns a SID.

    ``TemporaryError`` is retried: before attempt ``n + 1`` it sleeps ``backoff_s[n - 1]`` (the
    last entry repeats) plus up to 25 % jitter (``jitter()`` returns a fraction in [0, 1)). Any
    other ``ThetaDeskError`` (a 4xx rejection, a bad number) fails at once. The result is never
    an exception: the caller records it. Other exceptions (bugs) propagate.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    if not backoff_s:
        raise ValueError("backoff_s must name at least one delay")
    log = _log()
    last: ThetaDeskError | None = None
    for attempt in range(1, attempts + 1):
        try:
            sid = fn()
        except TemporaryError as exc:
            last = exc
            if attempt == attempts:
                break
            base = backoff_s[min(attempt - 1, len(backoff_s) - 1)]
            delay = base * (1.0 + 0.25 * jitter())
            log.warning(
                "twilio delivery attempt failed, retrying",
                what=what, attempt=attempt, attempts=attempts, retry_in_s=round(delay, 3),
                error=str(exc),
            )
            sleep(delay)
        except ThetaDeskError as exc:
            log.error(
                "twilio delivery rejected", what=what, attempt=attempt, error=str(exc),
                error_type=type(exc).__name__,
            )
            return DeliveryResult("failed", attempt, error=str(exc),
                                  error_type=type(exc).__name__)
        else:
            return DeliveryResult("delivered", attempt, sid=sid)
    assert last is not None
    log.error(
        "twilio delivery failed", what=what, attempts=attempts, error=str(last),
        error_type=type(last).__name__,
    )
    return DeliveryResult("failed", attempts, error=str(last), error_type=type(last).__name__)
