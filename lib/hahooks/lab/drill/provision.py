"""What the drill does to a sandbox node beyond running its hooks: the one-time
provisioning an administrator does before the first failover (the simulated replication
resources, format, create the pool, install the service's data), each node's private
root directories, the daemon wiring rendered once per node, and what a node does at boot.
The decisions (which layers, which devices, which paths) are stacks.py's pure functions;
every command runs through the cluster's one executor (`cluster.run`)."""
from __future__ import annotations

import os
import tomllib

from hahooks.lab.drill import scenarios, stacks


def provision(cluster) -> None:
    """Before the first failover, as an administrator would: create the replicated
    devices, format them / create the pool on node A, install the service's data there,
    then leave both nodes as slaves (nothing held)."""
    a, b = cluster.nodes
    for node in cluster.nodes:
        cluster._write_config(node)       # the simulated names and paths come from it
        cluster.service.prepare(cluster, node)
    place = cluster.places[a]
    stack = stacks.layers(place)
    for layer in stack:
        if layer["kind"] == "hast":
            for name in layer["resources"]:
                cluster.world.add_hast(name, size_mb=stacks.HAST_MB, nodes=cluster.nodes)
        elif layer["kind"] == "drbd":
            cluster.world.add_drbd(layer["resource"], size_mb=stacks.IMAGE_MB,
                                   nodes=cluster.nodes)
    for node in cluster.nodes:                 # hastd starts with the node's first hastctl
        if any(layer["kind"] == "hast" for layer in stack):
            cluster.run(node, ["hastctl", "status"], timeout=30)
    if _prepare_geom(cluster):
        _hh(cluster, b, "slave")               # Server_B at boot: ggated serves its image
    storage = stacks.storage_layer(place)
    _provision_config(place, stacks.below_storage(stack))
    _hh(cluster, a, "master", provision=True)
    try:
        _create_storage(cluster, a, storage, stack)
        for target in stacks.link_targets(stack):
            cluster.run(a, ["mkdir", "-p", target])
        cluster.service.install(cluster, a, stacks.data_dir(place))
    finally:
        _release_storage(cluster, a, storage)
        _hh(cluster, a, "slave", provision=True)
    for node in cluster.nodes:
        _hh(cluster, node, "slave")
    cluster.mark("provisioned: replicated storage created on nodea, both nodes slave")


def _prepare_geom(cluster) -> bool:
    """Seed 000: each node's local image (md), Server_B's exported image formatted with the
    filesystem the mirror will show (gmirror keeps the last sector for its metadata), and
    Server_B's gg.exports naming Server_A. Returns True for such a stack."""
    found = False
    for node in cluster.nodes:
        for layer in stacks.layers(cluster.places[node]):
            if layer["kind"] == "md":
                cluster.world_image(layer["file"], stacks.MIRROR_IMAGE_MB)
            elif layer["kind"] == "ggate-export":
                found = True
                image = layer["image"]
                cluster.world_image(image, stacks.MIRROR_IMAGE_MB)
                must(cluster, node, ["mkfs.ext4", "-q", "-F", "-b", "1024", image,
                                     str(stacks.mirror_fs_blocks())])
                os.makedirs(os.path.dirname(layer["exports_file"]), exist_ok=True)
                with open(layer["exports_file"], "w") as fh:
                    fh.write(f"{cluster.ips[cluster.peer(node)]} RW {image}\n")
    return found


def _provision_config(place, below: list[dict]) -> None:
    """A config with only the replication layers, its own state dir and log."""
    with open(place.config_path, "rb") as fh:
        data = tomllib.load(fh)
    prov = provision_dir(place)
    os.makedirs(prov, mode=0o700, exist_ok=True)
    data["node"]["state_dir"] = os.path.join(prov, "state")
    data["node"]["log_file"] = os.path.join(prov, "hahooks.jsonl")
    data["resource"] = below
    scenarios.write_config(data, os.path.join(prov, "hahooks.toml"))


def provision_dir(place) -> str:
    return os.path.join(place.private, "provision")


def _hh(cluster, node: str, role: str, provision: bool = False) -> None:
    place = cluster.places[node]
    cfg = os.path.join(provision_dir(place), "hahooks.toml") if provision \
        else place.config_path
    cluster.run(node, [place.hahooks, role, "--wait", "-c", cfg], timeout=180).check(
        f"provisioning: {node}: hahooks {role} failed")


def must(cluster, node: str, argv: list[str], timeout: float = 120):
    """Run a provisioning command in the node; DrillError when it fails."""
    return cluster.run(node, argv, timeout=timeout).check(
        f"provisioning: {node}: {' '.join(argv)}")


def _create_storage(cluster, node: str, storage: dict, stack: list[dict]) -> None:
    for argv in stacks.create_storage_argvs(storage, stack,
                                            cluster.places[node].dev_dir, cluster.root):
        must(cluster, node, argv)


def _release_storage(cluster, node: str, storage: dict) -> None:
    cluster.run(node, stacks.release_storage_argv(storage))


def node_binds(place) -> dict[str, str]:
    """The node's private root directories (stacks.link_binds), each holding the original
    the links layer moves aside, made once; {shared top dir: private copy}."""
    binds: dict[str, str] = {}
    for top, private, original, rel in stacks.link_binds(place):
        if not os.path.lexists(original) and not os.path.lexists(original + ".hahooks-orig"):
            os.makedirs(original)
            with open(os.path.join(original, "ORIGINAL"), "w") as fh:
                fh.write(f"{place.name}'s own {os.sep + rel} (moved aside while the stack "
                         "is held)\n")
        os.makedirs(top, exist_ok=True)
        binds[top] = private
    return binds


def wiring_text(cluster, node: str) -> str:
    """The daemon's configuration for this node, rendered once by `hahooks render`."""
    place = cluster.places[node]
    wiring = cluster.sc.wiring
    path = os.path.join(place.private, "etc", f"{wiring}.conf")
    if not os.path.exists(path):
        r = cluster.run(node, [place.hahooks, "render", "--only", wiring,
                               "--hahooks", place.hahooks, "-c", place.config_path])
        r.check(f"{node}: hahooks render --only {wiring}")
        with open(path, "w") as fh:
            fh.write(r.stdout)
    with open(path) as fh:
        return fh.read()


def after_boot(cluster, node: str) -> None:
    """A booted node: the service's run dir is empty again (it was a tmpfs), hastd starts
    with the node's first hastctl (every resource in init, docs/reference/hast.md §3)."""
    cluster.service.prepare(cluster, node)
    for argv in stacks.boot_argvs(stacks.layers(cluster.places[node])):
        cluster.run(node, argv, timeout=30)
