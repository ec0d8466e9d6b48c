"""Processes: lookup by title, holders of a mount, terminate-then-kill (psutil).

psutil is imported lazily (~30 ms) so hooks that only record a desire stay fast.
"""
from __future__ import annotations

import logging
import os

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


def _under(path: str, mountpoint: str) -> bool:
    return path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")


def holders(mountpoints: list[str], same_device: bool = True,
            devices: set[int] | None = None) -> dict:
    """Processes using files under any of `mountpoints`: cwd, root, exe, open files, open
    directories (open_files() misses those) and memory maps. Paths are compared by prefix
    *and* by st_dev of the mount, so the parent filesystem's users are never included.
    `devices`: the mounts' st_dev as the mount table lists them; without it they are
    stat()ed, which gives the parent's st_dev if the mount went away meanwhile.

    Returns {Process: reason}.
    """
    mounts = [os.path.realpath(m) for m in mountpoints]
    devs = set(devices or ())
    for m in mounts if devices is None else ():
        try:
            devs.add(os.stat(m).st_dev)
        except OSError:
            pass

    def match(path: str) -> str | None:
        if not any(_under(path, m) for m in mounts):
            return None
        return "*" if _on_device(path, devs if same_device else set()) else None

    return {proc: found["*"] for proc, found in _scan(match, stop_at=1).items()}


def holders_by_mount(targets: dict[str, int | None]) -> dict[str, dict]:
    """One /proc pass for several mounts: {mountpoint: {Process: reason}}. `targets` maps
    each mountpoint to its st_dev from the mount table (None: stat() it now)."""
    devs: dict[str, int | None] = {}
    by_real: dict[str, str] = {}
    for mp, dev in targets.items():
        real = os.path.realpath(mp)
        if dev is None:
            try:
                dev = os.stat(real).st_dev
            except OSError:
                pass
        devs[real], by_real[real] = dev, mp
    # the longest mountpoint first: a path under a nested mount belongs to the inner one
    ordered = sorted(devs, key=len, reverse=True)

    def match(path: str) -> str | None:
        for m in ordered:
            if _under(path, m):
                dev = devs[m]
                return by_real[m] if _on_device(path, set() if dev is None else {dev}) \
                    else None
        return None

    out: dict[str, dict] = {mp: {} for mp in targets}
    for proc, found in _scan(match, stop_at=len(targets)).items():
        for mp, reason in found.items():
            out[mp][proc] = reason
    return out


def _on_device(path: str, devs: set[int]) -> bool:
    if not devs:
        return True
    try:
        return os.stat(path).st_dev in devs
    except OSError:
        return True  # deleted-but-open files under the mount still hold it


def _scan(match, stop_at: int) -> dict:
    """{Process: {target: reason}} for every process (but this one and its ancestors) with
    a path for which match(path) names a target; a process is read until it was seen
    holding `stop_at` targets."""
    psutil = _psutil()
    skip = protected_pids()
    found: dict = {}
    for proc in psutil.process_iter(["pid"]):
        if proc.pid in skip:
            continue
        reasons = _hold_reasons(proc, match, stop_at)
        if reasons:
            found[proc] = reasons
    return found


def _hold_reasons(proc, match, stop_at: int) -> dict[str, str]:
    pid = proc.pid
    found: dict[str, str] = {}

    def seen(path: str | None, label: str) -> bool:
        target = match(path) if path else None
        if target is not None and target not in found:
            found[target] = label
        return len(found) >= stop_at

    try:
        for label, getter in (("cwd", proc.cwd), ("exe", proc.exe)):
            if seen(getter(), label):
                return found
        root = _readlink(f"/proc/{pid}/root")
        if root and root != "/" and seen(root, "root"):
            return found
        # /proc/PID/fd covers regular files *and* directories (psutil's open_files skips dirs)
        fd_dir = f"/proc/{pid}/fd"
        if os.path.isdir(fd_dir):
            for fd in os.listdir(fd_dir):
                target = _readlink(f"{fd_dir}/{fd}")
                if target and target.startswith("/") and \
                        seen(target.removesuffix(" (deleted)"), f"open {target}"):
                    return found
        else:
            for f in proc.open_files():
                if seen(f.path, f"open {f.path}"):
                    return found
        for path in _mapped_paths(proc):
            if seen(path, f"map {path}"):
                return found
    except Exception:  # NoSuchProcess, AccessDenied, ZombieProcess: not a holder we can act on
        return found
    return found


class SharedScan:
    """Holder scans shared by the layers of one parallel group released together: each
    layer registers its mount before its first umount, and a layer whose mount is busy
    gets the result of one /proc pass covering every registered mount. A scan serves every
    layer asking while it runs or after it, as long as it is newer than the one that layer
    used last (each retry round sees a fresh scan)."""

    def __init__(self):
        import threading

        self._cond = threading.Condition()
        self._targets: dict[str, int | None] = {}
        self._covered: set[str] = set()
        self._result: dict[str, dict] = {}
        self._gen = 0
        self._running = False
        self.scans = 0          # how many /proc passes were made (tests and the bench read it)

    def register(self, mountpoint: str, device: int | None) -> None:
        with self._cond:
            self._targets[mountpoint] = device

    def holders(self, mountpoint: str, after: int) -> tuple[dict, int]:
        """({Process: reason} for `mountpoint`, the scan's generation) from a scan newer
        than generation `after` that covered it."""
        with self._cond:
            self._targets.setdefault(mountpoint, None)
            while True:
                if not self._running and self._gen > after and mountpoint in self._covered:
                    return dict(self._result.get(mountpoint, {})), self._gen
                if not self._running:
                    break
                self._cond.wait()
            self._running = True
            targets = dict(self._targets)
        result: dict[str, dict] = {}
        try:
            result = holders_by_mount(targets)
        finally:
            with self._cond:
                self._gen += 1
                self.scans += 1
                self._result, self._covered = result, set(targets)
                self._running = False
                self._cond.notify_all()
                gen = self._gen
        return dict(result.get(mountpoint, {})), gen


def _mapped_paths(proc) -> set[str]:
    """/proc/PID/maps is far cheaper than psutil's memory_maps (which parses smaps)."""
    try:
        with open(f"/proc/{proc.pid}/maps", encoding="utf-8", errors="replace") as fh:
            fields = [line.rstrip("\n").split(None, 5) for line in fh]
        return {f[5].removesuffix(" (deleted)") for f in fields
                if len(f) == 6 and f[5].startswith("/")}
    except FileNotFoundError:
        return {m.path for m in proc.memory_maps(grouped=True) if m.path.startswith("/")}


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


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
    from hahooks import waits
    from hahooks.errors import WaitTimeout

    try:
        waits.wait_for(lambda: all(gone(p) for p in procs), timeout, "processes to exit")
    except WaitTimeout:
        pass
    return [p for p in procs if not gone(p)]


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
