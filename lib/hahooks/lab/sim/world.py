"""World: the Python API tests and the drill use to build and inspect a simulated cluster.

    w = World(root)                         # creates/opens the world directory
    w.add_hast("r0", size_mb=64, nodes=("nodea", "nodeb"), primary=None)
    env = w.node_env("nodea")               # PATH (sim bin first), HAHOOKS_SIM_ROOT/NODE
    subprocess.run(["hastctl", "role", "primary", "r0"], env=env)
    assert w.violations() == []

Everything lives in files under `root`, so several processes (both nodes, the drill, the
test) share one consistent world; see state.py for the layout and docs/simulator.md.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from hahooks.lab.sim import faults, ggate_client, hastd, shutdown
from hahooks.lab.sim.state import (COMMANDS, VIOLATIONS, Store, connected, link_device,
                                   make_image, node_state)

TOOLS = ("hastctl", "hastd", "gmirror", "ggatec", "ggated", "mdconfig", "drbdadm",
         "drbdsetup", "sysctl", "jot")
LIB = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
LAUNCHER = """#!{python} -S
# hahooks simulator launcher: runs the simulated {tool} (see docs/simulator.md)
import sys
sys.path.insert(0, {lib!r})
from hahooks.lab.sim.main import run
run({tool!r})
"""
MB = 1 << 20
POLL = 0.01
CLOSE_TIMEOUT = 5.0


class World:
    def __init__(self, root: str, *, autostart: bool = True, **settings):
        """`autostart`: start each node's simulated hastd (in the caller's namespaces) when
        a HAST resource is added. The drill, whose nodes live in their own namespaces,
        passes False and runs `hastd` inside each node instead."""
        self.root = os.path.abspath(root)
        self.store = Store(self.root)
        self.autostart = autostart
        for d in ("images", "bin", "nodes"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        self.bin_dir = os.path.join(self.root, "bin")
        self._write_launchers()
        with self.store.locked(write=True) as st:
            st["settings"].update(settings)

    # -- set-up ------------------------------------------------------------------------
    def _write_launchers(self) -> None:
        for tool in TOOLS:
            path = os.path.join(self.bin_dir, tool)
            text = LAUNCHER.format(python=sys.executable, lib=LIB, tool=tool)
            try:
                with open(path) as f:
                    if f.read() == text:
                        continue
            except FileNotFoundError:
                pass
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)

    def configure(self, **settings) -> None:
        """Change timing settings (state.DEFAULT_SETTINGS), e.g. hast_device_delay=0.5."""
        with self.store.locked(write=True) as st:
            st["settings"].update(settings)

    def add_node(self, name: str, addr: str | None = None) -> None:
        with self.store.locked(write=True) as st:
            node = node_state(st, name)
            if addr:
                node["addr"] = addr
        for sub in ("dev", "run"):
            os.makedirs(self.store.node_dir(name, sub), exist_ok=True)

    def image(self, name: str, size_mb: int = 64) -> str:
        """A sparse image under images/ (created once), e.g. for md or ggated exports."""
        path = os.path.join(self.root, "images", name)
        make_image(path, size_mb * MB)
        return path

    def add_hast(self, name: str, size_mb: int = 64, nodes=("nodea", "nodeb"),
                 primary: str | None = None, *, local: dict | None = None,
                 replication: str = "memsync", device_delay: float | None = None,
                 roles: dict | None = None) -> str:
        """One HAST resource on both nodes, backed by ONE shared image (images/hast-NAME.img):
        HAST replicates synchronously, so the primary's data and what the other node exposes
        after failover are the same bytes. Roles: `primary` gets primary (device present at
        once), the others secondary; primary=None leaves both secondary. Returns the image."""
        for n in nodes:
            self.add_node(n)
        image = os.path.join("images", f"hast-{name}.img")
        make_image(self.store.path(image), size_mb * MB)
        with self.store.locked(write=True) as st:
            index = len(st["hast"]) + 1
            want = {n: ("primary" if n == primary else "secondary") for n in nodes}
            want.update(roles or {})
            st["hast"][name] = {
                "nodes": list(nodes), "size": size_mb * MB, "image": image,
                "local": {n: (local or {}).get(n, f"/dev/ada{index}") for n in nodes},
                "replication": replication, "device_delay": device_delay,
                "role": want, "gen": {n: 0 for n in nodes},
                "device": {n: False for n in nodes}, "device_due": {n: 0.0 for n in nodes},
                "primary_since": {}, "dirty": 0, "dirty_at": time.time()}
        if self.autostart:
            for n in nodes:
                self.start_hastd(n)
        self._kick("hastd")
        if self.autostart:     # the primary's worker makes its device (a blockio file)
            for n in nodes:
                if want[n] == "primary":
                    self._wait_device(name, n)
        return self.store.path(image)

    def _wait_device(self, name: str, node: str) -> None:
        deadline = time.monotonic() + CLOSE_TIMEOUT
        device = os.path.join(self.dev_dir(node), "hast", name)
        while not os.path.exists(device) and time.monotonic() < deadline:
            time.sleep(POLL)

    def set_hast(self, name: str, *, dirty: int | None = None,
                 device_delay: float | None = None, replication: str | None = None) -> None:
        with self.store.locked(write=True) as st:
            r = st["hast"][name]
            if dirty is not None:
                r["dirty"], r["dirty_at"] = dirty, time.time()
            if device_delay is not None:
                r["device_delay"] = device_delay
            if replication is not None:
                r["replication"] = replication

    def add_drbd(self, name: str, size_mb: int = 64, nodes=("nodea", "nodeb"),
                 primary: str | None = None, *, minor: int | None = None,
                 up: bool = True) -> str:
        """One DRBD resource (8.4 or 9 as configure(drbd_version=) says, drbd.py) on both
        nodes, backed by ONE shared image (protocol C: both disks hold the same bytes). Both
        up (each with /dev/drbdN, whatever its role), connected, UpToDate; `primary` gets
        Primary. Returns the image path."""
        for n in nodes:
            self.add_node(n)
        image = os.path.join("images", f"drbd-{name}.img")
        make_image(self.store.path(image), size_mb * MB)
        with self.store.locked(write=True) as st:
            if minor is None:
                minor = len(st["drbd"])
            st["drbd"][name] = {
                "nodes": list(nodes), "minor": minor, "image": image, "size": size_mb * MB,
                "up": {n: up for n in nodes}, "standalone": {n: False for n in nodes},
                "role": {n: "Primary" if n == primary else "Secondary" for n in nodes},
                "disk": {n: "UpToDate" for n in nodes}, "ahead": {}, "sync": None}
        for n in nodes if up else ():
            link_device(self.store.path(image), os.path.join(self.dev_dir(n), f"drbd{minor}"))
        return self.store.path(image)

    def set_drbd(self, name: str, node: str, *, disk: str | None = None,
                 up: bool | None = None, standalone: bool | None = None) -> None:
        """Force a DRBD state, e.g. disk="Outdated" or "Inconsistent" (no UpToDate data)."""
        with self.store.locked(write=True) as st:
            r = st["drbd"][name]
            if disk is not None:
                r["disk"][node] = disk
            if up is not None:
                r["up"][node] = up
                device = os.path.join(self.dev_dir(node), f"drbd{r['minor']}")
                if up:
                    link_device(self.store.path(r["image"]), device)
                else:
                    unlink_device(device)
            if standalone is not None:
                r["standalone"][node] = standalone

    def set_gmirror_progress(self, node: str, mirror: str, prov: str, percent: int) -> None:
        """Put a SYNCHRONIZING component at `percent` (for format tests): the progress then
        advances at gmirror_sync_rate, so set that low to hold it."""
        with self.store.locked(write=True) as st:
            m = st["gmirror"][node][mirror]
            c = next(c for c in m["components"] if c["prov"] == prov)
            from hahooks.lab.sim.mirror_model import mediasize
            rate = st["settings"]["gmirror_sync_rate"]
            c["state"] = "SYNCHRONIZING"
            c["sync_start"] = time.time() - (mediasize(m) * percent / 100 + 1) / rate

    # -- nodes, daemons, failures ---------------------------------------------------------
    def node_env(self, node: str, base: dict | None = None) -> dict:
        env = dict(os.environ if base is None else base)
        env["PATH"] = self.bin_dir + os.pathsep + env.get("PATH", os.defpath)
        env["HAHOOKS_SIM_ROOT"] = self.root
        env["HAHOOKS_SIM_NODE"] = node
        return env

    def dev_dir(self, node: str) -> str:
        path = self.store.dev_dir(node)
        os.makedirs(path, exist_ok=True)
        return path

    def run(self, node: str, *argv: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        """Run a (simulated) command as `node` would: handy in tests."""
        return subprocess.run(list(argv), env=self.node_env(node), capture_output=True,
                              text=True, timeout=timeout, **kw)

    def start_hastd(self, node: str) -> None:
        """rc.d/hastd start on `node`, in the caller's namespaces."""
        self.add_node(node)
        with self.store.locked(write=True) as st:
            st["nodes"][node]["hastd"] = "running"
        if not self.store.alive(node, "hastd") and st["nodes"][node]["up"]:
            subprocess.run([os.path.join(self.bin_dir, "hastd")], env=self.node_env(node),
                           check=True, stdin=subprocess.DEVNULL, capture_output=True)

    def stop_hastd(self, node: str) -> None:
        """rc.d/hastd stop: `hastctl role init all` (devices destroyed), daemon exits."""
        with self.store.locked(write=True) as st:
            st["nodes"][node]["hastd"] = "stopped"
            self._drop_hast_roles(st, node)
        self._kick("hastd")

    def crash(self, node: str) -> None:
        """`node` dies: the peer sees the connection drop, the node's worker processes end,
        its devices vanish (its kernel is gone) and, when it boots again (restart()), every
        HAST resource is back in init (docs/reference/hast.md §3), DRBD down, md/ggate units gone."""
        from hahooks.lab.sim import crash as crash_mod
        from hahooks.lab.sim import drbd
        with self.store.locked(write=True) as st:
            for peer in list(st["nodes"]):
                if peer != node and connected(st, node, peer):
                    hastd.link_lost(st, node, peer)
            me = node_state(st, node)
            me["up"] = False
            me["boot"] = me.get("boot", 0) + 1
            self._drop_hast_roles(st, node)
            crash_mod.node_down(self.store, st, node)
            drbd.refresh_all(st, self.store)
        self._kick("hastd")
        self._kill_recorded(node)
        self._detach_blockio(node)

    def restart(self, node: str) -> None:
        """Boot a crashed node again (hastd starts with every resource in init)."""
        with self.store.locked(write=True) as st:
            me = node_state(st, node)
            me["up"] = True
            me["hastd"] = "running"
            me["hastd_workers"] = {}
        if self.autostart:
            self.start_hastd(node)
        self._kick("hastd")

    def partition(self, a: str, b: str) -> None:
        """Cut the replication link between two nodes (both stay up)."""
        from hahooks.lab.sim import drbd
        with self.store.locked(write=True) as st:
            if sorted((a, b)) not in [sorted(p) for p in st["partitions"]]:
                if connected(st, a, b):
                    hastd.link_lost(st, a, b)
                    ggate_client.server_lost(self.store, st, a, client=b)
                    ggate_client.server_lost(self.store, st, b, client=a)
                st["partitions"].append(sorted((a, b)))
            drbd.refresh_all(st, self.store)
        self._kick("hastd")

    def heal(self, a: str, b: str) -> None:
        """Restore the link (DRBD reconnects: resync, or split brain when both wrote)."""
        from hahooks.lab.sim import drbd
        with self.store.locked(write=True) as st:
            st["partitions"] = [p for p in st["partitions"] if sorted(p) != sorted((a, b))]
            drbd.refresh_all(st, self.store)
        self._kick("hastd")

    def _drop_hast_roles(self, st: dict, node: str) -> None:
        mine = [name for name, r in st["hast"].items() if node in r["nodes"]]
        for name in mine:
            r = st["hast"][name]
            r["role"][node] = "init"
            r["gen"][node] = r["gen"].get(node, 0) + 1
            r["device"][node] = False
        hastd.destroy_devices(self.store, node, mine)

    def _kick(self, daemon: str) -> None:
        for node in os.listdir(self.store.path("nodes")):
            self.store.kick(node, daemon)

    def _kill_recorded(self, node: str) -> None:
        shutdown.kill_recorded(self.store, self.root, node)

    def close(self) -> None:
        """Stop every node daemon (hastd, ggated, ggatec loops, the GEOM server) of this world
        (tests call it in teardown)."""
        shutdown.stop_all(self.store, self.root)

    def _detach_blockio(self, node: str) -> None:
        shutdown.detach_blockio(self.store, node)

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- faults and latencies ----------------------------------------------------------
    def inject(self, pattern: str, fail: int | None = None, stderr: str = "", *,
               stdout: str = "", hang: bool = False, latency: float = 0.0,
               node: str | None = None, times: int | None = None,
               apply: bool = False) -> int:
        """Break commands matching `pattern` (fnmatch over "tool arg ..."): exit `fail` with
        `stderr` (before acting, or after acting with apply=True), `hang` until killed,
        and/or add `latency` seconds; on `node` only; at most `times` times. Returns an id."""
        with faults.editing(self.root) as data:
            rule_id = max([r["id"] for r in data["rules"]], default=0) + 1
            data["rules"].append({"id": rule_id, "pattern": pattern, "fail": fail,
                                  "stderr": stderr, "stdout": stdout, "hang": hang,
                                  "latency": latency, "node": node, "times": times,
                                  "apply": apply, "used": 0})
        return rule_id

    def clear_faults(self, rule_id: int | None = None) -> None:
        with faults.editing(self.root) as data:
            data["rules"] = [r for r in data["rules"] if rule_id not in (None, r["id"])]

    def fault_hits(self, rule_id: int) -> int:
        return next((r.get("used", 0) for r in faults.load(self.root)["rules"]
                     if r["id"] == rule_id), 0)

    def set_latency(self, cmd_pattern: str, seconds: float, node: str | None = None) -> None:
        """Fixed latency for every command matching the pattern (first match wins, in the
        order patterns were first set; setting a pattern again replaces its value)."""
        with faults.editing(self.root) as data:
            lat = data.setdefault("latency", [])
            for rule in lat:
                if rule["pattern"] == cmd_pattern and rule.get("node") == node:
                    rule["seconds"] = seconds
                    break
            else:
                lat.append({"pattern": cmd_pattern, "seconds": seconds, "node": node})

    # -- observation -------------------------------------------------------------------
    def violations(self) -> list[dict]:
        return self.store.read_log(VIOLATIONS)

    def record_violation(self, kind: str, detail: str, node: str | None = None) -> None:
        """For invariants only the drill can see (e.g. a pool imported on both nodes)."""
        self.store.violation(kind, detail, node=node, source="drill")

    def commands(self, node: str | None = None) -> list[dict]:
        return [c for c in self.store.read_log(COMMANDS) if node in (None, c["node"])]

    def state(self) -> dict:
        return self.store.read()

    def hast_role(self, name: str, node: str) -> str:
        return self.state()["hast"][name]["role"].get(node, "init")

