"""Two simulated nodes driven through the real CLI (`python -m hahooks ...`), for the
replication kind tests: each node gets its own config, state dir and sim environment."""
from __future__ import annotations

import contextlib
import itertools
import os
import textwrap

import pytest

from conftest import hahooks_env, run_hahooks

_seq = itertools.count()


def unique(prefix: str = "rk") -> str:
    """Names that end up in process titles (`hastd: NAME (secondary)`) must not collide with
    other tests running on this machine at the same time."""
    return f"{prefix}{os.getpid() % 100000}x{next(_seq)}"


class SimCluster:
    def __init__(self, tmp_path, world, nodes=("nodea", "nodeb")):
        self.tmp = tmp_path
        self.world = world
        self.nodes = nodes
        self.configs: dict[str, str] = {}
        for n in nodes:
            world.add_node(n)

    def dev(self, node: str, *parts: str) -> str:
        return os.path.join(self.world.dev_dir(node), *parts)

    def write(self, node: str, body: str, node_extra: str = "") -> str:
        path = self.tmp / f"{node}.toml"
        path.write_text(textwrap.dedent(f"""\
            [node]
            name = "{node}"
            platform = "freebsd"
            dev_dir = "{self.world.dev_dir(node)}"
            state_dir = "{self.tmp / ('state-' + node)}"
            log_file = "{self.tmp / (node + '.jsonl')}"
            syslog = false
            """) + textwrap.dedent(node_extra) + "\n" + textwrap.dedent(body))
        os.chmod(path, 0o600)
        self.configs[node] = str(path)
        return str(path)

    def env(self, node: str) -> dict:
        return self.world.node_env(node, base=hahooks_env())

    def hh(self, node: str, *args, check=None, timeout=120):
        return run_hahooks(*args, "-c", self.configs[node], env=self.env(node),
                           timeout=timeout, check=check)

    def run(self, node: str, *argv: str):
        """A simulated tool as `node` runs it."""
        return self.world.run(node, *argv)

    def commands(self, node: str, tool: str) -> list[list[str]]:
        return [c["argv"] for c in self.world.commands(node)
                if c.get("argv") and os.path.basename(c["argv"][0]) == tool]

    def assert_no_violations(self) -> None:
        assert self.world.violations() == [], self.world.violations()


@pytest.fixture
def world(tmp_path):
    """A fresh simulated world per test (import this fixture into the test module)."""
    from hahooks.lab.sim import World

    w = World(str(tmp_path / "world"))
    yield w
    w.close()


def layer(name: str, kind: str, **params) -> str:
    """One [[resource]] table."""
    from hahooks.lab.drill.tomlout import dumps

    return "\n" + dumps({"resource": [{"name": name, "kind": kind, **params}]})


class SandboxCluster(SimCluster):
    """SimCluster whose nodes run in sandbox nodes (hahooks.lab.sandbox: own mount, PID and UTS
    namespaces, zfs-fuse when asked): each node's mounts, processes, simulated hastd and
    `hastd: X (secondary)` workers are its own, and a crash takes them all, as on two
    machines. The world must be made with autostart=False (the first hastctl in a node
    starts that node's hastd there)."""

    def __init__(self, tmp_path, world, lab, nodes=("nodea", "nodeb"), zfs: bool = False):
        super().__init__(tmp_path, world, nodes)
        self.lab, self.zfs = lab, zfs
        self.boxes = {}
        for n in nodes:
            self.boot(n)

    def boot(self, node: str) -> None:
        """Power on (again): fresh namespaces, zfs-fuse, hastd with every resource in init."""
        self.boxes[node] = self.lab.node(node, zfs=self.zfs)
        if self.zfs:
            self.boxes[node].start_zfs()
        if node in self.world.state()["nodes"] and not self.world.state()["nodes"][node]["up"]:
            self.world.restart(node)

    def crash(self, node: str) -> None:
        """Pull the plug: the simulator's view of the node and every process and mount."""
        self.world.crash(node)
        self.boxes[node].crash()

    def env(self, node: str) -> dict:
        return self.world.node_env(node, base=self.lab.node_env(node))

    def hh(self, node: str, *args, check=None, timeout=120):
        argv = self.lab.hahooks_argv(*args, "-c", self.configs[node])
        proc = self.boxes[node].run(argv, check=False, timeout=timeout, env=self.env(node))
        if check is not None:
            assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    def run(self, node: str, *argv: str):
        return self.boxes[node].run(list(argv), check=False, env=self.env(node))

    def mounted(self, node: str, under: str) -> list[str]:
        prefix = os.path.realpath(under).rstrip("/") + "/"
        # the simulator's blockio server (the node's /dev/hast) is no mount a layer made
        return [mp for _, mp, fstype in self.boxes[node].mounts()
                if mp.startswith(prefix) and fstype != "fuse.blockio"]


@pytest.fixture
def sandbox(tmp_path):
    """A sandbox Lab (namespaces) and a world whose daemons run inside its nodes."""
    from conftest import require_root, require_tool
    from hahooks.lab.sandbox import Lab
    from hahooks.lab.sim import World

    require_root()
    require_tool("unshare", "nsenter", "mount", "losetup")
    w = World(str(tmp_path / "world"), autostart=False)
    with Lab(prefix=unique("rk").replace("x", "n")[:16], workdir=str(tmp_path / "lab")) as lab:
        try:
            yield w, lab
        finally:
            w.close()


@contextlib.contextmanager
def mounted_in(c: SandboxCluster, node: str, device: str, mountpoint):
    """A fresh ext4 on `device`, mounted inside `node` for the with-block. mkfs runs in the
    node too: a HAST device is a file of the node's blockio mount, seen in its namespace."""
    assert c.run(node, "mkfs.ext4", "-q", "-F", device).returncode == 0
    os.makedirs(mountpoint, exist_ok=True)
    assert c.run(node, "mount", device, str(mountpoint)).returncode == 0
    try:
        yield str(mountpoint)
    finally:
        assert c.run(node, "umount", str(mountpoint)).returncode == 0
