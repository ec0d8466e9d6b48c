"""The sandbox cluster the drill and the reliability figures run on: two sandbox nodes
(hahooks.lab.sandbox: network + mount + PID + UTS namespaces, own hostid and zfs-fuse), a
client namespace on the same bridge, the simulated world (hahooks.lab.sim), the fence desk and
one devd-like event queue per node. Everything is torn down in close(), also after a
failure or Ctrl-C (unless --keep)."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from typing import TextIO

from hahooks import waits
from hahooks.lab.drill import (events, fence, provision, scenarios, services, stacks,
                               teardown, warm)
from hahooks.lab.drill.result import DrillError, Result, text_of
from hahooks.lab.drill.timeline import Timeline
from hahooks.errors import WaitTimeout

LIB = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
NODES = ("nodea", "nodeb")
HOSTIDS = {"nodea": 0x0A0A0001, "nodeb": 0x0B0B0002}
CONVERGE_TIMEOUT = 90.0
BOOT_TIMEOUT = 30.0


def _heartbeat_running(stdout: str) -> bool:
    """Heartbeat's own reading of status output (docs/reference/heartbeat.md §2)."""
    import re

    if re.search(r"[Nn][Oo][Tt] .*[Rr]unning", stdout):
        return False
    return bool(re.search(r"[Rr]unning|OK", stdout))


def _subnet() -> tuple[str, int]:
    """10.99.(40..239).0/24, picked from the pid so concurrent drills do not collide on
    names (addresses live in our own namespaces anyway)."""
    third = 40 + os.getpid() % 200
    return f"10.99.{third}", third


class Cluster:
    def __init__(self, scenario: scenarios.Scenario, *, workdir: str | None = None,
                 keep: bool = False, progress: TextIO | None = None, fast: bool = True,
                 faults: bool = False, command_timeout: str = "30s", warm: bool = False):
        self.sc = scenario
        self.warm = warm                      # `hahooks agent` in each node that is up
        self.keep = keep
        self.progress = progress
        self.fast = fast
        self.faults = faults                  # fault shims on the nodes' PATH
        self.command_timeout = command_timeout
        if workdir and os.path.exists(workdir) and os.listdir(workdir):
            from hahooks.errors import UsageError
            raise UsageError(f"--workdir {workdir}: not empty (the drill removes it after)")
        self.workdir = os.path.abspath(workdir) if workdir else \
            tempfile.mkdtemp(prefix=f"hahooks-drill-{scenario.name}-", dir="/var/tmp")
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        net, third = _subnet()
        self.prefix = f"hhd{third}x{os.getpid() % 10000}"
        self.ips = {"nodea": f"{net}.1", "nodeb": f"{net}.2", "client": f"{net}.200"}
        self.cidr = f"{net}.0/24"
        self.nodes = NODES
        self.root = os.path.join(self.workdir, "root")
        self.bin = os.path.join(self.workdir, "bin")
        self.shims = os.path.join(self.workdir, "shims")
        self.timeline = Timeline()
        self.places: dict[str, scenarios.NodePlace] = {}
        self.lab = None
        self.net = None
        self.handles: dict = {}
        self.client = None
        self.world = None
        self.desk: fence.FenceDesk | None = None
        self.down: set[str] = set()
        self.service = services.service_for(scenario)
        self.fence_budget = 60.0
        self._queues: dict[str, threading.Lock] = {n: threading.Lock() for n in NODES}
        self._next_row = 1
        self._closed = False

    # -- progress ----------------------------------------------------------------------
    def mark(self, text: str, node: str = "", **data) -> None:
        self.timeline.mark(text, node, **data)
        if self.progress:
            print(f"drill: {node + ': ' if node else ''}{text}", file=self.progress,
                  flush=True)

    def next_row(self, count: int) -> int:
        """The first of `count` fresh row numbers (never reused, even for failed writes)."""
        first, self._next_row = self._next_row, self._next_row + count
        return first

    def peer(self, node: str) -> str:
        return NODES[1] if node == NODES[0] else NODES[0]

    # -- set-up ------------------------------------------------------------------------
    def start(self) -> None:
        from hahooks.lab.sandbox import Lab
        from hahooks.lab.sim import World

        for d in (self.root, self.bin):
            os.makedirs(d, exist_ok=True)
        self._write_bin()
        self.world = World(os.path.join(self.workdir, "world"), autostart=False)
        if self.fast:
            self.world.configure(hast_device_delay=0.05)
        self.lab = Lab(prefix=self.prefix, workdir=os.path.join(self.workdir, "lab"))
        self.lab.__enter__()
        self.net = self.lab.network(self.cidr)
        for node in NODES:
            place = self._place(node)
            for sub in ("etc", "run", "state"):
                os.makedirs(os.path.join(place.private, sub), mode=0o700, exist_ok=True)
            os.chmod(place.state_dir, 0o700)
            self.world.add_node(node, addr=self.ips[node])
            self._write_config(node)
            self.timeline.logs[node] = place.log_file
        for node in NODES:
            self.handles[node] = self._new_node(node)
        self.client = self.lab.node("client", ip=self.ips["client"], net=self.net,
                                    stubs=True)
        self.desk = fence.FenceDesk(os.path.join(self.workdir, "fence"), NODES,
                                    self._fence_crash, self.is_up,
                                    on_event=lambda n, t: self.mark(t, n)).start()
        provision.provision(self)
        for node in NODES:
            self._write_config(node)
            r = self.hahooks(node, "check")
            if not r.ok:
                raise DrillError(f"{node}: hahooks check failed: {r.tail()}")
        for node in NODES if self.warm else ():
            warm.start_agent(self, node)
        self.mark(f"sandbox up: {self.sc.name} in {self.workdir}")

    def _new_node(self, node: str):
        h = self.lab.node(node, ip=self.ips[node], net=self.net, hostid=HOSTIDS[node],
                          zfs=self.sc.zfs, stubs=True,
                          binds=provision.node_binds(self.places[node]))
        if self.sc.zfs:
            h.start_zfs()
        return h

    def _place(self, node: str) -> scenarios.NodePlace:
        peer = self.peer(node)
        private = os.path.join(self.workdir, "nodes", node)
        place = scenarios.NodePlace(
            name=node, peer=peer, ip=self.ips[node], peer_ip=self.ips[peer],
            dev_dir=self.world.dev_dir(node), root=self.root, private=private,
            fence=[os.path.join(self.bin, "hahooks-sandbox-fence"), "--desk",
                   os.path.join(self.workdir, "fence"), "--node", node, "--target", peer],
            hahooks=os.path.join(self.bin, "hahooks"))
        self.places[node] = place
        return place

    def _write_bin(self) -> None:
        """`hahooks`, `hahooks-sandbox-fence` and the MariaDB rc command, running this
        checkout inside the nodes; the fault shims when asked for."""
        for name, module in (("hahooks", "hahooks"),
                             ("hahooks-sandbox-fence", "hahooks.lab.drill.fence"),
                             ("mariadb-drill", "hahooks.lab.drill.mariadb")):
            path = os.path.join(self.bin, name)
            with open(path, "w") as fh:
                fh.write(f"#!/bin/sh\nPYTHONPATH={LIB} exec {sys.executable} -m {module} "
                         "\"$@\"\n")
            os.chmod(path, 0o755)
        if self.faults:
            from hahooks.lab.drill import shim

            shim.install(self.shims, self._path())

    def _path(self) -> str:
        dirs = [self.bin, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
                "/sbin", "/bin"]
        return os.pathsep.join(([self.shims] if self.faults else []) + dirs)

    def _write_config(self, node: str) -> None:
        place = self.places[node]
        index = NODES.index(node)
        example = scenarios.load_example(self.sc.example_path(index))
        data = scenarios.overlay(example, place, self.service.layer(self, node),
                                 stacks.tweaks(), self.sc.add_service)
        data["node"]["command_timeout"] = self.command_timeout
        if self.faults:     # a layer retrying a step that keeps failing gives up sooner
            for layer in data["resource"]:
                layer["timeout"] = "25s"
        scenarios.write_config(data, place.config_path)

    def world_image(self, path: str, size_mb: int) -> str:
        """A sparse disk image at `path` (a node's local disk file), made once."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            with open(path, "wb") as fh:
                fh.truncate(size_mb * 1024 * 1024)
        return path

    def env(self, node: str) -> dict:
        env = {"PATH": self._path(),
               "PYTHONPATH": LIB, "HOME": "/root", "LANG": "C.UTF-8",
               "HAHOOKS_CONFIG": self.places[node].config_path}
        return self.world.node_env(node, base=env) if self.world else env

    # -- running things in nodes --------------------------------------------------------
    def run(self, node: str, argv, timeout: float = 120, input: str | None = None) -> Result:
        if node in self.down:
            raise DrillError(f"{node} is down")
        import subprocess

        handle = self.client if node == "client" else self.handles[node]
        started = time.monotonic()
        try:
            proc = handle.run([str(a) for a in argv], check=False, timeout=timeout,
                              env=self.env(node if node != "client" else NODES[0]),
                              input=input)
        except subprocess.TimeoutExpired as exc:
            return Result(argv, 124, text_of(exc.stdout), text_of(exc.stderr) +
                          f"\ntimed out after {timeout:g}s", time.monotonic() - started)
        return Result(argv, proc.returncode, proc.stdout or "", proc.stderr or "",
                      time.monotonic() - started)

    def popen(self, node: str, argv, **kw):
        handle = self.client if node == "client" else self.handles[node]
        return handle.popen([str(a) for a in argv],
                            env=self.env(node if node != "client" else NODES[0]), **kw)

    def hahooks(self, node: str, *args, timeout: float = 180) -> Result:
        return self.run(node, [self.places[node].hahooks, *args, "-c",
                               self.places[node].config_path], timeout=timeout)

    # -- events -------------------------------------------------------------------------
    def event(self, node: str, state: str, quiet: bool = False) -> Result:
        """Deliver a CARP/VRRP state change as the scenario's daemon would (serial per
        node, like devd): run the exact command line it runs, inside the node."""
        calls = stacks.event_calls(self.sc.wiring, provision.wiring_text(self, node),
                                   self.places[node], state)
        argv = calls[-1]
        if not quiet:
            shown = argv[-1] if argv[0] == "sh" else " ".join(argv)
            shown = shown.replace(self.workdir + "/", "")   # paths relative to the sandbox
            self.mark(f"{self.sc.wiring} {state}: {shown}", node, event=state)
        with self._queues[node]:
            for call in calls:
                r = self.run(node, call, timeout=180)
                if call[-1] == "status" and _heartbeat_running(r.stdout):
                    break          # ResourceManager: "running" means owned, skip start
        if not r.ok:
            self.mark(f"hook exited {r.returncode}: {r.tail()}", node)
        return r

    def elect(self, winner: str) -> None:
        """CARP elects `winner`: the loser hears BACKUP, the winner MASTER, at once (both
        hooks run concurrently, as on two machines)."""
        loser = self.peer(winner)
        t = threading.Thread(target=self.event, args=(loser, "BACKUP"))
        t.start()
        delay = events.MASTER_DOWN.get(self.sc.wiring, 0.0)
        if delay:       # the new master takes over only once the old one fell silent
            threading.Event().wait(delay)
        self.event(winner, "MASTER")
        t.join()
        self.converge(loser)
        self.converge(winner)

    def background_event(self, node: str, state: str) -> threading.Thread:
        t = threading.Thread(target=self.event, args=(node, state))
        t.start()
        return t

    def background_elect(self, winner: str) -> threading.Thread:
        """elect() without waiting for convergence (the caller joins, then converges)."""
        def both():
            t = self.background_event(self.peer(winner), "BACKUP")
            self.event(winner, "MASTER")
            t.join()
        t = threading.Thread(target=both)
        t.start()
        return t

    def converge(self, node: str, timeout: float = CONVERGE_TIMEOUT) -> dict:
        """Wait until the node's newest desire is done and no worker holds the lock."""
        from hahooks.state import StateDir, TransitionLock

        state = StateDir(self.places[node].state_dir)

        def done():
            desire, finished = state.desire(), state.done()
            if desire is None:
                return {"seq": 0}
            if finished and finished.get("seq", 0) >= desire.seq and \
                    not TransitionLock(state).held_elsewhere():
                return finished
            return None

        try:
            return waits.wait_for(done, timeout, f"{node} to converge", ceiling=0.05)
        except WaitTimeout as exc:
            raise DrillError(f"{node}: {exc.one_line()}") from None

    def status(self, node: str) -> dict:
        r = self.run(node, [self.places[node].hahooks, "status", "--json", "-c",
                            self.places[node].config_path], timeout=60)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {"status": "UNKNOWN", "summary": r.tail(), "layers": []}

    def role(self, node: str) -> str:
        """master (whole stack held), slave (nothing held), down, or the status summary."""
        if node in self.down:
            return "down"
        st = self.status(node)
        layers = st.get("layers", [])
        states = {layer["state"] for layer in layers}
        if layers and states == {"held"}:
            return "master"
        if layers and states == {"released"}:
            return "slave"
        return st.get("summary", "unknown")

    def holder(self) -> str | None:
        for node in NODES:
            if self.role(node) == "master":
                return node
        return None

    # -- failures -----------------------------------------------------------------------
    def is_up(self, node: str) -> bool:
        return node in self.handles and node not in self.down

    def crash(self, node: str, why: str) -> None:
        """Pull the plug: SIGKILL every process of the node, wait until its kernel state
        (loop devices, FUSE mounts, open vdevs) is released, then tell the simulator."""
        if node in self.down:
            return
        self.mark(f"crash ({why})", node)
        images = teardown.images(self.workdir, self.root)
        self.handles[node].crash()
        self.down.add(node)
        self.world.crash(node)
        teardown.wait_released(images)
        self.mark("down; its loop devices and FUSE mounts are released", node)

    def _fence_crash(self, target: str, why: str) -> None:
        self.crash(target, why)

    def boot(self, node: str) -> None:
        """Power the node on again: new namespaces, zfs-fuse, hastd in init (sim)."""
        if node not in self.down:
            return
        self.handles[node] = self._new_node(node)     # booting the same name = a reboot
        self.down.discard(node)
        # the node's new interface has a new MAC: a booting host announces itself
        # (gratuitous ARP); here the others simply forget the old neighbour entry
        for other in ("client", self.peer(node)):
            if other == "client" or other not in self.down:
                self.run(other, ["ip", "neigh", "flush", "to", self.ips[node]], timeout=30)
        self.world.restart(node)
        provision.after_boot(self, node)
        self.mark("booted", node)
        if self.warm:
            warm.start_agent(self, node)

    # -- checks -------------------------------------------------------------------------
    def violations(self) -> list[dict]:
        return self.world.violations() if self.world else []

    def __enter__(self) -> "Cluster":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        kept = self.close()
        if kept and self.progress:
            print(kept, file=self.progress)

    # -- teardown -----------------------------------------------------------------------
    def close(self) -> str:
        """Tear everything down (or leave it up with --keep: returns how to enter it)."""
        if self._closed:
            return ""
        self._closed = True
        self.timeline.freeze()
        if self.keep and self.lab is not None:
            return teardown.keep(self)
        return teardown.remove(self)
