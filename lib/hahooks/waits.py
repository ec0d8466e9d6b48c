"""Bounded waiting: the only place hahooks sleeps.

Polls start at 5 ms and back off to 40 ms (FIRST_POLL, MAX_POLL), so a condition that becomes
true is noticed within about one MAX_POLL (bench part 6 measures it: docs/performance.md); the
seed scripts poll every 0.5-1 s after a fixed `sleep 3`.

A wait (or a command, runner.py) that lasts tells people it is still going: after
PROGRESS_EVERY seconds and every PROGRESS_EVERY after, one record (event `wait_progress`,
what, waited, limit) goes to the JSON log and, only when stderr is a terminal, to stderr
(logs.py keeps it off syslog and off a daemon's stderr): a HAST peer leaving primary, a
gmirror rebuild, a long fsck or a device that is slow to appear no longer look like a hang.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Iterable, TypeVar

from hahooks.errors import HahooksError, WaitTimeout

T = TypeVar("T")

FIRST_POLL = 0.005
MAX_POLL = 0.04
# a device node appearing: one stat a look, so look every 5 ms; it is on the critical path
# of every master (the layer above waits for it)
STAT_POLL = 0.005
PROGRESS_EVERY = 5.0   # seconds: a line this often during a long wait

log = logging.getLogger("hahooks.waits")


class Progress:
    """Says "still waiting for X (Ns of Ts)" every `every` seconds of a wait. tick() from a
    poll loop; `with progress.ticking():` around a blocking call (a thread ticks)."""

    def __init__(self, what: str, limit: float | None = None, every: float | None = None,
                 detail: Callable[[], str] | None = None):
        self.what, self.limit, self.detail = what, limit, detail
        # HAHOOKS_PROGRESS_EVERY (seconds) shortens it for a demonstration or a test
        self.every = every if every is not None else float(
            os.environ.get("HAHOOKS_PROGRESS_EVERY") or PROGRESS_EVERY)
        self.started = time.monotonic()
        self.next = self.started + self.every

    def tick(self) -> None:
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + self.every
        waited = now - self.started
        try:
            extra = self.detail() if self.detail else ""
        except Exception as exc:   # a progress line must never break the wait it reports
            extra = f"({type(exc).__name__})"
        of = f" of {self.limit:.0f}s" if self.limit is not None else ""
        log.info("still waiting for %s (%.0fs%s)%s", self.what, waited, of,
                 f": {extra}" if extra else "",
                 extra={"event": "wait_progress", "progress": True, "what": self.what,
                        "waited": round(waited, 1), "limit": self.limit, "detail": extra})

    def ticking(self):
        return _Ticker(self)


class _Ticker:
    def __init__(self, progress: Progress):
        self.progress = progress
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="progress")

    def _run(self) -> None:
        while not self.stop.wait(max(0.0, self.progress.next - time.monotonic())):
            self.progress.tick()

    def __enter__(self):
        self.thread.start()
        return self.progress

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def wait_for(predicate: Callable[[], T], timeout: float, what: str, *,
             first: float = FIRST_POLL, ceiling: float = MAX_POLL,
             detail: Callable[[], str] | None = None) -> T:
    """Return the first truthy value of predicate(); raise WaitTimeout after `timeout` s.
    A long wait reports progress (Progress; `detail` adds e.g. a rebuild's percent)."""
    deadline = time.monotonic() + timeout
    interval = first
    progress = Progress(what, timeout, detail=detail)
    while True:
        value = predicate()
        if value:
            return value
        progress.tick()
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
    progress = Progress(what, timeout)
    while True:
        try:
            return action()
        except retry_on:
            progress.tick()
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
