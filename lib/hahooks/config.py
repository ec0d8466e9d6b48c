"""TOML config -> validated dataclasses. Every error names file:line, the key and the bad
value, with a "did you mean" hint for unknown keys (exit 6 via ConfigError)."""
from __future__ import annotations

import dataclasses
import os
import re
import stat
import tomllib
from typing import Any

from hahooks import kinds, platforms, safepath, schema
from hahooks.errors import ConfigError, ConfigUnsafe
from hahooks.fence_agents import FenceOptions
from hahooks.schema import Field, Invalid

NODE_FIELDS: dict[str, Field] = {
    "name": schema.Name(None, "node name (default: hostname)"),
    "peer": schema.Name(None, "the other node's name (used in messages and by fence)"),
    "platform": schema.Str("auto", "command forms to use", choices=("auto", "freebsd", "linux")),
    "state_dir": schema.Path(None, "root-only dir for the lock, desire and result files "
                             "(default /var/db/hahooks on FreeBSD, /var/lib/hahooks on Linux)"),
    "log_file": schema.Path(None, "JSON-lines log (default /var/log/hahooks.jsonl)"),
    "syslog": schema.Bool(True, "also log to syslog"),
    "syslog_facility": schema.Str("local0", "syslog facility",
                                  choices=("daemon", "user", *(f"local{i}" for i in range(8)))),
    "syslog_socket": schema.Path(None, "default /var/run/log (FreeBSD), /dev/log (Linux)"),
    "demote": schema.Argv(None, "run after a failed acquire, once the stack is rolled back "
                          '(e.g. ["sysctl", "net.inet.carp.demotion=240"])'),
    "fence": schema.Argv(None, "STONITH-style command that powers off / isolates the peer; "
                         "gates forced steps"),
    "fence_options": FenceOptions(None, "run `fence` as a fence-agents agent: these "
                                  "options go on its stdin as name=value lines (action=off "
                                  "unless given); password_file instead of a password"),
    "dev_dir": schema.Path("/dev", "where device nodes appear (/dev/hast/NAME, /dev/ggateN, "
                           "/dev/mirror/NAME, /dev/mdN, /dev/drbdN); the simulator uses its own"),
    "command_timeout": schema.Duration("30s", "timeout of one command (a layer's remaining "
                                       "`timeout` budget caps it)", minimum=0.001),
    "wait_timeout": schema.Duration("15m", "how long --wait (and a worker) waits for the "
                                    "transition lock", minimum=0.001),
    "paths": schema.PathMap({}, "tool = \"/absolute/path\" overrides for command lookup"),
    "search_path": schema.PathList([], "extra dirs searched for tools after PATH"),
}

RESOURCE_COMMON: dict[str, Field] = {
    "name": schema.Name(doc="unique name of this layer"),
    "kind": schema.Str(doc="resource kind"),
    "timeout": schema.Duration("60s", "budget for one acquire or release of this layer",
                               minimum=0.001),
    "parallel": schema.Name(None, "group name: consecutive layers with the same group are "
                            "independent of each other and acquired/released concurrently"),
}

# [wiring]: what the daemon wiring matches on and what `hahooks render` prints. Optional;
# devd-event ignores CARP events of any other vhid/interface once these are set.
WIRING_FIELDS: dict[str, Field] = {
    "interface": schema.Name(None, "interface carrying the virtual address (CARP vhid, VRRP, "
                             "ucarp): devd events name it as <vhid>@<interface>"),
    "vhid": schema.Int(None, "CARP vhid / VRRP virtual router id / ucarp vhid", 1, 255),
    "legacy_interface": schema.Name(None, "FreeBSD < 10: the CARP pseudo-interface (carp0) "
                                    "whose IFNET LINK_UP/LINK_DOWN events mean MASTER/not"),
    "vip": schema.Str(None, 'the virtual address with its prefix, e.g. "192.168.1.50/24"'),
    "priority": schema.Int(None, "this node's VRRP priority (freevrrpd 255 = owner)", 1, 255),
    "instance": schema.Name(None, "keepalived vrrp_instance name"),
    "handover": schema.Argv(None, "switchover: the command that makes the peer take over "
                            "(default on FreeBSD: sysctl net.inet.carp.demotion=240)"),
}



def _argv_lists(v) -> list[list[str]]:
    if not isinstance(v, list) or not all(isinstance(x, list) for x in v):
        raise Invalid(f'expected a list of argument lists like [["mail", "-s", "hahooks", '
                      f'"root"]], got {v!r}')
    return [schema.argv_list(x) for x in v]


# [notify]: commands run, detached, after each transition with its outcome as JSON on stdin
# (notify.py). Optional.
NOTIFY_FIELDS: dict[str, Field] = {
    "commands": Field(_argv_lists, [], "argument lists, each run with the outcome as JSON on "
                      "stdin", "list of argv lists"),
    "timeout": schema.Duration("30s", "budget of each notify command", minimum=0.001),
    "on": schema.Str("all", "which outcomes notify", choices=("all", "failure")),
}

TOP_KEYS = ("node", "resource", "wiring", "notify")


@dataclasses.dataclass
class Node:
    name: str
    peer: str | None
    platform: platforms.Platform
    state_dir: str
    log_file: str
    syslog: bool
    syslog_facility: str
    syslog_socket: str
    demote: list[str] | None
    fence: list[str] | None
    fence_options: dict[str, str] | None
    dev_dir: str
    command_timeout: float
    wait_timeout: float
    paths: dict[str, str]
    search_path: list[str]


@dataclasses.dataclass
class ResourceSpec:
    name: str
    kind: str
    timeout: float
    params: dict[str, Any]
    line: int = 0
    index: int = 0
    parallel: str | None = None   # group of consecutive independent layers (engine.groups)


@dataclasses.dataclass
class Config:
    path: str
    node: Node
    resources: list[ResourceSpec]
    wiring: dict[str, Any] = dataclasses.field(default_factory=dict)
    lines: "_Lines | None" = dataclasses.field(default=None, repr=False)  # key -> line
    notify: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"commands": [], "timeout": 30.0, "on": "all"})

    def resource(self, name: str) -> ResourceSpec:
        for r in self.resources:
            if r.name == name:
                return r
        raise ConfigError(f"{self.path}: no resource named {name!r}")


class _Lines:
    """Finds the line of a key: tomllib reports lines only for syntax errors."""

    def __init__(self, text: str):
        self.keys: dict[tuple, int] = {}
        self.tables: dict[tuple, int] = {}
        section: tuple = ()
        counts: dict[str, int] = {}
        for no, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            m = re.match(r"^\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]", line)
            if m:
                name = m.group(1)
                counts[name] = counts.get(name, -1) + 1
                section = (name, counts[name])
                self.tables[section] = no
                continue
            m = re.match(r"^\[\s*([A-Za-z0-9_.-]+)\s*\]", line)
            if m:
                parts = m.group(1).split(".")
                if parts[0] in counts and len(parts) > 1:
                    section = (parts[0], counts[parts[0]], *parts[1:])
                else:
                    section = tuple(parts)
                self.tables.setdefault(section, no)
                continue
            m = re.match(r"^([A-Za-z0-9_-]+|\"[^\"]*\")\s*=", line)
            if m:
                self.keys.setdefault((*section, m.group(1).strip('"')), no)

    def of(self, *path) -> int:
        return self.keys.get(tuple(path)) or self.tables.get(tuple(path)) or \
            self.tables.get(tuple(path[:-1])) or self.tables.get(tuple(path[:2])) or 0


def _hint(key: str, known) -> str:
    import difflib  # local: only a bad key pays for it, not every hook start

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else \
        f" (known keys: {', '.join(sorted(known))})"


def _check_permissions(path: str) -> None:
    """Who could swap the config: the file and every directory up to / (OpenSSH
    StrictModes, auth.c auth_secure_path(); safepath adds the sticky bit's protection)."""
    try:
        found = safepath.verify(os.path.abspath(path))
    except safepath.UnsafePath as exc:
        raise ConfigError(f"{exc.one_line()}; whoever can replace the config can make "
                          "hahooks run anything") from None
    if not found.exists:
        raise ConfigError(f"{path}: config file not found")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: config is not a regular file")
    if st.st_mode & 0o022:
        raise ConfigUnsafe(f"{path}: config is writable by group or others (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}); run chmod go-w {path}")
    if st.st_uid not in (0, os.geteuid()):
        raise ConfigUnsafe(f"{path}: config is owned by uid {st.st_uid}, who could make "
                          f"hahooks run anything; run chown root {path}")


def load(path: str | None = None, *, check_permissions: bool = True) -> Config:
    path = path or platforms.default_config_path()
    if check_permissions:
        _check_permissions(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        where = f"{path}:{m.group(1)}" if m else path
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise ConfigError(f"{where}: TOML syntax error: {msg}") from None
    return parse(data, path, _Lines(text))


def parse(data: dict, path: str = "<config>", lines: _Lines | None = None) -> Config:
    lines = lines or _Lines("")

    def fail(where: tuple, msg: str):
        line = lines.of(*where)
        raise ConfigError(f"{path}:{line}: {msg}" if line else f"{path}: {msg}")

    for key in data:
        if key not in TOP_KEYS:
            fail((key,), f"unknown top-level key {key!r}{_hint(key, TOP_KEYS)}")
    node_raw = data.get("node", {})
    if not isinstance(node_raw, dict):
        fail(("node",), "[node] must be a table")
    node_vals = _fields(node_raw, NODE_FIELDS, ("node",), fail, "[node]")
    plat = platforms.get(node_vals["platform"])
    if node_vals["fence_options"] and (not node_vals["fence"] or len(node_vals["fence"]) != 1):
        fail(("node", "fence"), "[node] fence: with fence_options, give only the agent's path "
             "(a fence-agents agent reads its options from stdin only when it has no "
             "arguments)")
    node = Node(
        name=node_vals["name"] or _hostname(),
        peer=node_vals["peer"], platform=plat,
        state_dir=node_vals["state_dir"] or plat.default_state_dir,
        log_file=node_vals["log_file"] or os.path.join(plat.default_log_dir, "hahooks.jsonl"),
        syslog=node_vals["syslog"], syslog_facility=node_vals["syslog_facility"],
        syslog_socket=node_vals["syslog_socket"] or plat.syslog_socket,
        demote=node_vals["demote"], fence=node_vals["fence"],
        fence_options=node_vals["fence_options"], dev_dir=node_vals["dev_dir"],
        command_timeout=node_vals["command_timeout"], wait_timeout=node_vals["wait_timeout"],
        paths=node_vals["paths"], search_path=node_vals["search_path"])

    res_raw = data.get("resource", [])
    if not isinstance(res_raw, list) or not all(isinstance(r, dict) for r in res_raw):
        fail(("resource",), "resources are written as [[resource]] tables")
    if not res_raw:
        fail(("resource",), "no [[resource]] in the config: the stack is empty")
    resources: list[ResourceSpec] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(res_raw):
        where = ("resource", i)
        label = f"resource #{i + 1}"
        if "kind" not in r:
            fail(where, f"{label}: missing key 'kind' (one of: {', '.join(kinds.names())})")
        kind_name = r["kind"]
        if not isinstance(kind_name, str) or kind_name not in kinds.names():
            fail((*where, "kind"), f"{label}: unknown kind {kind_name!r}"
                 f"{_hint(str(kind_name), kinds.names())}")
        cls = kinds.get(kind_name)
        fields = {**RESOURCE_COMMON, **cls.PARAMS}
        if isinstance(r.get("name"), str):
            label = f"resource {r['name']!r}"
        vals = _fields(r, fields, where, fail, label)
        name = vals.pop("name")
        if name in seen:
            fail((*where, "name"), f"duplicate resource name {name!r} (first at line "
                 f"{lines.of('resource', seen[name], 'name')})")
        seen[name] = i
        vals.pop("kind")
        timeout = vals.pop("timeout")
        group = vals.pop("parallel")
        if group is not None and group != (resources[-1].parallel if resources else None) \
                and any(r.parallel == group for r in resources):
            first = next(r for r in resources if r.parallel == group)
            fail((*where, "parallel"), f"{label}: parallel: group {group!r} must be "
                 f"consecutive layers (it started at resource {first.name!r}, line "
                 f"{first.line}, and another layer came in between)")
        spec = ResourceSpec(name, kind_name, timeout, vals, lines.of(*where), i, group)
        try:
            cls.validate(spec)
        except Invalid as exc:
            fail(where, f"{label}: {exc}")
        resources.append(spec)
    wiring_raw = data.get("wiring", {})
    if not isinstance(wiring_raw, dict):
        fail(("wiring",), "[wiring] must be a table")
    cfg = Config(path, node, resources,
                 _fields(wiring_raw, WIRING_FIELDS, ("wiring",), fail, "[wiring]"), lines)
    notify_raw = data.get("notify", {})
    if not isinstance(notify_raw, dict):
        fail(("notify",), "[notify] must be a table")
    cfg.notify = _fields(notify_raw, NOTIFY_FIELDS, ("notify",), fail, "[notify]")
    for spec in resources:
        try:
            kinds.get(spec.kind).validate_stack(spec, cfg)
        except Invalid as exc:
            fail(("resource", spec.index), f"resource {spec.name!r}: {exc}")
    return cfg


def check_paths(cfg: Config) -> None:
    """`hahooks check`: refuse paths the kinds use as root that another user could
    redirect (safepath). Not part of load(): it looks at the filesystem, and each kind
    verifies its paths again at run time, right before using them."""
    lines = cfg.lines or _Lines("")
    for spec in cfg.resources:
        for key, path, options in kinds.get(spec.kind).paths(spec):
            why = safepath.problem(path, **options)
            if why:
                line = lines.of("resource", spec.index, key)
                where = f"{cfg.path}:{line}" if line else cfg.path
                raise ConfigError(f"{where}: resource {spec.name!r}: {key}: {why}")


def _fields(raw: dict, fields: dict[str, Field], where: tuple, fail, label: str) -> dict:
    out: dict[str, Any] = {}
    for key in raw:
        if key not in fields:
            fail((*where, key), f"{label}: unknown key {key!r}{_hint(key, fields)}")
    for key, field in fields.items():
        if key in raw:
            try:
                out[key] = field.convert(raw[key])
            except Invalid as exc:
                fail((*where, key), f"{label}: {key}: {exc}")
        elif field.required:
            fail(where, f"{label}: missing required key {key!r} ({field.type_name})")
        else:
            out[key] = field.default
    return out


def _hostname() -> str:
    return os.uname().nodename.split(".")[0]
