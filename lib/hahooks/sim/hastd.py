"""The simulated hastd: one daemon per node, living in that node's namespaces.

It owns the node's HAST worker processes (freebsd-tools.md §2 "Process titles"):
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


def wait_worker_gone(store: Store, node: str, name: str, timeout: float) -> None:
    if not store.alive(node, "hastd"):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.locked() as st:
            rec = st["nodes"].get(node, {}).get("hastd_workers", {}).get(name)
            role = st["hast"].get(name, {}).get("role", {}).get(node)
        if rec is None or rec.get("role") == role:
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


class Daemon:
    def __init__(self, store: Store, node: str):
        self.store = store
        self.node = node
        self.workers: dict[str, tuple] = {}  # name -> (role, Popen, gen)  # name -> role, proc, gen
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
        next, or None when this daemon must exit (node down, hastd stopped, world gone)."""
        if not os.path.isdir(self.store.root):
            return None
        now = time.time()
        wake = now + HOUSEKEEPING
        with self.store.locked(write=True) as st:
            me = st["nodes"].get(self.node)
            if me is None or not me["up"] or me.get("hastd") != "running" \
                    or me.get("boot", 0) != boot:
                self.stop_workers(signal.SIGKILL)
                return None
            wanted = {name: worker_wanted(st, self.node, name) for name, r in st["hast"].items()
                      if self.node in r["nodes"]}
            for name, (role, proc, gen) in list(self.workers.items()):
                if wanted.get(name) != role or proc.poll() is not None \
                        or st["hast"][name]["gen"].get(self.node, 0) != gen:
                    self.stop_worker(name)
            for name, role in wanted.items():
                if role and name not in self.workers:
                    self.start_worker(st, name, role)
            me["hastd_workers"] = {name: {"role": role, "pid": proc.pid}
                                   for name, (role, proc, _) in self.workers.items()}
            for name, (role, proc, gen) in self.workers.items():
                if role != "primary" or (name, gen) in self.hung:
                    continue
                r = st["hast"][name]
                if r["device"].get(self.node):
                    continue
                due = r["device_due"].get(self.node, now)
                if due <= now:
                    link_device(self.store.path(r["image"]),
                                os.path.join(self.store.dev_dir(self.node), "hast", name))
                    r["device"][self.node] = True
                else:
                    wake = min(wake, due)
        return wake

    def start_worker(self, st: dict, name: str, role: str) -> None:
        r = st["hast"][name]
        gen = r["gen"].get(self.node, 0)
        title = f"hastd: {name} ({role})"
        if role == "primary":
            rule = faults.take(self.store.root, title, self.node)
            if rule and rule.get("hang"):
                self.hung.add((name, gen))
            elif rule and rule.get("fail") is not None:
                if int(rule["fail"]) == EX_TEMPFAIL:
                    # "Restarting worker process.": try again at the next wake-up
                    return
                # "Changing resource role back to init.": no device, ever (§2)
                r["role"][self.node] = "init"
                r["gen"][self.node] = gen + 1
                return
        import subprocess   # only the daemon needs it: hastctl start-up stays cheap

        proc = subprocess.Popen([title], executable="/bin/sh", stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                close_fds=True)
        self.workers[name] = (role, proc, gen)

    def stop_worker(self, name: str, sig: int = signal.SIGTERM) -> None:
        role, proc, gen = self.workers.pop(name)
        self.hung.discard((name, gen))
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.stdin.close()
        except OSError:
            pass
        proc.wait()

    def stop_workers(self, sig: int) -> None:
        for name in list(self.workers):
            self.stop_worker(name, sig)


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
