#!/usr/bin/env python3
"""Exclusive shared storage for the real-daemon pair tests, used through `command` layers.

    shared_storage.py lease-acquire  SHARED NODE PIDFILE WAIT
    shared_storage.py lease-release  SHARED NODE PIDFILE
    shared_storage.py lease-status   SHARED NODE PIDFILE
    shared_storage.py data-acquire   SHARED NODE
    shared_storage.py data-release   SHARED NODE
    shared_storage.py data-status    SHARED NODE

`lease`: a detached holder process keeps an flock on SHARED/lease.lock, so the kernel frees
the lease when the holder dies with its node (like a SCSI reservation or sanlock lease),
never while the node lives. acquire waits up to WAIT seconds for the peer to let go
(a preempting node comes up while the old master is still releasing), then refuses with
exit 1 naming the holder.

`data`: what the service would write. acquire makes SHARED/data.owner name this node (noting
a stale owner left by a crashed node); release removes it (only if ours).

A release of `lease` or `data` fails while SHARED/fail-<lease|data>-release.NODE exists (a
fault the tests inject).

Every change is a line `<epoch> <node> <event> [detail]` in SHARED/holds.log, written while
the state it describes is true (start after taking, end before letting go), so the tests
can check that two nodes' hold intervals never overlap (the tests add `crash` lines).
"""
from __future__ import annotations

import fcntl
import os
import signal
import sys
import time


def note(shared: str, node: str, event: str, detail: str = "") -> None:
    line = f"{time.time():.6f} {node} {event}{' ' + detail if detail else ''}\n"
    fd = os.open(os.path.join(shared, "holds.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except FileNotFoundError:
        return ""


def holder_pid(pidfile: str) -> int | None:
    """The live holder's pid, if the pidfile names a live lease holder."""
    try:
        pid = int(read(pidfile))
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().split(b"\0")
    except (ValueError, OSError):
        return None
    return pid if b"lease-holder" in cmdline else None


def lease_acquire(shared: str, node: str, pidfile: str, wait: float) -> int:
    if holder_pid(pidfile):
        return 0
    r, w = os.pipe()
    os.set_inheritable(w, True)
    if os.fork() == 0:                 # the holder: its own session, no inherited pipes
        os.close(r)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), "lease-holder",
                                  shared, node, pidfile, str(wait), str(w)])
    os.close(w)
    answer = os.read(r, 64).decode()
    os.close(r)
    if answer == "ok":
        return 0
    owner = read(os.path.join(shared, "lease.owner")) or "the other node"
    print(f"shared storage: lease held by {owner} for more than {wait:g}s; refusing",
          file=sys.stderr)
    return 1


def lease_holder(shared: str, node: str, pidfile: str, wait: float, wfd: int) -> None:
    fd = os.open(os.path.join(shared, "lease.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    waited = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not waited:
                note(shared, node, "lease-wait",
                     f"held by {read(os.path.join(shared, 'lease.owner')) or '?'}")
                waited = True
            if time.monotonic() > deadline:
                note(shared, node, "lease-refused")
                os.write(wfd, b"busy")
                os._exit(1)
            time.sleep(0.02)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))   # the kernel drops the flock
    with open(os.path.join(shared, "lease.owner"), "w") as fh:
        fh.write(node)
    with open(pidfile + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(pidfile + ".tmp", pidfile)
    note(shared, node, "lease-start")
    os.write(wfd, b"ok")
    os.close(wfd)
    while True:
        signal.pause()


def injected_failure(shared: str, node: str, op: str) -> bool:
    """A test makes NODE's release of OP fail by creating SHARED/fail-OP-release.NODE."""
    if os.path.exists(os.path.join(shared, f"fail-{op}-release.{node}")):
        print(f"shared storage: {node} cannot release the {op} (injected fault)",
              file=sys.stderr)
        return True
    return False


def lease_release(shared: str, node: str, pidfile: str) -> int:
    if injected_failure(shared, node, "lease"):
        return 1
    pid = holder_pid(pidfile)
    if pid:
        note(shared, node, "lease-end")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while holder_pid(pidfile) and time.monotonic() < deadline:
            time.sleep(0.01)
        if holder_pid(pidfile):
            print("shared storage: lease holder did not exit", file=sys.stderr)
            return 1
    try:
        os.unlink(pidfile)
    except FileNotFoundError:
        pass
    return 0


def data_acquire(shared: str, node: str) -> int:
    owner_file = os.path.join(shared, "data.owner")
    owner = read(owner_file)
    if owner == node:
        return 0
    if owner:
        note(shared, node, "data-takeover", f"from {owner}")
    with open(owner_file + f".{node}", "w") as fh:
        fh.write(node)
    os.replace(owner_file + f".{node}", owner_file)
    note(shared, node, "data-start")
    return 0


def data_release(shared: str, node: str) -> int:
    owner_file = os.path.join(shared, "data.owner")
    if injected_failure(shared, node, "data"):
        return 1
    if read(owner_file) == node:
        note(shared, node, "data-end")
        os.unlink(owner_file)
    return 0


def main(argv: list[str]) -> int:
    op, shared, node, *rest = argv
    if op == "lease-acquire":
        return lease_acquire(shared, node, rest[0], float(rest[1]))
    if op == "lease-holder":
        lease_holder(shared, node, rest[0], float(rest[1]), int(rest[2]))
        return 0
    if op == "lease-release":
        return lease_release(shared, node, rest[0])
    if op == "lease-status":
        return 0 if holder_pid(rest[0]) else 1
    if op == "data-acquire":
        return data_acquire(shared, node)
    if op == "data-release":
        return data_release(shared, node)
    if op == "data-status":
        return 0 if read(os.path.join(shared, "data.owner")) == node else 1
    print(f"unknown operation {op!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
