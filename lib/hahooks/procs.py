"""Processes: lookup by title, terminate-then-kill (psutil). Which processes hold a mount:
holderscan.py.

psutil is imported lazily so hooks that only record a desire stay fast (its import cost:
docs/performance.md).
"""
from __future__ import annotations

import logging
import os

from hahooks import waits
from hahooks.errors import WaitTimeout

log = logging.getLogger("hahooks.procs")


def _psutil():
    import psutil

    return psutil


def title(proc) -> str:
    """The joined cmdline: psutil splits an overwritten argv ("hastd: r0 (secondary)") on spaces,
    and name() is cut to 15 characters on Linux."""
    try:
        return " ".join(proc.cmdline())
    except Exception:
        return ""


def title_of_pid(pid: int) -> str:
    """title() by PID, from /proc/PID/cmdline where there is one (no psutil import)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return ""
    except OSError:
        return ""
    psutil = _psutil()
    try:
        return title(psutil.Process(pid))
    except psutil.Error:
        return ""


def find_by_title(fragment: str) -> list:
    psutil = _psutil()
    found = []
    for proc in psutil.process_iter(["pid"]):
        if fragment in title(proc):
            found.append(proc)
    return found


def titles_running(fragments: list[str]) -> list[str]:
    """Those of `fragments` that some process's title contains, from one pass over the
    process table (a hast layer of 64 resources asks for 64 worker titles per poll)."""
    psutil = _psutil()
    left, found = list(fragments), []
    for proc in psutil.process_iter(["pid"]):
        if not left:
            break
        text = title(proc)
        hits = [f for f in left if f in text]
        found += hits
        left = [f for f in left if f not in hits]
    return [f for f in fragments if f in found]


def group_members(pgid: int, started_after: float = 0.0) -> list:
    """Processes of process group `pgid` started after `started_after` (epoch seconds):
    the creation time guards against a group id reused since it was recorded."""
    psutil = _psutil()
    found = []
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["create_time"] >= started_after:
                found.append(proc)
        except (ProcessLookupError, PermissionError, TypeError):
            continue
    return found


def group_of_token(name: str, token: str, started_after: float = 0.0) -> int:
    """The process group of the command launched with `name=token` in its environment
    (runner.RUN_TOKEN), or 0. Only a killed transition's recovery asks, so reading every
    process's environment is affordable."""
    if not token:
        return 0
    psutil = _psutil()
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            if proc.info["create_time"] < started_after:
                continue
            if proc.environ().get(name) == token:
                return os.getpgid(proc.pid)
        except (psutil.Error, ProcessLookupError, PermissionError, TypeError):
            continue
    return 0


def protected_pids() -> set[int]:
    """This process and its ancestors: a release never kills the hook that runs it."""
    psutil = _psutil()
    pids = {os.getpid()}
    try:
        for parent in psutil.Process().parents():
            pids.add(parent.pid)
    except psutil.Error:
        pass
    return pids


def gone(proc) -> bool:
    """Exited, or a zombie (it holds no files any more; its parent has not reaped it yet:
    psutil.wait_procs would wait out the whole timeout for a child that isn't ours)."""
    psutil = _psutil()
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def pid_running(pid: int) -> bool:
    """Is `pid` a live, non-zombie process? From /proc/PID/stat where there is one (no
    psutil import: status probes stay cheap), else psutil."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return False
    except (OSError, IndexError):
        return False
    psutil = _psutil()
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(procs: list, timeout: float) -> list:
    """Wait up to `timeout` s for all of `procs` to exit; returns those still running."""
    try:
        waits.wait_for(lambda: all(gone(p) for p in procs), timeout, "processes to exit")
    except WaitTimeout:
        pass
    return [p for p in procs if not gone(p)]


def wait_for_no_process(fragment: str, timeout: float) -> None:
    """Wait until no process's joined cmdline contains `fragment` (e.g. hastd: r0 (secondary))."""
    waits.wait_for(lambda: not find_by_title(fragment), timeout, f"process '{fragment}' to exit")


def terminate_then_kill(procs: list, grace: float) -> list:
    """TERM, wait up to `grace` s, KILL the rest. Returns processes still alive after KILL."""
    psutil = _psutil()
    procs = [p for p in procs if p.pid not in protected_pids()]
    for p in procs:
        try:
            log.info("sending TERM to pid %d (%s)", p.pid, title(p))
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    alive = wait_gone(procs, grace)
    for p in alive:
        try:
            log.warning("pid %d ignored TERM for %gs: sending KILL", p.pid, grace)
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return wait_gone(alive, max(1.0, grace)) if alive else []
