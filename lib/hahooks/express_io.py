"""The express lane's files, as a hook sees them (express.py has the protocol; spool.py is
the agent's side): where the agent is, a request written whole, its answers read, and the
request withdrawn under the desire lock. Stdlib only (os, time, fcntl): a hook imports this
before anything of the library."""
from __future__ import annotations

import fcntl
import os
import sys
import time

from hahooks.bell import ring

RUN_DIR = "/var/run/hahooks"      # /run on Linux (the symlink), /var/run on FreeBSD
REQUESTS = "requests"
DESIRE_LOCK = "desire.lock"       # state.DESIRE_LOCK (tests/test_express.py holds them equal)
TAKE_WINDOW = 1.0                 # a request older than this is not taken (agent side)
# answers, the first word of <name>.ans:
RECORDED = "recorded"   # recorded <seq>: desire recorded, converger not forked yet
TAKEN = "taken"         # taken <seq> <message>: recorded, a converger has it (exit 0)
IGNORED = "ignored"     # ignored <message>: maintenance mode (exit 0, nothing recorded)
DECLINED = "declined"   # declined <why>: the hook takes the normal path
# a command line (role ARGV) runs in a child the agent forks, the library loaded:
STARTED = "started"     # started: the agent forked the child (the hook waits up to RUN_WAIT)
RUNNING = "running"     # running <pid>: a waiting call's child, written by the child itself
DONE = "done"           # done <code>: it ran; its stdout and stderr are <name>.out, .err
ARGV = "argv"           # the role field of such a request: the words follow the source
RUN_WAIT = 1.0          # how long a hook waits for the child before it withdraws
SUFFIXES = (".req", ".ans", ".out", ".err", ".run")    # one request's files


def run_dir() -> str:
    return os.environ.get("HAHOOKS_RUN_DIR") or RUN_DIR


def default_config() -> str:
    """platforms.default_config_path() without importing platforms (dataclasses):
    tests/test_express.py holds the two equal."""
    if os.environ.get("HAHOOKS_CONFIG"):
        return os.environ["HAHOOKS_CONFIG"]
    return "/usr/local/etc/hahooks.toml" if sys.platform.startswith("freebsd") \
        else "/etc/hahooks.toml"


def pointer_name(st) -> str:
    return f"agent-{st.st_dev}-{st.st_ino}"


def private(st, others: int) -> bool:
    """Owned by us (root, as the agent) and without the `others` mode bits (0o022: nobody
    else may write; 0o077: nobody else may look)."""
    return st.st_uid == os.geteuid() and not st.st_mode & others


def carried(word: str) -> bool:
    """A word a request line can carry (its fields are tab-separated, one line)."""
    return not any(c in word for c in "\t\n\0")


def agent_spool(config: str) -> tuple[str, str] | None:
    """(state dir, dev:ino of the config) when an agent serves `config` and its files are
    safe to use; None otherwise."""
    import stat

    try:
        cst = os.stat(config)
        rdir = run_dir()
        if not private(os.lstat(rdir), 0o022):
            return None
        fd = os.open(os.path.join(rdir, pointer_name(cst)), os.O_RDONLY | os.O_NOFOLLOW)
        try:
            if not private(os.fstat(fd), 0o022):
                return None
            state_dir = os.read(fd, 4096).decode().split("\n", 1)[0]
        finally:
            os.close(fd)
        for path in (state_dir, os.path.join(state_dir, REQUESTS)):
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or not private(st, 0o077):
                return None
    except (OSError, UnicodeDecodeError):
        return None
    return state_dir, f"{cst.st_dev}:{cst.st_ino}"


def answer_of(path: str) -> list[str] | None:
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    return text.rstrip("\n").split("\t") if text.endswith("\n") else None


def await_answer(path: str, deadline: float, want=(TAKEN, IGNORED, DECLINED)) -> list[str] | None:
    nap = 0.0005
    while True:
        answer = answer_of(path)
        if answer and answer[0] in want:
            return answer
        if time.monotonic() >= deadline:
            return answer
        time.sleep(nap)
        nap = min(nap * 2, 0.001)     # a stat per ms for at most ACK_WAIT


def submit(config: str, role: str, words: list[str]) -> tuple[str, str] | None:
    """Write a request (`words` after the fixed fields) into the spool of the agent that
    serves `config`: (state dir, base name) or None (no agent, or it cannot be written)."""
    spool = agent_spool(config)
    if spool is None:
        return None
    state_dir, devino = spool
    base = os.path.join(state_dir, REQUESTS, f"{time.monotonic_ns():020d}-{os.getpid()}")
    line = "\t".join((repr(time.time()), role, str(os.getpid()), os.path.abspath(config),
                      devino, *words))
    try:    # whole or not at all: the agent must never read a request half written
        fd = os.open(base + ".new", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        os.rename(base + ".new", base + ".req")
    except OSError:
        remove(base + ".new")
        return None
    return state_dir, base


def handed(config: str, role: str, words: list[str], converse):
    """Submit a request, ring the bell and return converse(state dir, base name, rung),
    or None (the normal path) when it cannot be submitted; its files go in the end."""
    submitted = submit(config, role, words)
    if submitted is None:
        return None
    state_dir, base = submitted
    try:
        return converse(state_dir, base, ring(state_dir))
    finally:
        for suffix in SUFFIXES:
            remove(base + suffix)


def slurp(path: str) -> str:
    try:
        with open(path, errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def withdraw(state_dir: str, req: str) -> bool:
    """Under the desire lock: True = the request was still there and is ours again (the
    normal path records the desire); False = the agent took it."""
    try:
        fd = os.open(os.path.join(state_dir, DESIRE_LOCK),
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:     # cannot happen in the dir the agent prepared: the unlink decides
        return unlinked(req)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return unlinked(req)
    finally:
        os.close(fd)


def unlinked(path: str) -> bool:
    """True when `path` was there and is gone now (by us)."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
