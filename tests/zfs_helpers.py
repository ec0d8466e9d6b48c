"""zfs-fuse nodes for the zpool tests: each node of hahooks.lab.sandbox runs its own zfs-fuse
(private /run, its own hostid) in its own mount namespace, so a pool is only ever used by
a daemon the test started. hahooks runs *inside* a node (`python3 -m hahooks ...`)."""
from __future__ import annotations

import os
import sys

import pytest

from conftest import LIB, require, require_root, require_tool

HOSTIDS = {"nodea": 0x0A0A0001, "nodeb": 0x0B0B0002}
POOL = "stpool"
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sandbox_lab():
    require_root()
    require_tool("zfs-fuse", "zpool", "nsenter", "unshare", "ip")
    try:
        from hahooks.lab.sandbox import Lab
    except ImportError as exc:
        require(False, f"hahooks.lab.sandbox ({exc})")
    return Lab


@pytest.fixture
def zlab(tmp_path):
    """A Lab with nodes a and b (different hostids, zfs-fuse running in each) and one
    128 MB file vdev holding an exported pool `stpool` mounted at <tmp>/mnt/stpool."""
    Lab = sandbox_lab()
    with Lab(prefix=f"st{os.getpid() % 10000}", workdir=str(tmp_path / "lab")) as lab:
        nodes = {}
        for name, hostid in HOSTIDS.items():
            nodes[name] = lab.node(name, hostid=hostid, zfs=True)
            nodes[name].start_zfs()
        vdev = lab.file_vdev("st-z0", 128)
        mp = str(tmp_path / "mnt" / POOL)
        a = nodes["nodea"]
        a.run(["zpool", "create", "-m", mp, POOL, vdev])
        a.run(["zpool", "export", POOL])
        yield {"lab": lab, "a": a, "b": nodes["nodeb"], "vdev": vdev,
               "dir": os.path.dirname(vdev), "mp": mp, "tmp": tmp_path}


def hahooks_in(node, *args, check=None, timeout=120):
    """`python3 -m hahooks ARGS` inside the node; returns a CompletedProcess."""
    proc = node.run([sys.executable, "-m", "hahooks", *map(str, args)], check=False,
                    timeout=timeout, env={"PATH": NODE_PATH, "PYTHONPATH": LIB})
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def pools(node) -> dict[str, str]:
    """{pool: health} as the node's zfs-fuse sees it."""
    out = node.run(["zpool", "list", "-H", "-o", "name,health"], check=False).stdout
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def mounted_in(node, path: str) -> bool:
    return any(mp == path for _, mp, _ in node.mounts())


def node_config(directory, node: str, body: str, node_extra: str = "") -> str:
    """A 0600 config for one node, with its own state dir and log in `directory` (two
    nodes must never share a state dir: it holds the transition lock)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "hahooks.toml")
    with open(path, "w") as fh:
        fh.write(f'[node]\nname = "{node}"\nstate_dir = "{directory}/state"\n'
                 f'log_file = "{directory}/hahooks.jsonl"\nsyslog = false\n'
                 + node_extra + "\n" + body)
    os.chmod(path, 0o600)
    return path
