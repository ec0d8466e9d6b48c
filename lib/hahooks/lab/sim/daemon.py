"""Start a node daemon (simulated hastd or ggated) the way a real one daemonizes: double
fork, new session, stdio on /dev/null, stderr to nodes/<n>/run/<name>.log. It runs in the
caller's namespaces, i.e. the node's. Ready means "a reader holds its FIFO"."""
from __future__ import annotations

import os
import select
import sys
import time

READY_TIMEOUT = 10.0
POLL = 0.002


def spawn(store, node: str, name: str, serve) -> bool:
    os.makedirs(store.node_dir(node, "run"), exist_ok=True)
    fifo = store.fifo(node, name)
    try:
        os.mkfifo(fifo, 0o600)
    except FileExistsError:
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                _stdio(store, node, name)
                code = 0
                try:
                    serve()
                except BaseException:  # noqa: BLE001 - a daemon logs its death and exits
                    import traceback
                    traceback.print_exc()
                    code = 1
                os._exit(code)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if store.alive(node, name):
            return True
        time.sleep(POLL)
    return False


def _stdio(store, node: str, name: str) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    log = os.open(store.node_dir(node, "run", f"{name}.log"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(log, 2)
    os.closerange(3, 65536)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False, buffering=1)


def asked_to_quit(rfd: int, timeout: float) -> bool:
    """Sleep on the daemon's FIFO until a kick or `timeout`; True when the kick was "q"."""
    try:
        ready, _, _ = select.select([rfd], [], [], timeout)
    except InterruptedError:
        return False
    if not ready:
        return False
    try:
        return b"q" in os.read(rfd, 4096)
    except BlockingIOError:
        return False
