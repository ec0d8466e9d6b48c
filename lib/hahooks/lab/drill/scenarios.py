"""The drill's scenarios: each is a seed's stack, taken from its example config in
examples/ and run on the sandbox with these substitutions (overlay()):

  * [node] is the sandbox node's: its name and peer, the simulator's dev dir, a private
    state dir and JSON log, the sandbox fence command; `demote` and [wiring] are kept;
  * every path-typed parameter is moved into the sandbox: /dev/X -> the node's simulated
    dev dir, any other absolute path -> under the sandbox root (same path on both nodes,
    like a real cluster; each node mounts in its own mount namespace);
  * UFS becomes ext4 (Linux cannot mount UFS read-write), and waits are shortened so the
    drill stays quick (a peer that does not leave primary is fenced after 3 s, not 30 s);
  * the `service` layer runs the sandbox's MariaDB or nginx instance of that node.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))
EXAMPLES = os.path.join(ROOT, "examples")

BASE_TOOLS = ("ip", "unshare", "nsenter", "mount", "losetup", "mkfs.ext4", "fsck.ext4")
MARIADB_TOOLS = ("mariadbd", "mariadb-install-db", "mariadb")
ZFS_TOOLS = ("zfs-fuse", "zpool", "zfs")


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    examples: tuple[str, str]          # example config of node A, of node B
    wiring: str                        # how events arrive: devd | freevrrpd | heartbeat
    service: str                       # mariadb | nginx
    zfs: bool                          # nodes run zfs-fuse
    add_service: str = ""              # the example ends below the service: add this layer
    why: str = ""

    @property
    def tools(self) -> tuple[str, ...]:
        extra = MARIADB_TOOLS if self.service == "mariadb" else ("nginx",)
        return BASE_TOOLS + extra + (ZFS_TOOLS if self.zfs else ())

    def example_path(self, index: int) -> str:
        return os.path.join(EXAMPLES, self.examples[index])

    @property
    def resource_names(self) -> tuple[str, ...]:
        """The layers of both nodes' stacks, bottom-up (for --inject and --list)."""
        names: list[str] = []
        for i in (0, 1):
            try:
                layers = load_example(self.example_path(i)).get("resource", [])
            except (OSError, ValueError):
                continue
            names += [r.get("name", "?") for r in layers if r.get("name") not in names]
        if self.add_service and self.add_service not in names:
            names.append(self.add_service)
        return tuple(names)


SCENARIOS = (
    Scenario("seed003", "seed 003: HAST x3 -> raidz pool (zfs-fuse) -> MariaDB, CARP via devd",
             ("seed003-hast-zfs.toml", "seed003-hast-zfs.toml"), "devd", "mariadb", True,
             add_service="db",
             why="three HAST disks, one raidz pool imported with -f only because HAST "
                 "guarantees a single primary; the database's commits are fsynced into "
                 "the ZIL, so a crash keeps every acknowledged row"),
    Scenario("seed002", "seed 002: HAST -> ext4 (for UFS) -> MariaDB, CARP via devd",
             ("seed002-hast-ufs-mysql.toml", "seed002-hast-ufs-mysql.toml"), "devd",
             "mariadb", False,
             why="the handbook stack: fsck before mount, the database on the replicated "
                 "filesystem"),
    Scenario("seed000", "seed 000: gmirror over ggate + md -> ext4 -> nginx, freevrrpd",
             ("seed000-master.toml", "seed000-slave.toml"), "freevrrpd", "nginx", False,
             why="two different node roles: A mirrors its md0 with B's image over ggate; "
                 "B serves its own image when A is gone"),
    Scenario("seed001", "seeds 001/004: DRBD -> ext4 -> links -> nginx, Heartbeat v1",
             ("seed001-drbd.toml", "seed001-drbd.toml"), "heartbeat", "nginx", False,
             why="drbdlinks done right: the service's config and data live on the DRBD "
                 "filesystem and are linked into place only while this node holds it"),
    Scenario("seed004", "seed 004: DRBD -> ext4 -> mail links -> nginx (for Sendmail), "
             "Heartbeat v1", ("seed004-drbd-sendmail.toml", "seed004-drbd-sendmail.toml"),
             "heartbeat", "nginx", False,
             why="the article's hand-made symlinks, made and undone with the stack"),
)
DEFAULT = "seed003"


def all_scenarios() -> tuple[Scenario, ...]:
    return SCENARIOS


def get(name: str) -> Scenario:
    for sc in SCENARIOS:
        if sc.name == name:
            return sc
    raise KeyError(name)


# -- overlay ------------------------------------------------------------------------------
@dataclasses.dataclass
class NodePlace:
    """Where one sandbox node's things are."""

    name: str
    peer: str
    ip: str
    peer_ip: str
    dev_dir: str          # the simulator's dev dir for this node
    root: str             # the sandbox root: example paths land under it
    private: str          # this node's own dir (state, log, run, etc)
    fence: list[str]
    hahooks: str          # the hahooks command the wiring calls

    @property
    def state_dir(self) -> str:
        return os.path.join(self.private, "state")

    @property
    def log_file(self) -> str:
        return os.path.join(self.private, "hahooks.jsonl")

    @property
    def config_path(self) -> str:
        return os.path.join(self.private, "hahooks.toml")

    @property
    def run_dir(self) -> str:
        return os.path.join(self.private, "run")


def load_example(path: str) -> dict:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def move_path(value: str, place: NodePlace) -> str:
    if value == "/dev" or value.startswith("/dev/"):
        return place.dev_dir + value[len("/dev"):]
    return place.root + value


def _moved(field_type: str, value, place: NodePlace):
    if value is None:
        return value
    if field_type == "absolute path":
        return move_path(value, place)
    if field_type == "[absolute paths]":
        return [move_path(v, place) for v in value]
    if field_type == "table name = path":
        return {k: move_path(v, place) for k, v in value.items()}
    if field_type == 'table "/path" = "/target"':
        return {move_path(k, place): move_path(v, place) for k, v in value.items()}
    return value


def overlay(example: dict, place: NodePlace, service: dict,
            tweaks: dict[str, dict] | None = None, add_service: str = "") -> dict:
    """The example config as it runs on sandbox node `place` (see the module docstring).
    `service` is the sandbox service layer's parameters (name and kind are kept);
    `tweaks` = {kind: {param: value}} applied where the kind has that parameter."""
    from hahooks import kinds

    node = {"name": place.name, "peer": place.peer, "dev_dir": place.dev_dir,
            "state_dir": place.state_dir, "log_file": place.log_file, "syslog": False,
            "fence": place.fence}
    ex_node = example.get("node", {})
    for key in ("platform", "demote", "command_timeout"):
        if key in ex_node:
            node[key] = ex_node[key]
    out: dict = {"node": node}
    # the sandbox's CARP: vhid 1 on the nodes' eth0 unless the example says otherwise
    out["wiring"] = {"vhid": 1, "interface": "eth0", **example.get("wiring", {})}
    layers = []
    for res in example.get("resource", []):
        res = dict(res)
        if res.get("kind") == "service":
            layers.append({"name": res["name"], **service})
            continue
        cls = kinds.get(res["kind"])
        for key, value in list(res.items()):
            field = cls.PARAMS.get(key)
            if field is not None:
                res[key] = _moved(field.type_name, value, place)
        for key, value in (tweaks or {}).get(res["kind"], {}).items():
            if key in cls.PARAMS:
                res[key] = value(res, place) if callable(value) else value
        layers.append(res)
    if add_service:
        layers.append({"name": add_service, **service})
    out["resource"] = layers
    return out


def write_config(data: dict, path: str) -> str:
    from hahooks.lab.drill.tomlout import dumps

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(dumps(data))
    os.chmod(path, 0o600)
    return path
