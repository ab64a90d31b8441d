"""Importing alpaca-py quietly.

alpaca-py 0.44 imports ``websockets.legacy`` (deprecated since websockets 14) when its trading
and data packages load; the DeprecationWarning is about alpaca-py, not ThetaDesk, and would fail
strict test runs (``filterwarnings = error``). ``sdk_import()`` silences exactly that warning,
for the duration of the imports only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sdk_import() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"websockets\.legacy")
        warnings.filterwarnings("ignore", message=r"websockets\.legacy is deprecated")
        yield
