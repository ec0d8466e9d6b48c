"""What each scenario's stack is, as data and pure functions of it: the layers of a node's
config, which one holds the data, the devices the replication layers give, the commands
that create and release the storage, the private root directories the links layer needs,
the event command lines a daemon runs, and the drill's shorter waits. Nothing here runs
a command or knows the cluster: provision.py, services.py and the cluster do, with what
these functions return. A node is described by its scenarios.NodePlace."""
from __future__ import annotations

import os
import tomllib

from hahooks.lab.drill import events
from hahooks.lab.drill.result import DrillError

HAST_MB = 128
IMAGE_MB = 256
MIRROR_IMAGE_MB = 64
STORAGE = ("zpool", "filesystem")
# heartbeat-resource.d/hahooks of this checkout: haresources names it
HEARTBEAT_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))),
    "heartbeat-resource.d", "hahooks")


def tweaks() -> dict:
    """Shorter waits than production: the drill must stay quick, and a peer that does not
    let go is fenced after `secondary_wait` (docs/reference/hast.md §4). HAST's
    complete_wait stays under hast.conf's 20 s `timeout` (sbin/hastd/primary.c
    hastd_primary(): after it the primary starts "anyway"), and a peer that is not
    `complete` is fenced, never assumed down: the crash and partition stages rely on it."""
    return {
        "hast": {"secondary_wait": "3s", "device_wait": "10s", "complete_wait": "5s",
                 "unknown_peer": "fence"},
        "drbd": {"promote_wait": "5s"},
        "filesystem": {"fstype": lambda res, place: "ext4" if res.get("fstype", "ufs")
                       in ("ufs", "") else res["fstype"],
                       "fsck": "preen", "device_timeout": "10s"},
        "zpool": {"import_dirs": lambda res, place: [os.path.join(place.dev_dir, "hast")]
                  if not res.get("import_dirs") else res["import_dirs"]},
        "ggate-attach": {"host": lambda res, place: place.peer_ip, "connect_wait": "10s"},
    }


# -- the example's stack, as a node runs it -----------------------------------------------
def _config(place) -> dict:
    with open(place.config_path, "rb") as fh:
        return tomllib.load(fh)


def layers(place) -> list[dict]:
    return _config(place)["resource"]


def storage_layer(place) -> dict:
    for layer in layers(place):
        if layer["kind"] in STORAGE:
            return layer
    raise ValueError(f"{place.config_path}: no zpool or filesystem layer")


def data_dir(place) -> str:
    """Where the service's data lives: on the replicated filesystem or pool."""
    layer = storage_layer(place)
    if layer["kind"] == "zpool":
        return os.path.join(place.root, layer["pool"])
    return layer["mountpoint"]


def below_storage(stack: list[dict]) -> list[dict]:
    """The replication layers: what provisioning holds while it creates the storage."""
    return [layer for layer in stack if layer["kind"] not in STORAGE + ("links", "service")]


def link_targets(stack: list[dict]) -> list[str]:
    return [target for layer in stack if layer["kind"] == "links"
            for target in layer["links"].values()]


def link_binds(place) -> list[tuple[str, str, str, str]]:
    """A node's own root filesystem where the stack puts links (/etc/apache2 -> /drbd/...):
    each top directory of a link path (<root>/etc, <root>/var) gets a private copy bound
    over it in the node's mount namespace, holding the original the links layer moves
    aside; mountpoints stay shared (each node mounts in its own namespace).
    (shared top dir, private copy, the original inside it, link path relative to root)."""
    out = []
    for layer in layers(place):
        if layer["kind"] != "links":
            continue
        for path in layer["links"]:
            rel = os.path.relpath(path, place.root)
            top = rel.split(os.sep)[0]
            private = os.path.join(place.private, "rootfs", top)
            out.append((os.path.join(place.root, top), private,
                        os.path.join(private, os.path.relpath(rel, top)), rel))
    return out


def replicated_devices(stack: list[dict], dev_dir: str) -> list[str]:
    """The devices the replication layers give a node (its simulator dev dir `dev_dir`)
    while it holds them."""
    out: list[str] = []
    for layer in stack:
        if layer["kind"] == "hast":
            out += [os.path.join(dev_dir, "hast", n) for n in layer["resources"]]
        elif layer["kind"] == "drbd":
            out.append(layer.get("device") or os.path.join(dev_dir, "drbd0"))
        elif layer["kind"] == "gmirror":
            out.append(os.path.join(dev_dir, "mirror", layer["mirror"]))
    return out


def mirror_fs_blocks() -> int:
    """1 KiB blocks of the filesystem on a mirror's image: gmirror keeps the last sector
    for its metadata."""
    return (MIRROR_IMAGE_MB * 1024 * 1024 - 512) // 1024


def create_storage_argvs(storage: dict, stack: list[dict], dev_dir: str,
                         root: str) -> list[list[str]]:
    """The administrator's commands that create the pool or the filesystem (and mount it)
    on the devices the replication layers give."""
    if storage["kind"] == "zpool":
        vdevs = replicated_devices(stack, dev_dir)
        layout = ["raidz1", *vdevs] if len(vdevs) >= 3 else vdevs
        return [["zpool", "create", "-f", "-o", "cachefile=none", "-m",
                 os.path.join(root, storage["pool"]), storage["pool"], *layout]]
    dev = storage["device"]
    fstype = storage.get("fstype") or "ext4"
    argvs = []
    if not any(layer["kind"] == "gmirror" for layer in stack):   # else made on the image
        argvs.append([f"mkfs.{fstype}", "-q", "-F", "-E", "nodiscard", dev])
    return argvs + [["mkdir", "-p", storage["mountpoint"]],
                    ["mount", "-t", "ext4", dev, storage["mountpoint"]]]


def release_storage_argv(storage: dict) -> list[str]:
    if storage["kind"] == "zpool":
        return ["zpool", "export", storage["pool"]]
    return ["umount", storage["mountpoint"]]


def boot_argvs(stack: list[dict]) -> list[list[str]]:
    """What a booting node runs: hastd starts with the node's first hastctl (every
    resource in init, docs/reference/hast.md §3); /etc/init.d/drbd start brings DRBD up."""
    argvs = []
    for layer in stack:
        if layer["kind"] == "hast":
            argvs.append(["hastctl", "status"])
        elif layer["kind"] == "drbd":
            argvs.append(["drbdadm", "up", layer["resource"]])
    return argvs


# -- events ----------------------------------------------------------------------------
def event_calls(wiring: str, text: str, place, state: str) -> list[list[str]]:
    """The command lines the daemon runs, in order, given its rendered configuration
    `text`. Heartbeat v1 (docs/reference/heartbeat.md §1) calls `status` twice before
    `start` and skips the start when status printed "running" (cluster.event applies that
    rule); devd and freevrrpd run one command."""
    argv = event_argv(wiring, text, place, state)
    if wiring == "heartbeat" and argv[-1] == "start":
        status = argv[:-1] + ["status"]
        return [status, status, argv]
    return [argv]


def event_argv(wiring: str, text: str, place, state: str) -> list[str]:
    """The command line the scenario's daemon runs on a node for a state change."""
    if wiring == "devd":
        table = _config(place).get("wiring", {})
        event = events.carp_event(table.get("vhid", 1), table.get("interface", "eth0"), state)
        action = events.devd_action(events.parse_devd(text), event)
        if action is None:
            raise DrillError(f"{place.name}: no devd rule matches {event}")
        return ["sh", "-c", action]
    if wiring == "freevrrpd":
        return ["sh", "-c", events.freevrrpd_script(text, state)]
    # heartbeat: haresources names the resource script; start on MASTER, stop otherwise
    return [HEARTBEAT_SCRIPT, place.config_path, "start" if state == "MASTER" else "stop"]
