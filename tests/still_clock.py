"""An emulator clock that stands still until a test moves it: answers that carry the time, and
delivery moved by exactly its delay, come out the same on every run."""

from __future__ import annotations

from datetime import datetime, timedelta

from fibo_soap.emulator.service import Clock


class StillClock(Clock):
    """The emulator's clock, standing at one instant until ``advance`` moves it."""

    def __init__(self, at: datetime) -> None:
        super().__init__()
        self._at = at

    def timestamp(self) -> float:
        return self._at.timestamp()

    def advance(self, seconds: float) -> None:
        self._at += timedelta(seconds=seconds)
