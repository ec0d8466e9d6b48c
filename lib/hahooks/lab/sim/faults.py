"""Fault injection and fixed latencies, read from faults.json by every simulated command.

A rule matches a command line ("hastctl role primary r0": the tool name and its arguments
joined by spaces) with fnmatch, optionally on one node only, a limited number of times.
Internal events use the same mechanism with their own names: "hastd: r0 (primary)" is the
primary worker starting (fail=75 restarts it, another code sends the role back to init as
hastd does, hang=True means the worker never creates the device).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import time

FAULTS = "faults.json"
FAULTS_LOCK = "faults.lock"
HANG_STEP = 3600.0


def _path(root: str, name: str = FAULTS) -> str:
    return os.path.join(root, name)


def load(root: str) -> dict:
    if not os.path.exists(_path(root)):
        return {"rules": [], "latency": []}
    try:
        with open(_path(root)) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"rules": [], "latency": []}


@contextlib.contextmanager
def editing(root: str):
    fd = os.open(_path(root, FAULTS_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = load(root)
        yield data
        tmp = _path(root, f".{FAULTS}.{os.getpid()}")
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, _path(root))
    finally:
        os.close(fd)


def _matches(rule: dict, cmdline: str, node: str) -> bool:
    if rule.get("node") not in (None, node):
        return False
    import fnmatch   # only when rules exist: most commands of a benchmark have none
    return fnmatch.fnmatchcase(cmdline, rule["pattern"])


def latency_for(data: dict, cmdline: str, node: str) -> float:
    """The fixed latency of set_latency(): the first matching pattern, in definition order."""
    for rule in data.get("latency", []):
        if _matches(rule, cmdline, node):
            return float(rule["seconds"])
    return 0.0


def take(root: str, cmdline: str, node: str) -> dict | None:
    """The first live injected fault matching this command, with its use counted."""
    data = load(root)
    if not any(_matches(r, cmdline, node) for r in data.get("rules", [])):
        return None
    with editing(root) as data:
        for rule in data["rules"]:
            if not _matches(rule, cmdline, node):
                continue
            if rule.get("times") is not None and rule.get("used", 0) >= rule["times"]:
                continue
            rule["used"] = rule.get("used", 0) + 1
            return dict(rule)
    return None


class Outcome:
    """What the fault layer decided before the tool runs."""

    def __init__(self, rule: dict | None = None, latency: float = 0.0):
        self.rule = rule                       # the injected rule that fired, if any
        self.latency = latency                 # seconds slept before the tool ran

    @property
    def hang(self) -> bool:
        return bool(self.rule and self.rule.get("hang"))

    @property
    def fail_before(self) -> bool:
        return bool(self.rule and self.rule.get("fail") is not None and not self.rule.get("apply"))

    @property
    def fail_after(self) -> bool:
        return bool(self.rule and self.rule.get("fail") is not None and self.rule.get("apply"))


def before(root: str, cmdline: str, node: str) -> Outcome:
    """Apply the rules to one command (also used by the drill's shims over real tools):
    sleep its latency, hang until killed, or print and exit with the injected failure.
    Returns when the command should run; with an `apply=True` rule the caller runs it and
    then calls emit_failure(outcome.rule)."""
    outcome = decide(root, cmdline, node)
    if outcome.hang:
        hang()
    if outcome.fail_before:
        emit_failure(outcome.rule)
    return outcome


def decide(root: str, cmdline: str, node: str) -> Outcome:
    """Sleep the command's latency and pick the injected fault that applies, if any."""
    data = load(root)
    delay = latency_for(data, cmdline, node)
    rule = take(root, cmdline, node) if data.get("rules") else None
    if rule:
        delay += float(rule.get("latency") or 0.0)
    if delay > 0:
        time.sleep(delay)
    return Outcome(rule, delay)


def emit_failure(rule: dict) -> None:
    if rule.get("stdout"):
        sys.stdout.write(rule["stdout"])
    if rule.get("stderr"):
        sys.stderr.write(rule["stderr"])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(rule["fail"]))


def hang() -> None:
    """Block until killed, like a command stuck in the kernel (SIGTERM/SIGKILL end it)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        time.sleep(HANG_STEP)
