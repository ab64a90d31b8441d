"""A monotonic clock for tests: it moves only when the code under test sleeps (or a test
moves it), and it records the sleeps, so tests assert on waits, never on wall time."""

from __future__ import annotations


class FakeTime:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
