"""The state dir: the transition lock, the desire file (latest wins), the last result, and
the record of the command running right now (so a killed transition's orphans are found).

The dir must be a real directory owned by us and not writable by group/other; files are
opened with O_NOFOLLOW so a planted symlink cannot redirect a root write.

Files (all JSON written by rename, so a crash leaves the old or the new content):
  desire.json      {"seq", "role", "source", "at", "pid", "waiter"}: the newest request
  done.json        {"seq", "role", "exit_code", "message", "at"}: the newest finished one
  inflight.json    {"pgid", "argv", "started"}: the command running now, if any, and
                   "commands": every one running now (a parallel group runs several)
  maintenance.json {"reason", "since", "by"}: present while maintenance mode is on
                   (daemon events are recorded and ignored: maintenance.py)
  agent.json       {"seq", "pid", "converger", "at"}: the newest desire `hahooks agent`
                   took (agent.py)
Locks (flock):
  transition.lock  exclusive while a process walks the stack (only convergers take it)
  active.lock      shared while a converger holds transition.lock; probes (status, drill)
                   test it with an exclusive non-blocking flock, so a probe never holds
                   transition.lock and never makes a converger's hand-over check fail
  desire.lock      serialises the read-increment-write of the desire sequence number
  agent.lock       exclusive for the life of `hahooks agent` (agent.py)
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import stat
import threading
import time

from hahooks import procs, waits
from hahooks.errors import PermissionProblem
from hahooks.runner import RUN_TOKEN

LOCK = "transition.lock"
ACTIVE = "active.lock"
DESIRE_LOCK = "desire.lock"
DESIRE = "desire.json"
DONE = "done.json"
INFLIGHT = "inflight.json"
MAINTENANCE = "maintenance.json"
AGENT_LOCK = "agent.lock"
AGENT_ACK = "agent.json"
AGENT_BELL = "agent.bell"      # a FIFO the agent reads: a --detach hook's wake-up (agent.py)
FILES = (LOCK, ACTIVE, DESIRE_LOCK, DESIRE, DONE, INFLIGHT, MAINTENANCE, AGENT_LOCK, AGENT_ACK,
         AGENT_BELL)
# Errors that mean the dir's filesystem takes no more writes, as the one-line cause.
UNWRITABLE = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded",
              errno.EROFS: "read-only filesystem"}
# A transition writes desire.json, done.json and inflight.json, each by a temporary and a
# rename: fewer free blocks than this and one of those writes may fail mid-transition.
MIN_FREE_BLOCKS = 4

log = logging.getLogger("hahooks.state")


@dataclasses.dataclass
class Desire:
    seq: int
    role: str
    source: str = ""
    at: float = 0.0
    pid: int = 0
    waiter: bool = False   # recorded by a --wait caller, which converges it itself


class StateDir:
    def __init__(self, path: str):
        self.path = path
        self._inflight: dict[int, dict] = {}   # pgid -> record (parallel layers' commands)
        self._inflight_lock = threading.Lock()

    def prepare(self) -> "StateDir":
        """Create the dir (0700) if needed and refuse an unsafe one. Call before writing."""
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise PermissionProblem(f"{self.path}: cannot create state dir: {exc.strerror}") \
                from None
        st = os.lstat(self.path)
        if stat.S_ISLNK(st.st_mode):
            raise PermissionProblem(f"{self.path}: state dir is a symlink; refusing")
        if not stat.S_ISDIR(st.st_mode):
            raise PermissionProblem(f"{self.path}: state dir is not a directory")
        if st.st_uid != os.geteuid():
            raise PermissionProblem(f"{self.path}: state dir is owned by uid {st.st_uid}, "
                                    f"not {os.geteuid()}")
        if st.st_mode & 0o022:
            raise PermissionProblem(f"{self.path}: state dir is writable by group or others "
                                    f"(mode {stat.S_IMODE(st.st_mode):04o})")
        # Refuse before anything is written: a planted symlink found only when the lock is
        # opened would come after the desire was already recorded.
        for name in FILES:
            path = os.path.join(self.path, name)
            if os.path.islink(path):
                raise PermissionProblem(f"{path} is a symlink; refusing")
        return self

    def _open(self, name: str, flags: int) -> int:
        path = os.path.join(self.path, name)
        try:
            return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):
                raise PermissionProblem(f"{path} is a symlink; refusing") from None
            if exc.errno in UNWRITABLE:
                raise self._unwritable(name, exc) from None
            raise PermissionProblem(f"{path}: {exc.strerror}") from None

    # -- locks ---------------------------------------------------------------
    def lock_fd(self, name: str = LOCK) -> int:
        return self._open(name, os.O_RDWR | os.O_CREAT)

    def flocked(self, name: str) -> bool:
        """True while some process holds a flock on `name` (a read-only probe: an exclusive
        non-blocking try, dropped at once; no file, no lock)."""
        if not os.path.lexists(os.path.join(self.path, name)):
            return False
        fd = self._open(name, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    @contextlib.contextmanager
    def _short_lock(self):
        fd = self._open(DESIRE_LOCK, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- json files ----------------------------------------------------------
    def _read(self, name: str) -> dict | None:
        try:
            fd = os.open(os.path.join(self.path, name), os.O_RDONLY | os.O_NOFOLLOW |
                         os.O_CLOEXEC)
        except FileNotFoundError:
            # not written yet. (A look with lexists after a failed open raced a rename into
            # place: "agent.json: No such file or directory", exit 4, seen in a test.)
            return None
        except OSError:
            fd = self._open(name, os.O_RDONLY)     # its error, said the way _open says it
        with os.fdopen(fd) as fh:
            try:
                data = json.load(fh)
            except ValueError:
                return None  # cannot happen with rename, but never crash on a bad file
        return data if isinstance(data, dict) else None

    def _write(self, name: str, data: dict) -> None:
        tmp = f"{name}.{os.getpid()}.tmp"
        fd = self._open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            with os.fdopen(fd, "w") as fh:   # a full filesystem fails here, at the flush
                json.dump(data, fh)
            os.replace(os.path.join(self.path, tmp), os.path.join(self.path, name))
        except OSError as exc:
            self._remove(tmp)   # the old content of `name` stands; no temporary is left
            raise self._unwritable(name, exc) from None

    def _unwritable(self, name: str, exc: OSError) -> PermissionProblem:
        cause = UNWRITABLE.get(exc.errno or 0, exc.strerror or str(exc))
        return PermissionProblem(f"state dir {self.path}: {cause} (cannot write {name})")

    def write_problem(self) -> str | None:
        """Why the next transition could not write here, or None; read-only (statvfs of
        the dir, or of its nearest existing parent before the first transition made it).
        `status` reports it as CRITICAL: a master or slave would stop at its desire."""
        path = self.path
        while not os.path.exists(path) and path != os.path.dirname(path):
            path = os.path.dirname(path)
        try:
            vfs = os.statvfs(path)
        except OSError as exc:
            return f"cannot inspect its filesystem: {exc.strerror}"
        if vfs.f_flag & os.ST_RDONLY:
            return "its filesystem is read-only"
        free = vfs.f_bfree if os.geteuid() == 0 else vfs.f_bavail   # root may use reserve
        if free < MIN_FREE_BLOCKS:
            return f"no space left ({free * vfs.f_frsize} bytes free)"
        if vfs.f_files and not (vfs.f_ffree if os.geteuid() == 0 else vfs.f_favail):
            return "no space left (no free inodes)"
        return None

    def _remove(self, name: str) -> None:
        try:
            os.unlink(os.path.join(self.path, name))
        except FileNotFoundError:
            pass

    # -- a kind's own notes ---------------------------------------------------
    def note(self, name: str) -> dict | None:
        """What a kind recorded under `name` (a file in the state dir), None if nothing."""
        return self._read(name)

    def set_note(self, name: str, data: dict | None) -> None:
        """Record `data` under `name` (atomically, never through a symlink); None removes it."""
        if data is None:
            self._remove(name)
        else:
            self._write(name, data)

    # -- desire and result ---------------------------------------------------
    # Set only in the child `hahooks agent` forks to run a daemon's command from the
    # express lane (spool.Spool.run_wiring): under the desire lock, it claims the hook's
    # request (raising when the hook withdrew it) and gives the hook's time and PID.
    claim = None      # () -> (at, pid), or None

    def record_desire(self, role: str, source: str = "", waiter: bool = False) -> Desire:
        with self._short_lock():
            at = pid = None
            if StateDir.claim is not None:
                at, pid = StateDir.claim()
            return self.record_desire_locked(role, source, waiter, at=at, pid=pid)

    def record_desire_locked(self, role: str, source: str = "", waiter: bool = False, *,
                             at: float | None = None, pid: int | None = None) -> Desire:
        """record_desire for a caller that holds desire_lock() (the agent taking an express
        request: express.py); `at` and `pid` are the asking hook's."""
        current = self._read(DESIRE) or {}
        desire = Desire(int(current.get("seq", 0)) + 1, role, source,
                        time.time() if at is None else at,
                        os.getpid() if pid is None else pid, waiter)
        self._write(DESIRE, dataclasses.asdict(desire))
        return desire

    def desire_lock(self):
        """The lock every desire is recorded under (desire.lock), held for a few file
        operations only: a hook withdrawing an express request takes it too."""
        return self._short_lock()

    def desire(self) -> Desire | None:
        data = self._read(DESIRE)
        if not data:
            return None
        return Desire(**{f.name: data[f.name] for f in dataclasses.fields(Desire)
                         if f.name in data})

    def done(self) -> dict | None:
        return self._read(DONE)

    def record_done(self, seq: int, role: str, exit_code: int, message: str) -> None:
        self._write(DONE, {"seq": seq, "role": role, "exit_code": exit_code,
                           "message": message, "at": time.time()})

    def pending(self) -> Desire | None:
        """The newest desire if no finished transition covers it yet."""
        desire, done = self.desire(), self.done()
        if desire is None or (done and done.get("seq", 0) >= desire.seq):
            return None
        return desire

    # -- maintenance mode (maintenance.py decides what it means) -----------------
    def maintenance(self) -> dict | None:
        return self._read(MAINTENANCE)

    def set_maintenance(self, record: dict | None) -> None:
        """Write the record (on) or remove the file (off)."""
        if record is None:
            self._remove(MAINTENANCE)
        else:
            self._write(MAINTENANCE, record)

    # -- the command running now (a runner tracker) ------------------------------
    def command_started(self, token: str, argv: list[str]) -> None:
        """Told before the command is spawned; `token` is in its environment."""
        with self._inflight_lock:
            self._inflight[token] = {"token": token, "argv": argv, "started": time.time()}
            self._write_inflight()

    def command_finished(self, token: str) -> None:
        with self._inflight_lock:
            self._inflight.pop(token, None)
            self._write_inflight()

    def _write_inflight(self) -> None:
        if not self._inflight:
            self._remove(INFLIGHT)
            return
        records = list(self._inflight.values())
        self._write(INFLIGHT, {**records[0], "commands": records})

    def reap_orphans(self, grace: float = 2.0) -> list[int]:
        """Called with the transition lock held, before walking the stack. A transition
        killed mid-command (SIGKILL, OOM) leaves that command's process group running: it
        could still be acquiring while a new transition releases. End those processes
        (TERM, then KILL after `grace`) so the new walk starts from a quiet stack.
        Returns the PIDs that were signalled."""
        record = self._read(INFLIGHT)
        if not record:
            self._remove(INFLIGHT)   # a torn or empty record: nothing to reap
            return []
        reaped: list[int] = []
        for rec in record.get("commands") or [record]:
            started = float(rec.get("started", 0))
            pgid = int(rec.get("pgid", 0)) or procs.group_of_token(
                RUN_TOKEN, str(rec.get("token", "")), started_after=started - 1.0)
            orphans = procs.group_members(pgid, started_after=started - 1.0) if pgid > 1 else []
            if orphans:
                log.warning("a killed transition left %s (process group %d: pids %s) running: "
                            "ending it before converging", " ".join(rec.get("argv", [])),
                            pgid, " ".join(str(p.pid) for p in orphans),
                            extra={"event": "orphans", "pgid": pgid})
                procs.terminate_then_kill(orphans, grace)
                reaped += [p.pid for p in orphans]
        self._remove(INFLIGHT)
        return reaped


class TransitionLock:
    """flock on transition.lock: transitions never overlap.

    A holder also holds active.lock shared, which is what `held_elsewhere()` probes: a
    probe must never take transition.lock itself, or a converger that just finished and
    checks for a desire recorded meanwhile could find the lock taken by the probe and
    leave that desire to nobody.
    """

    def __init__(self, state: StateDir):
        self.state = state
        self.fd: int | None = None
        self.active_fd: int | None = None

    def try_acquire(self) -> bool:
        fd = self.state.lock_fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        active = self.state.lock_fd(ACTIVE)
        fcntl.flock(active, fcntl.LOCK_SH)   # a probe holds it exclusively for microseconds
        self.active_fd = active
        return True

    def acquire(self, timeout: float) -> None:
        waits.wait_for(self.try_acquire, timeout, "the running transition to finish",
                       ceiling=0.05)

    def release(self) -> None:
        if self.active_fd is not None:
            os.close(self.active_fd)
            self.active_fd = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "TransitionLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def held_elsewhere(self) -> bool:
        """True while another process holds the transition lock (read-only probe)."""
        return self.state.flocked(ACTIVE)
