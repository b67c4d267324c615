"""Ctrl-C and SIGTERM during training: a flag the loop checks after each step (it then saves a checkpoint
and raises errors.Interrupted), instead of an exception at an arbitrary point of a step."""

from __future__ import annotations

import signal
import threading


class StopFlag:
    """SIGINT/SIGTERM set ``signum``; the previous handlers come back on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
