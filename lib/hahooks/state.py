"""The state dir: the transition lock, the desire file (latest wins) and the last result.

The dir must be a real directory owned by us and not writable by group/other; files are
opened with O_NOFOLLOW so a planted symlink cannot redirect a root write.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import stat
import time

from hahooks.errors import PermissionProblem
from hahooks import waits

LOCK = "transition.lock"
DESIRE_LOCK = "desire.lock"
DESIRE = "desire.json"
DONE = "done.json"


@dataclasses.dataclass
class Desire:
    seq: int
    role: str
    source: str = ""
    at: float = 0.0
    pid: int = 0


class StateDir:
    def __init__(self, path: str):
        self.path = path

    def prepare(self) -> "StateDir":
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
        for name in (LOCK, DESIRE_LOCK, DESIRE, DONE):
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
            raise PermissionProblem(f"{path}: {exc.strerror}") from None

    # -- locks ---------------------------------------------------------------
    def lock_fd(self) -> int:
        return self._open(LOCK, os.O_RDWR | os.O_CREAT)

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
            fd = self._open(name, os.O_RDONLY)
        except PermissionProblem:
            if not os.path.lexists(os.path.join(self.path, name)):
                return None
            raise
        with os.fdopen(fd) as fh:
            try:
                return json.load(fh)
            except ValueError:
                return None  # torn by a crash before rename: treated as absent

    def _write(self, name: str, data: dict) -> None:
        tmp = f"{name}.{os.getpid()}.tmp"
        fd = self._open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(os.path.join(self.path, tmp), os.path.join(self.path, name))

    # -- desire and result ---------------------------------------------------
    def record_desire(self, role: str, source: str = "") -> Desire:
        with self._short_lock():
            current = self._read(DESIRE) or {}
            desire = Desire(int(current.get("seq", 0)) + 1, role, source, time.time(),
                            os.getpid())
            self._write(DESIRE, dataclasses.asdict(desire))
        return desire

    def desire(self) -> Desire | None:
        data = self._read(DESIRE)
        return Desire(**data) if data else None

    def done(self) -> dict | None:
        return self._read(DONE)

    def record_done(self, seq: int, role: str, exit_code: int, message: str) -> None:
        self._write(DONE, {"seq": seq, "role": role, "exit_code": exit_code,
                           "message": message, "at": time.time()})


class TransitionLock:
    """flock on transition.lock: transitions never overlap."""

    def __init__(self, state: StateDir):
        self.state = state
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        fd = self.state.lock_fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def acquire(self, timeout: float) -> None:
        waits.wait_for(self.try_acquire, timeout, "the running transition to finish",
                       ceiling=0.05)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def held_elsewhere(self) -> bool:
        if self.try_acquire():
            self.release()
            return False
        return True
