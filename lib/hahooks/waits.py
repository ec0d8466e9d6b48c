"""Bounded waiting: the only place hahooks sleeps.

Polls start at 5 ms and back off to 40 ms, so a condition that becomes true is noticed
within ~50 ms (the seed scripts poll every 0.5-1 s after a fixed `sleep 3`).
"""
from __future__ import annotations

import os
import time
from typing import Callable, Iterable, TypeVar

from hahooks.errors import HahooksError, WaitTimeout

T = TypeVar("T")

FIRST_POLL = 0.005
MAX_POLL = 0.04


def wait_for(predicate: Callable[[], T], timeout: float, what: str, *,
             first: float = FIRST_POLL, ceiling: float = MAX_POLL) -> T:
    """Return the first truthy value of predicate(); raise WaitTimeout after `timeout` s."""
    deadline = time.monotonic() + timeout
    interval = first
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(what, timeout)
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, ceiling)


def wait_for_path(path: str, timeout: float) -> str:
    """Wait for a device node (or any path) to exist: `hastctl role primary` returns first."""
    wait_for(lambda: os.path.exists(path), timeout, f"{path} to appear")
    return path


def wait_for_paths(paths: Iterable[str], timeout: float) -> None:
    pending = list(paths)
    wait_for(lambda: all(os.path.exists(p) for p in pending), timeout,
             "devices to appear: " + " ".join(pending))


def retry(action: Callable[[], T], timeout: float, what: str, *,
          retry_on: tuple[type[BaseException], ...] = (HahooksError,),
          first: float = 0.02, ceiling: float = 0.5) -> T:
    """Call action() until it returns; on an exception in retry_on back off and try again
    until the deadline, then re-raise the last error (so the real reason is reported)."""
    deadline = time.monotonic() + timeout
    interval = first
    while True:
        try:
            return action()
        except retry_on:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            time.sleep(min(interval, remaining))
            interval = min(interval * 2, ceiling)


class Deadline:
    """One budget shared by several attempts ("bounded overall, not per attempt")."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self, floor: float = 0.0) -> float:
        return max(floor, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end
