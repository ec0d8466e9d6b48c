"""What each scenario needs on the sandbox beyond the example config: the simulated
replication resources, the one-time provisioning an administrator does before the first
failover (format, create the pool, install the database), the event command lines, and
the kernel state a crash must release."""
from __future__ import annotations

import glob
import os

from hahooks import waits
from hahooks.errors import WaitTimeout

HAST_MB = 128
IMAGE_MB = 256
RELEASE_TIMEOUT = 30.0


def service_for(scenario):
    from hahooks.lab.drill import services

    return services.MariaDB() if scenario.service == "mariadb" else services.Nginx()


def tweaks(cluster) -> dict:
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


# -- the example's stack, as node A runs it ----------------------------------------------
def layers(cluster, node: str) -> list[dict]:
    import tomllib

    with open(cluster.places[node].config_path, "rb") as fh:
        return tomllib.load(fh)["resource"]


STORAGE = ("zpool", "filesystem")


def storage_layer(cluster, node: str) -> dict:
    for layer in layers(cluster, node):
        if layer["kind"] in STORAGE:
            return layer
    raise ValueError(f"{cluster.sc.name}: no zpool or filesystem layer")


def data_dir(cluster, node: str) -> str:
    """Where the service's data lives: on the replicated filesystem or pool."""
    layer = storage_layer(cluster, node)
    if layer["kind"] == "zpool":
        return os.path.join(cluster.root, layer["pool"])
    return layer["mountpoint"]


def node_binds(cluster, node: str) -> dict[str, str]:
    """A node's own root filesystem where the stack puts links (/etc/apache2 -> /drbd/...):
    each top directory of a link path (<root>/etc, <root>/var) gets a private copy bound
    over it in the node's mount namespace, holding the original the links layer moves
    aside; mountpoints stay shared (each node mounts in its own namespace)."""
    binds: dict[str, str] = {}
    for layer in layers(cluster, node):
        if layer["kind"] != "links":
            continue
        for path in layer["links"]:
            rel = os.path.relpath(path, cluster.root)
            top = rel.split(os.sep)[0]
            private = os.path.join(cluster.places[node].private, "rootfs", top)
            original = os.path.join(private, os.path.relpath(rel, top))
            if not os.path.lexists(original) and not os.path.lexists(original + ".hahooks-orig"):
                os.makedirs(original)
                with open(os.path.join(original, "ORIGINAL"), "w") as fh:
                    fh.write(f"{node}'s own {os.sep + rel} (moved aside while the stack "
                             "is held)\n")
            os.makedirs(os.path.join(cluster.root, top), exist_ok=True)
            binds[os.path.join(cluster.root, top)] = private
    return binds


# -- provisioning ---------------------------------------------------------------------
def provision(cluster) -> None:
    """Before the first failover, as an administrator would: create the replicated
    devices, format them / create the pool on node A, install the service's data there,
    then leave both nodes as slaves (nothing held)."""
    a, b = cluster.nodes
    for node in cluster.nodes:
        cluster._write_config(node)       # the simulated names and paths come from it
        cluster.service.prepare(cluster, node)
    stack = layers(cluster, a)
    for layer in stack:
        if layer["kind"] == "hast":
            for name in layer["resources"]:
                cluster.world.add_hast(name, size_mb=HAST_MB, nodes=cluster.nodes)
        elif layer["kind"] == "drbd":
            cluster.world.add_drbd(layer["resource"], size_mb=IMAGE_MB, nodes=cluster.nodes)
    for node in cluster.nodes:                 # hastd starts with the node's first hastctl
        if any(layer["kind"] == "hast" for layer in stack):
            cluster.run(node, ["hastctl", "status"], timeout=30)
    if _prepare_geom(cluster):
        _hh(cluster, b, "slave")               # Server_B at boot: ggated serves its image
    below = [layer for layer in stack if layer["kind"] not in STORAGE + ("links", "service")]
    storage = storage_layer(cluster, a)
    _provision_config(cluster, a, below)
    _hh(cluster, a, "master", provision=True)
    try:
        _create_storage(cluster, a, storage, stack)
        for layer in stack:
            if layer["kind"] == "links":
                for target in layer["links"].values():
                    cluster.run(a, ["mkdir", "-p", target])
        cluster.service.install(cluster, a, data_dir(cluster, a))
    finally:
        _release_storage(cluster, a, storage)
        _hh(cluster, a, "slave", provision=True)
    for node in cluster.nodes:
        _hh(cluster, node, "slave")
    cluster.mark("provisioned: replicated storage created on nodea, both nodes slave")


MIRROR_IMAGE_MB = 64


def _prepare_geom(cluster) -> bool:
    """Seed 000: each node's local image (md), Server_B's exported image formatted with the
    filesystem the mirror will show (gmirror keeps the last sector for its metadata), and
    Server_B's gg.exports naming Server_A. Returns True for such a stack."""
    a, b = cluster.nodes
    found = False
    for node in cluster.nodes:
        for layer in layers(cluster, node):
            if layer["kind"] == "md":
                cluster.world_image(layer["file"], MIRROR_IMAGE_MB)
            elif layer["kind"] == "ggate-export":
                found = True
                image = layer["image"]
                cluster.world_image(image, MIRROR_IMAGE_MB)
                blocks = (MIRROR_IMAGE_MB * 1024 * 1024 - 512) // 1024
                _must(cluster, node, ["mkfs.ext4", "-q", "-F", "-b", "1024", image,
                                      str(blocks)])
                os.makedirs(os.path.dirname(layer["exports_file"]), exist_ok=True)
                with open(layer["exports_file"], "w") as fh:
                    fh.write(f"{cluster.ips[cluster.peer(node)]} RW {image}\n")
    return found


def _provision_config(cluster, node: str, below: list[dict]) -> None:
    """A config with only the replication layers, its own state dir and log."""
    import tomllib
    from hahooks.lab.drill import scenarios

    place = cluster.places[node]
    with open(place.config_path, "rb") as fh:
        data = tomllib.load(fh)
    prov = os.path.join(place.private, "provision")
    os.makedirs(prov, mode=0o700, exist_ok=True)
    data["node"]["state_dir"] = os.path.join(prov, "state")
    data["node"]["log_file"] = os.path.join(prov, "hahooks.jsonl")
    data["resource"] = below
    scenarios.write_config(data, os.path.join(prov, "hahooks.toml"))


def _hh(cluster, node: str, role: str, provision: bool = False) -> None:
    place = cluster.places[node]
    cfg = os.path.join(place.private, "provision", "hahooks.toml") if provision \
        else place.config_path
    r = cluster.run(node, [place.hahooks, role, "--wait", "-c", cfg], timeout=180)
    if not r.ok:
        from hahooks.lab.drill.cluster import DrillError
        raise DrillError(f"provisioning: {node}: hahooks {role} failed: {r.tail()}")


def _must(cluster, node: str, argv: list[str], timeout: float = 120):
    r = cluster.run(node, argv, timeout=timeout)
    if not r.ok:
        from hahooks.lab.drill.cluster import DrillError
        raise DrillError(f"provisioning: {node}: {' '.join(argv)}: {r.tail()}")
    return r


def _create_storage(cluster, node: str, storage: dict, stack: list[dict]) -> None:
    devices = replicated_devices(cluster, node, stack)
    if storage["kind"] == "zpool":
        vdevs = devices
        layout = ["raidz1", *vdevs] if len(vdevs) >= 3 else vdevs
        _must(cluster, node, ["zpool", "create", "-f", "-o", "cachefile=none", "-m",
                              os.path.join(cluster.root, storage["pool"]), storage["pool"],
                              *layout])
    else:
        dev = storage["device"]
        fstype = storage.get("fstype") or "ext4"
        if not any(layer["kind"] == "gmirror" for layer in stack):   # else made on the image
            _must(cluster, node, [f"mkfs.{fstype}", "-q", "-F", "-E", "nodiscard", dev])
        _must(cluster, node, ["mkdir", "-p", storage["mountpoint"]])
        _must(cluster, node, ["mount", "-t", "ext4", dev, storage["mountpoint"]])


def _release_storage(cluster, node: str, storage: dict) -> None:
    if storage["kind"] == "zpool":
        cluster.run(node, ["zpool", "export", storage["pool"]])
    else:
        cluster.run(node, ["umount", storage["mountpoint"]])


def replicated_devices(cluster, node: str, stack: list[dict]) -> list[str]:
    """The devices the replication layers give this node while it holds them."""
    dev_dir = cluster.places[node].dev_dir
    out: list[str] = []
    for layer in stack:
        if layer["kind"] == "hast":
            out += [os.path.join(dev_dir, "hast", n) for n in layer["resources"]]
        elif layer["kind"] == "drbd":
            out.append(layer.get("device") or os.path.join(dev_dir, "drbd0"))
        elif layer["kind"] == "gmirror":
            out.append(os.path.join(dev_dir, "mirror", layer["mirror"]))
    return out


# -- events ----------------------------------------------------------------------------
def wiring_text(cluster, node: str) -> str:
    """The daemon's configuration for this node, rendered by `hahooks render`."""
    place = cluster.places[node]
    path = os.path.join(place.private, "etc", f"{cluster.sc.wiring}.conf")
    if not os.path.exists(path):
        r = cluster.run(node, [place.hahooks, "render", "--only", cluster.sc.wiring,
                               "--hahooks", place.hahooks, "-c", place.config_path])
        if not r.ok:
            from hahooks.lab.drill.cluster import DrillError
            raise DrillError(f"{node}: hahooks render --only {cluster.sc.wiring}: {r.tail()}")
        with open(path, "w") as fh:
            fh.write(r.stdout)
    with open(path) as fh:
        return fh.read()


def event_calls(cluster, node: str, state: str) -> list[list[str]]:
    """The command lines the daemon runs, in order. Heartbeat v1 (docs/reference/heartbeat.md §1) calls
    `status` twice before `start` and skips the start when status printed "running"
    (cluster.event applies that rule); devd and freevrrpd run one command."""
    argv = event_argv(cluster, node, state)
    if cluster.sc.wiring == "heartbeat" and argv[-1] == "start":
        status = argv[:-1] + ["status"]
        return [status, status, argv]
    return [argv]


def event_argv(cluster, node: str, state: str) -> list[str]:
    """The command line the scenario's daemon runs on `node` for a state change."""
    from hahooks.lab.drill import events

    text = wiring_text(cluster, node)
    if cluster.sc.wiring == "devd":
        import tomllib
        with open(cluster.places[node].config_path, "rb") as fh:
            wiring = tomllib.load(fh).get("wiring", {})
        event = events.carp_event(wiring.get("vhid", 1), wiring.get("interface", "eth0"), state)
        action = events.devd_action(events.parse_devd(text), event)
        if action is None:
            from hahooks.lab.drill.cluster import DrillError
            raise DrillError(f"{node}: no devd rule matches {event}")
        return ["sh", "-c", action]
    if cluster.sc.wiring == "freevrrpd":
        return ["sh", "-c", events.freevrrpd_script(text, state)]
    # heartbeat: haresources names the resource script; start on MASTER, stop otherwise
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))), "heartbeat-resource.d", "hahooks")
    return [script, cluster.places[node].config_path,
            "start" if state == "MASTER" else "stop"]


# -- kernel state of a crashed node -------------------------------------------------------
def images(cluster) -> list[str]:
    """Every backing file a node may have mounted, attached or opened."""
    found = glob.glob(os.path.join(cluster.workdir, "world", "images", "*"))
    found += glob.glob(os.path.join(cluster.root, "**", "*.img"), recursive=True)
    return [p for p in found if os.path.isfile(p)]


def _loops_not_mounted(paths: list[str]) -> list[str]:
    """Loop devices backed by one of `paths` that no live mount namespace mounts: what a
    dead node left behind."""
    from hahooks.lab.sim import checks

    idents = {checks.identity(p) for p in paths} - {None}
    attached = [d for d in checks._loop_devices() if checks.loop_backing(d) in idents]
    if not attached:
        return []
    mounted = set()
    for info in glob.glob("/proc/[0-9]*/mountinfo"):
        try:
            with open(info) as fh:
                for line in fh:
                    mounted.add(line.split(" - ")[1].split()[1] if " - " in line else "")
        except OSError:
            continue
    return [d for d in attached if d not in mounted]


def wait_released(cluster, paths: list[str], timeout: float = RELEASE_TIMEOUT) -> None:
    """After a crash: the dead node's mounts go with its mount namespace and its loop
    devices (mount's autoclear) once the kernel let go of them; wait for that, so the
    survivor never mounts an image the kernel still has mounted for the dead node."""
    try:
        waits.wait_for(lambda: not _loops_not_mounted(paths), timeout,
                       "the crashed node's loop devices to be released", ceiling=0.05)
    except WaitTimeout:
        import subprocess

        for dev in _loops_not_mounted(paths):   # not autoclear: only the dead node used it
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        if _loops_not_mounted(paths):
            raise


def after_boot(cluster, node: str) -> None:
    """A booted node: the service's run dir is empty again (it was a tmpfs), hastd starts
    with the node's first hastctl (every resource in init, docs/reference/hast.md §3)."""
    cluster.service.prepare(cluster, node)
    for layer in layers(cluster, node):
        if layer["kind"] == "hast":
            cluster.run(node, ["hastctl", "status"], timeout=30)
        elif layer["kind"] == "drbd":       # /etc/init.d/drbd start at boot
            cluster.run(node, ["drbdadm", "up", layer["resource"]], timeout=30)
