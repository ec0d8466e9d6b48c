"""The simulated hastd: one daemon per node, living in that node's namespaces.

It owns the node's HAST worker processes (docs/reference/hast.md "Process titles"):
  - `hastd: X (primary)` while X is primary here. After hast_device_delay it creates
    nodes/<n>/dev/hast/X at once, before it talks to the peer (sbin/hastd/primary.c
    hastd_primary(): init_ggate() before init_remote()); the device's I/O then waits while
    the worker waits for the peer: up to `timeout` (hast_peer_primary_wait, 20 s) for a
    connected primary peer to become secondary, then "starting anyway"; up to the same
    timeout for a peer that is down or cut off without a TCP reset
    (proto_connect_wait(conn, hr_timeout)), then it runs degraded.
  - `hastd: X (secondary)` while X is secondary here and the peer is primary and connected;
    after a clean role change of the peer it exits at once, after a crash or a cut link only
    when its receive timeout expires (sbin/hastd/secondary.c: proto_timeout(hr_remotein,
    2 * HAST_KEEPALIVE), hast_secondary_timeout, 20 s).
Workers are real processes whose whole argv is the title (/bin/sh reading a pipe that only
this daemon holds), so `pgrep -f "hastd: X \\(secondary\\)"` and psutil's joined cmdline
show exactly `hastd: X (secondary)`, and they end when the daemon dies.

The device is a file of the node's blockio server (blockio.py, a FUSE mount at
nodes/<n>/blockio that this daemon starts and stops): dev/hast/X is a symlink to
blockio/hast-X, whose gate stalls reads and writes while the worker waits. What the worker
does is logged to nodes/<n>/run/hastd.log with hastd's texts.

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

from hahooks.lab.sim import blockio, daemon, faults
from hahooks.lab.sim.state import Store, blockio_paths, connected, node_state, unlink_device

HOUSEKEEPING = 0.5
POLL = 0.002
EX_TEMPFAIL = 75


def worker_wanted(st: dict, node: str, name: str) -> str | None:
    r = st["hast"][name]
    role = r["role"].get(node, "init")
    if role == "primary":
        return "primary"
    peer = next((n for n in r["nodes"] if n != node), None)
    if role != "secondary" or not peer:
        return None
    link = connected(st, node, peer)
    if (r["role"].get(peer) == "primary" and link
            and st["nodes"][peer].get("hastd") == "running"):
        return "secondary"
    # a crashed or cut-off primary sends nothing: the worker notices only when its receive
    # timeout expires (secondary.c, 2 * HAST_KEEPALIVE); a clean role change ends it at once
    if not link and time.time() < r.get("secondary_until", {}).get(node, 0):
        return "secondary"
    return None


def link_lost(st: dict, node: str, peer: str) -> None:
    """The link between node and peer goes away without a word (crash, partition): each
    secondary worker serving a primary across it lingers for hast_secondary_timeout."""
    until = time.time() + st["settings"]["hast_secondary_timeout"]
    for name, r in st["hast"].items():
        if node not in r["nodes"] or peer not in r["nodes"]:
            continue
        for secondary in (node, peer):
            if worker_wanted(st, secondary, name) == "secondary":
                r.setdefault("secondary_until", {})[secondary] = until


def device_name(name: str) -> str:
    return f"hast-{name}"


def create_devices(store: Store, node: str, devices: list[tuple[str, str, dict]]) -> None:
    """GEOM providers hast/NAME for (name, image, gate): blockio files (I/O behind the gate),
    linked at dev/hast/NAME. One control-file edit for all (64 at once in benchmarks)."""
    if not devices:
        return
    mount, control = blockio_paths(store, node)
    blockio.Control(control).expose_many(
        [(device_name(name), [store.path(image)], gate) for name, image, gate in devices])
    os.makedirs(os.path.join(store.dev_dir(node), "hast"), exist_ok=True)
    for name, _, _ in devices:
        device = os.path.join(store.dev_dir(node), "hast", name)
        unlink_device(device)
        os.symlink(os.path.join(mount, device_name(name)), device)


def destroy_devices(store: Store, node: str, names: list[str]) -> None:
    """The providers go: handles opened on them fail with ENXIO from now on."""
    _, control = blockio_paths(store, node)
    if names and os.path.exists(control):
        blockio.Control(control).remove(*[device_name(n) for n in names])
    for name in names:
        unlink_device(os.path.join(store.dev_dir(node), "hast", name))


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
        self.stalled: set[str] = set()            # devices whose gate stalls I/O
        self.quit = False

    def serve(self) -> None:
        # the devices' server first: once the FIFO has a reader, hastctl may ask for devices
        mount, control = blockio_paths(self.store, self.node)
        with blockio.Control(control).editing() as data:
            data["devices"] = {}            # a (re)started hastd has no providers yet
        server = blockio.start(mount, control, self.store.node_dir(self.node, "run",
                                                                     "blockio.log"))
        fifo = self.store.fifo(self.node, "hastd")
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        keep = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)   # never see EOF between kicks
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "quit", True))
        with self.store.locked(write=True) as st:
            me = node_state(st, self.node)
            me["hastd_pid"] = os.getpid()
            me["blockio_pid"] = server
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
            blockio.stop(server, mount)

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
            creating: list = []
            for name, w in self.workers.items():
                r = st["hast"].get(name)
                if r is None or r["gen"].get(self.node) != w.gen:
                    continue
                if w.role == "secondary":
                    until = r.get("secondary_until", {}).get(self.node, 0)
                    if until > now:
                        wake = min(wake, until)
                    continue
                if (name, w.gen) in self.hung:
                    continue
                looking = self.primary_worker(st, r, name, w.gen, now, creating)
                if looking is not None:
                    wake = min(wake, looking)
            create_devices(self.store, self.node, creating)
        return wake

    def primary_worker(self, st: dict, r: dict, name: str, gen: int, now: float,
                       creating: list) -> float | None:
        """hastd_primary(): init_ggate() (the device, after hast_device_delay) comes before
        init_remote(), so the device exists while the worker still waits for its peer; its
        gate stalls I/O until the wait ends. Devices due now are added to `creating`.
        Returns when to look again (None: nothing due)."""
        waiting = self.peer_wait(st, r, name, gen, now)
        if not r["device"].get(self.node):
            due = r["device_due"].get(self.node, now)
            if due > now:
                return due if waiting is None else min(due, waiting)
            creating.append((name, r["image"],
                             blockio.stall() if waiting is not None else blockio.OPEN))
            r["device"][self.node] = True
            log(name, "primary", f"Device hast/{name} created.")
            if waiting is not None:
                self.stalled.add(name)
        elif waiting is None and name in self.stalled:
            self.stalled.discard(name)
            blockio.Control(blockio_paths(self.store, self.node)[1]).set_gate(
                device_name(name), blockio.OPEN)
        return waiting

    def peer_wait(self, st: dict, r: dict, name: str, gen: int, now: float) -> float | None:
        """The new primary's wait for its peer (hast.py become_primary() records why):
          primary: the connected peer answered "acts as primary" with the wait flag; the
                   worker waits hr_timeout for it to become secondary, then "starting anyway"
                   (primary.c hastd_primary()): both run primary, recorded as a violation;
          connect: the peer is down or cut off and sends no RST: proto_connect_wait(conn,
                   hr_timeout) blocks up to the timeout, then the worker runs degraded
                   (a violation too when the cut-off peer is primary).
        Returns when to look again while the wait lasts, None once I/O may go on."""
        wait = r.get("peer_wait", {}).get(self.node)
        if not wait or wait["gen"] != gen:
            return None
        peer = next((n for n in r["nodes"] if n != self.node), "")
        peer_primary = r["role"].get(peer) == "primary"
        if wait["why"] == "primary":
            done = not peer_primary             # the peer stepped down and said so
        else:                                   # reachable again: a refusal (RST) or a peer
            done = connected(st, self.node, peer) and (   # that is not primary ends it
                st["nodes"][peer].get("hastd") != "running" or not peer_primary)
        if not wait.get("logged"):
            wait["logged"] = True
            if wait["why"] == "primary":
                log(name, "primary", "Waiting for remote node to become secondary for "
                    f"{st['settings']['hast_peer_primary_wait']:g}s.")
        if done:
            del r["peer_wait"][self.node]
            return None
        if now < wait["until"]:
            return wait["until"]
        del r["peer_wait"][self.node]
        addr = st["nodes"].get(peer, {}).get("addr", peer)
        if wait["why"] == "primary":
            log(name, "primary", "Remote node is still primary, starting anyway.")
            how = "started primary anyway after waiting for it to become secondary"
        else:
            # primary_connect(): pjdlog_errno() after proto_connect_wait() ran out
            log(name, "primary", f"Unable to connect to {addr}: Operation timed out.")
            how = "started primary degraded after failing to connect to it"
        if peer_primary:
            self.store.violation("two_hast_primaries", f"HAST resource {name}: {self.node} "
                                 f"{how} while {peer} is primary (both run degraded; "
                                 "docs/reference/hast.md, sbin/hastd/primary.c "
                                 "hastd_primary())", node=self.node, resource=name)
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
            self.stalled.discard(name)
        for w in stopping:
            w.reap()


def log(name: str, role: str, message: str) -> None:
    """pjdlog's form: "[name] (role) message" (the daemon's stderr is run/hastd.log)."""
    sys.stderr.write(f"[{name}] ({role}) {message}\n")


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
