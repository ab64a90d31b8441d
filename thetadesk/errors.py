"""ThetaDesk's exception tree. The kind of an error names the policy its caller applies.

    ThetaDeskError
     ├── ConfigError          the configuration is wrong: print path and reason, exit 2
     │                        before trading
     ├── DataError            an input (quote, chain, symbol, vendor reply) is unusable:
     │                        reject that input, log it, carry on
     ├── TemporaryError       network, 429, 5xx, timeout: retry with jittered backoff, then escalate
     ├── OrderRejected        the broker definitively refused an order: record, notify, no retry
     ├── AmbiguousOrderState  we do not know whether an order landed: resolve by client order id
     └── OperationalError     a person must step in: trip a breaker, halt entries, alert

Catch the narrowest kind that a step can handle; let the rest reach the loop that owns the policy.
"""

from __future__ import annotations


class ThetaDeskError(Exception):
    """Base of every error ThetaDesk raises on purpose."""


class ConfigError(ThetaDeskError):
    """The configuration is wrong. `path` is the YAML path of the offending value, if known."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class DataError(ThetaDeskError, ValueError):
    """An input is unusable: reject it, log it, and carry on without trading on it."""


class TemporaryError(ThetaDeskError):
    """A transient failure (network, rate limit, 5xx, timeout) worth retrying with backoff."""


class OrderRejected(ThetaDeskError):
    """The broker definitively refused an order. Record it and notify; never retry blindly."""


class AmbiguousOrderState(ThetaDeskError):
    """Whether an order reached the broker is unknown: look it up by client order id."""


class OperationalError(ThetaDeskError):
    """Something a person must look at: trip a breaker, halt new entries, alert."""
