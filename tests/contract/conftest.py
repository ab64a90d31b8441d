"""Shared by the contract tests."""

import pytest

from tests.fakes.clock import FakeTime


@pytest.fixture
def fake_time() -> FakeTime:
    """The budget's and cache's clock: moves only when the adapter sleeps or a test says."""
    return FakeTime(1000.0)
