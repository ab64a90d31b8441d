"""Shared by every test: nothing in the suite may reach the internet.

Vendor clients name their hosts (api.polygon.io, paper-api.alpaca.markets, api.twilio.com,
api.telegram.org); a test that forgot to point one at its local server would resolve that name.
Resolving any name but this machine's own fails the test at once, with the host in the message,
instead of leaking a request (or hanging on a sandbox without DNS). Ray and the local servers
use IP addresses and ``localhost``, which pass.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

_real_getaddrinfo = socket.getaddrinfo
_LOCAL_NAMES = {"localhost", "localhost.localdomain", socket.gethostname(), socket.getfqdn()}


class InternetAccessError(AssertionError):
    pass


def _is_local(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).strip("[]")
    if host in _LOCAL_NAMES:
        return True
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True  # a literal address: the tests' servers and Ray's own nodes


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host):
        raise InternetAccessError(f"a test tried to resolve {host!r}: nothing in the suite may "
                                  "reach the internet (point the client at a local server)")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def _no_internet():
    socket.getaddrinfo = _guarded_getaddrinfo
    yield
    socket.getaddrinfo = _real_getaddrinfo
