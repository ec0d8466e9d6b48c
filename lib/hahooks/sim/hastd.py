"""The simulated hastd: one daemon per node, living in that node's namespaces.

It owns the node's HAST worker processes (docs/reference/hast.md §5 "Process titles"):
  - `hastd: X (primary)` while X is primary here; after the configured delay it creates
    nodes/<n>/dev/hast/X (the device appears asynchronously after hastctl returned);
  - `hastd: X (secondary)` only while X is secondary here AND the peer is primary and
    connected; it exits after the peer leaves primary, disconnects or crashes.
Workers are real processes whose whole argv is the title (/bin/sh reading a pipe that only
this daemon holds), so `pgrep -f "hastd: X \\(secondary\\)"` and psutil's joined cmdline
show exactly `hastd: X (secondary)`, and they end when the daemon dies.

The daemon is woken through the FIFO nodes/<n>/run/hastd.fifo (a reader on it is the
liveness test hastctl uses); "q" makes it exit. Started by the `hastd` tool (daemonizes),
by World.start_hastd(), or automatically by the node's first hastctl command.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time

from hahooks.sim import daemon, faults
from hahooks.sim.state import Store, connected, link_device, node_state

HOUSEKEEPING = 0.5
POLL = 0.002
EX_TEMPFAIL = 75


def worker_wanted(st: dict, node: str, name: str) -> str | None:
    r = st["hast"][name]
    role = r["role"].get(node, "init")
    if role == "primary":
        return "primary"
    peer = next((n for n in r["nodes"] if n != node), None)
    if (role == "secondary" and peer and r["role"].get(peer) == "primary"
            and connected(st, node, peer) and st["nodes"][peer].get("hastd") == "running"):
        return "secondary"
    return None


def kick_all(store: Store) -> None:
    for node in os.listdir(store.path("nodes")) if os.path.isdir(store.path("nodes")) else ():
        store.kick(node, "hastd")


def wait_workers_gone(store: Store, node: str, names: list[str], timeout: float) -> None:
    """hastd waitpid()s a resource's old worker before it answers a role change."""
    if not names or not store.alive(node, "hastd"):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.locked() as st:
            records = st["nodes"].get(node, {}).get("hastd_workers", {})
            pending = [n for n in names if n in records and
                       records[n].get("role") != st["hast"].get(n, {}).get("role", {}).get(node)]
        if not pending:
            return
        time.sleep(POLL)


def reachable(ctx) -> bool:
    """Is this node's hastd there to answer? Starts it when it should run but does not
    (the first command after World set-up or a restart), like rc.d/hastd at boot."""
    with ctx.store.locked() as st:
        node = st["nodes"].get(ctx.node)
        if node is None or not node["up"] or node.get("hastd") != "running":
            return False
    if ctx.store.alive(ctx.node, "hastd"):
        return True
    return start(ctx.store, ctx.node)


def start(store: Store, node: str) -> bool:
    """Start `node`'s daemon in the caller's namespaces; True once it listens."""
    return daemon.spawn(store, node, "hastd", lambda: Daemon(store, node).serve())


class Worker:
    """A worker process whose whole argv is its title: /bin/sh reading a pipe only the
    daemon holds (so it also ends when the daemon dies). posix_spawn keeps 64 cheap."""

    def __init__(self, title: str, role: str, gen: int):
        self.role, self.gen = role, gen
        rfd, self.wfd = os.pipe()              # both close-on-exec; dup2 onto 0 is not
        self.pid = os.posix_spawn("/bin/sh", [title], {}, file_actions=[
            (os.POSIX_SPAWN_DUP2, rfd, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
        os.close(rfd)
        self.status: int | None = None

    def alive(self) -> bool:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
        return self.status is None

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        os.close(self.wfd)

    def reap(self) -> None:
        if self.status is None:
            os.waitpid(self.pid, 0)


class Daemon:
    def __init__(self, store: Store, node: str):
        self.store = store
        self.node = node
        self.workers: dict[str, Worker] = {}
        self.hung: set[tuple[str, int]] = set()   # (name, gen) whose worker never finishes
        self.quit = False

    def serve(self) -> None:
        fifo = self.store.fifo(self.node, "hastd")
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        keep = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)   # never see EOF between kicks
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "quit", True))
        with self.store.locked(write=True) as st:
            me = node_state(st, self.node)
            me["hastd_pid"] = os.getpid()
            boot = me.get("boot", 0)
        try:
            while not self.quit:
                wake = self.reconcile(boot)
                if wake is None:
                    break
                timeout = max(0.0, min(HOUSEKEEPING, wake - time.time()))
                try:
                    ready, _, _ = select.select([rfd], [], [], timeout)
                except InterruptedError:
                    continue
                if ready:
                    try:
                        data = os.read(rfd, 4096)
                    except BlockingIOError:
                        data = b""
                    if b"q" in data:
                        break
        finally:
            self.stop_workers(signal.SIGTERM)
            os.close(rfd)
            os.close(keep)

    def reconcile(self, boot: int) -> float | None:
        """Bring worker processes and devices in line with the world. Returns when to wake
        next, or None when this daemon must exit (node down, hastd stopped, world gone).
        Processes are started and stopped outside the world lock; devices are created
        under it, after checking the role is still the one the worker was started for."""
        if not os.path.isdir(self.store.root):
            return None
        with self.store.locked() as st:
            me = st["nodes"].get(self.node)
            if me is None or not me["up"] or me.get("hastd") != "running" \
                    or me.get("boot", 0) != boot:
                self.stop_workers(signal.SIGKILL)
                return None
            wanted = {name: (worker_wanted(st, self.node, name), r["gen"].get(self.node, 0))
                      for name, r in st["hast"].items() if self.node in r["nodes"]}
        self.stop_workers(signal.SIGTERM, [name for name, w in self.workers.items()
                                           if wanted.get(name) != (w.role, w.gen) or not w.alive()])
        failed = {}
        for name, (role, gen) in wanted.items():
            if role and name not in self.workers:
                code = self.start_worker(name, role, gen)
                if code is not None:
                    failed[name] = (gen, code)
        return self.record(failed)

    def record(self, failed: dict) -> float:
        now = time.time()
        wake = now + HOUSEKEEPING
        with self.store.locked(write=True) as st:
            for name, (gen, code) in failed.items():
                r = st["hast"].get(name)
                if r and r["gen"].get(self.node) == gen and code != EX_TEMPFAIL:
                    # "Changing resource role back to init.": no device, ever (docs/reference/hast.md §5)
                    r["role"][self.node] = "init"
                    r["gen"][self.node] = gen + 1
                elif code == EX_TEMPFAIL:      # "Restarting worker process."
                    wake = min(wake, now + POLL)
            st["nodes"][self.node]["hastd_workers"] = {
                name: {"role": w.role, "pid": w.pid} for name, w in self.workers.items()}
            for name, w in self.workers.items():
                r = st["hast"].get(name)
                if (w.role != "primary" or (name, w.gen) in self.hung or r is None
                        or r["gen"].get(self.node) != w.gen or r["device"].get(self.node)):
                    continue
                held_back = self.peer_still_primary(st, r, name, w.gen, now)
                if held_back is not None:
                    wake = min(wake, held_back)
                    continue
                due = r["device_due"].get(self.node, now)
                if due <= now:
                    link_device(self.store.path(r["image"]),
                                os.path.join(self.store.dev_dir(self.node), "hast", name))
                    r["device"][self.node] = True
                else:
                    wake = min(wake, due)
        return wake

    def peer_still_primary(self, st: dict, r: dict, name: str, gen: int,
                           now: float) -> float | None:
        """docs/reference/hast.md §4: a worker started while the connected peer was primary waits for it to
        become secondary. Returns when to look again while it waits; None once it may
        start: the peer left primary (or went away), or the 20 s ran out and it starts
        "anyway": then both nodes run primary, which the invariant log records."""
        wait = r.get("peer_wait", {}).get(self.node)
        if not wait or wait["gen"] != gen:
            return None
        peer = next((n for n in r["nodes"] if n != self.node), "")
        if r["role"].get(peer) != "primary" or not connected(st, self.node, peer):
            del r["peer_wait"][self.node]
            return None
        if now < wait["until"]:
            return wait["until"]
        del r["peer_wait"][self.node]
        self.store.violation("two_hast_primaries", f"HAST resource {name}: {self.node} "
                             f"started primary anyway after waiting for {peer} to become "
                             "secondary (both run degraded, docs/reference/hast.md §4)",
                             node=self.node, resource=name)
        return None

    def start_worker(self, name: str, role: str, gen: int) -> int | None:
        """Start the worker; returns the exit code of an injected worker failure instead."""
        title = f"hastd: {name} ({role})"
        if role == "primary":
            rule = faults.take(self.store.root, title, self.node)
            if rule and rule.get("hang"):
                self.hung.add((name, gen))
            elif rule and rule.get("fail") is not None:
                return int(rule["fail"])
        self.workers[name] = Worker(title, role, gen)
        return None

    def stop_workers(self, sig: int, names: list[str] | None = None) -> None:
        """Signal them all, then reap them all (hastd's waitpid, without 64 round trips)."""
        stopping = [self.workers.pop(n) for n in (list(self.workers) if names is None else names)]
        for w in stopping:
            w.signal(sig)
        for name, w in zip(names or [], stopping):
            self.hung.discard((name, w.gen))
        for w in stopping:
            w.reap()


def main(ctx, args: list[str]) -> int:
    """The `hastd` tool: start this node's daemon (rc.d/hastd start). `-F` is accepted."""
    store = ctx.store
    with store.locked(write=True) as st:
        me = node_state(st, ctx.node)
        if not me["up"]:
            sys.stderr.write("hastd: node is down\n")
            return 1
        me["hastd"] = "running"
    if store.alive(ctx.node, "hastd"):
        sys.stderr.write(f"hastd: Another hastd is already running, pid: "
                         f"{st['nodes'][ctx.node].get('hastd_pid')}.\n")
        return 75
    return 0 if start(store, ctx.node) else 1
