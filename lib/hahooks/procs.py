"""Processes: lookup by title, holders of a mount, terminate-then-kill (psutil).

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

    def match(path: str, dev_of) -> list[str]:
        if not any(_under(path, m) for m in mounts):
            return []
        return ["*"] if not same_device or _on_device(path, dev_of, devs) else []

    return {proc: found["*"] for proc, found in _scan(match, stop_at=1).items()}


def holders_by_mount(targets: dict[str, int | None],
                     devices: dict[str, set[int]] | None = None) -> dict[str, dict]:
    """One /proc pass for several mounts: {mountpoint: {Process: reason}}. `targets` maps
    each mountpoint to its st_dev from the mount table (None: stat() it now).
    `devices` maps further keys to filesystem device numbers: a process is listed under
    such a key when a file it has open or mapped, its cwd, root or executable lies on one
    of them, wherever that is (another mount namespace, a lazily detached mount that no
    mount table lists any more: /proc/PID/fd/N is stat()ed, not its path)."""
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
    by_device = {key: set(numbers) for key, numbers in (devices or {}).items() if numbers}

    def match(path: str, dev_of) -> list[str]:
        hits = []
        for m in ordered:
            if _under(path, m):
                dev = devs[m]
                if _on_device(path, dev_of, set() if dev is None else {dev}):
                    hits.append(by_real[m])
                break
        if by_device:
            dev = dev_of()
            hits += [key for key, numbers in by_device.items() if dev in numbers]
        return hits

    keys = [*targets, *by_device]
    out: dict[str, dict] = {key: {} for key in [*targets, *(devices or {})]}
    for proc, found in _scan(match, stop_at=len(keys)).items():
        for key, reason in found.items():
            out[key][proc] = reason
    return out


def _on_device(path: str, dev_of, devs: set[int]) -> bool:
    """Is the object (its st_dev from dev_of(), else stat(path)) on one of `devs`?"""
    if not devs:
        return True
    dev = dev_of()
    if dev is not None:
        return dev in devs
    try:
        return os.stat(path).st_dev in devs
    except OSError:
        return True  # deleted-but-open files under the mount still hold it


def _scan(match, stop_at: int) -> dict:
    """{Process: {target: reason}} for every process (but this one and its ancestors) with
    a path for which match(path, dev_of) names targets; a process is read until it was
    seen holding `stop_at` targets."""
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


def _st_dev(path: str):
    """dev_of for match(): st_dev of what the /proc magic link `path` points to (the
    real file, even deleted or on a detached mount), read at most once."""
    cache: list = []

    def dev_of() -> int | None:
        if not cache:
            try:
                cache.append(os.stat(path).st_dev)
            except OSError:
                cache.append(None)
        return cache[0]
    return dev_of


def _hold_reasons(proc, match, stop_at: int) -> dict[str, str]:
    pid = proc.pid
    found: dict[str, str] = {}
    proc_dir = f"/proc/{pid}"

    def seen(path: str | None, label: str, dev_of) -> bool:
        for target in match(path, dev_of) if path else ():
            found.setdefault(target, label)
        return len(found) >= stop_at

    try:
        for label, getter in (("cwd", proc.cwd), ("exe", proc.exe)):
            if seen(getter(), label, _st_dev(f"{proc_dir}/{label}")):
                return found
        root = _readlink(f"{proc_dir}/root")
        if root and root != "/" and seen(root, "root", _st_dev(f"{proc_dir}/root")):
            return found
        # /proc/PID/fd covers regular files *and* directories (psutil's open_files skips dirs)
        fd_dir = f"{proc_dir}/fd"
        if os.path.isdir(fd_dir):
            for fd in os.listdir(fd_dir):
                target = _readlink(f"{fd_dir}/{fd}")
                if target and target.startswith("/") and \
                        seen(target.removesuffix(" (deleted)"), f"open {target}",
                             _st_dev(f"{fd_dir}/{fd}")):
                    return found
        else:
            for f in proc.open_files():
                if seen(f.path, f"open {f.path}", lambda: None):
                    return found
        for path, dev in _mapped_paths(proc).items():
            if seen(path, f"map {path}", lambda dev=dev: dev):
                return found
    except Exception:  # NoSuchProcess, AccessDenied, ZombieProcess: not a holder we can act on
        return found
    return found


class SharedScan:
    """Holder scans shared by the layers of one parallel group released together: each
    layer registers its mount before its first umount (and the device numbers whose users
    its release must prove gone), and a layer asking gets the result of one /proc pass
    covering everything registered. A scan serves every layer asking while it runs or
    after it, as long as it is newer than the one that layer used last (each retry round
    sees a fresh scan); `fresh` asks for one that starts after the question (a proof
    after an umount must not use a pass that began before it)."""

    def __init__(self):
        import threading

        self._cond = threading.Condition()
        self._targets: dict[str, int | None] = {}
        self._devices: dict[str, set[int]] = {}
        self._covered: set[str] = set()
        self._result: dict[str, dict] = {}
        self._gen = 0
        self._running = False
        self.scans = 0          # how many /proc passes were made (tests and the bench read it)

    def register(self, mountpoint: str, device: int | None) -> None:
        with self._cond:
            self._targets[mountpoint] = device

    def register_devices(self, key: str, devices: set[int]) -> None:
        with self._cond:
            self._devices[key] = set(devices)

    def holders(self, key: str, after: int, fresh: bool = False) -> tuple[dict, int]:
        """({Process: reason} for `key` (a registered mountpoint or device key), the
        scan's generation) from a scan newer than generation `after` that covered it."""
        with self._cond:
            if key not in self._devices:
                self._targets.setdefault(key, None)
            if fresh:
                after = max(after, self._gen + (1 if self._running else 0))
            while True:
                if not self._running and self._gen > after and key in self._covered:
                    return dict(self._result.get(key, {})), self._gen
                if not self._running:
                    break
                self._cond.wait()
            self._running = True
            targets, devices = dict(self._targets), dict(self._devices)
        result: dict[str, dict] = {}
        try:
            result = holders_by_mount(targets, devices)
        finally:
            with self._cond:
                self._gen += 1
                self.scans += 1
                self._result, self._covered = result, set(targets) | set(devices)
                self._running = False
                self._cond.notify_all()
                gen = self._gen
        return dict(result.get(key, {})), gen


def _mapped_paths(proc) -> dict[str, int | None]:
    """{path: st_dev} of the files `proc` maps. /proc/PID/maps is far cheaper than psutil's
    memory_maps (which parses smaps), and its 4th field is the file's device (hex
    major:minor)."""
    try:
        with open(f"/proc/{proc.pid}/maps", encoding="utf-8", errors="replace") as fh:
            fields = [line.rstrip("\n").split(None, 5) for line in fh]
        return {f[5].removesuffix(" (deleted)"): _hex_dev(f[3]) for f in fields
                if len(f) == 6 and f[5].startswith("/")}
    except FileNotFoundError:
        return {m.path: None for m in proc.memory_maps(grouped=True) if m.path.startswith("/")}


def _hex_dev(field: str) -> int | None:
    major, _, minor = field.partition(":")
    try:
        return os.makedev(int(major, 16), int(minor, 16))
    except ValueError:
        return None


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
