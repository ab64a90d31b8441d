"""Failpoints for crash tests: kill this process with SIGKILL at a named point, once.

Set ``THETADESK_FAILPOINTS`` to a comma-separated list of names and ``THETADESK_FAILPOINT_DIR``
to a directory. The first process to reach a listed point creates ``<dir>/<name>.fired`` and
SIGKILLs itself; later processes pass. Unset (the normal case), ``hit`` does nothing.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def hit(name: str) -> None:
    names = os.environ.get("THETADESK_FAILPOINTS")
    if not names or name not in names.split(","):
        return
    directory = Path(os.environ.get("THETADESK_FAILPOINT_DIR", "."))
    marker = directory / f"{name}.fired"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.fsync(fd)
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
