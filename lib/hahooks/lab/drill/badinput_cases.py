"""The bad-input suite's cases: malformed configs, hostile names, unsafe permissions and
bad arguments, each with the exit code and the culprit its one line on stderr must name.
hahooks.lab.drill.badinput runs them."""
from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from typing import Callable

from hahooks.errors import ExitCode

BASE_NODE = """\
[node]
name = "nodea"
state_dir = "{d}/state"
log_file = "{d}/log/hahooks.jsonl"
syslog = false
"""
BASE_RESOURCE = """\
[[resource]]
name = "data"
kind = "command"
acquire = ["touch", "{d}/held"]
release = ["rm", "-f", "{d}/held"]
status = ["test", "-e", "{d}/held"]
"""
GOOD = BASE_NODE + "\n" + BASE_RESOURCE


@dataclasses.dataclass
class Case:
    name: str
    category: str
    argv: list[str]                 # after "hahooks" (or an entry point path as argv[0])
    config: str | None = GOOD       # TOML written to {d}/hahooks.toml ({d} = case dir)
    expect: int = ExitCode.NOT_CONFIGURED
    mention: str = ""               # the one line must contain this (the culprit)
    setup: Callable[[str], None] | None = None
    config_bytes: bytes | None = None
    entry: bool = False             # argv[0] is a script under hooks/


def _res(body: str) -> str:
    return GOOD + "\n" + textwrap.dedent(body)


def _node(extra: str) -> str:
    return BASE_NODE + textwrap.dedent(extra) + "\n" + BASE_RESOURCE


def _replace(old: str, new: str) -> str:
    return GOOD.replace(old, new)


def _chmod(mode: int) -> Callable[[str], None]:
    return lambda d: os.chmod(os.path.join(d, "hahooks.toml"), mode)


def _state_symlink(d: str) -> None:
    os.makedirs(os.path.join(d, "elsewhere"), mode=0o700)
    os.symlink(os.path.join(d, "elsewhere"), os.path.join(d, "state"))


def _state_file_symlink(name: str) -> Callable[[str], None]:
    def setup(d: str) -> None:
        os.makedirs(os.path.join(d, "state"), mode=0o700)
        with open(os.path.join(d, "victim"), "w") as fh:
            fh.write("must stay as it is\n")
        os.symlink(os.path.join(d, "victim"), os.path.join(d, "state", name))
    return setup


def _state_mode(mode: int) -> Callable[[str], None]:
    def setup(d: str) -> None:
        os.makedirs(os.path.join(d, "state"))
        os.chmod(os.path.join(d, "state"), mode)
    return setup


def _state_owner(d: str) -> None:
    os.makedirs(os.path.join(d, "state"), mode=0o700)
    os.chown(os.path.join(d, "state"), 65534, 65534)


def _dir_mode(mode: int, owner: int = 0) -> Callable[[str], None]:
    """The config's own directory (the case dir) with this mode and owner."""
    def setup(d: str) -> None:
        os.chown(d, owner, -1)
        os.chmod(d, mode)
    return setup


def _planted(name: str) -> Callable[[str], None]:
    """{d}/shared is /tmp-like (1777) and nobody (65534) planted shared/NAME -> {d}/victim."""
    def setup(d: str) -> None:
        shared = os.path.join(d, "shared")
        os.makedirs(shared)
        os.chmod(shared, 0o1777)
        os.makedirs(os.path.join(d, "victim"), mode=0o700)
        os.symlink(os.path.join(d, "victim"), os.path.join(shared, name))
        os.lchown(os.path.join(shared, name), 65534, 65534)
    return setup


def _layer(name: str, kind: str, **params: str) -> str:
    """BASE_NODE and one layer; params are TOML values as written."""
    keys = "".join(f"{key} = {value}\n" for key, value in params.items())
    return f'{BASE_NODE}\n[[resource]]\nname = "{name}"\nkind = "{kind}"\n{keys}'


def _config_dir(d: str) -> None:
    os.unlink(os.path.join(d, "hahooks.toml"))
    os.makedirs(os.path.join(d, "hahooks.toml"))


def _config_gone(d: str) -> None:
    os.unlink(os.path.join(d, "hahooks.toml"))


def cases() -> list[Case]:
    """The suite. Kind- and wiring-specific cases join when those modules are present."""
    C, M = ExitCode.NOT_CONFIGURED, ["master", "-c", "{d}/hahooks.toml"]
    K = ["check", "-c", "{d}/hahooks.toml"]   # unsafe kind paths: check sees them statically
    out = [
        # -- types ---------------------------------------------------------------------
        Case("timeout-not-duration", "types", M, _res("""\
            [[resource]]
            name = "svc"
            kind = "command"
            state_file = "/x/svc"
            acquire = ["true"]
            release = ["true"]
            timeout = "soon"
            """), C, "timeout"),
        Case("negative-timeout", "types", M, _node('command_timeout = -5\n'), C,
             "command_timeout"),
        Case("bool-as-string", "types", M, _node('syslog_facility = "local0"\n')
             .replace("syslog = false", 'syslog = "no"'), C, "syslog"),
        Case("name-is-int", "types", M, _replace('name = "nodea"', "name = 42"), C, "name"),
        Case("argv-as-shell-string", "types", M,
             _replace('acquire = ["touch", "{d}/held"]', 'acquire = "touch {d}/held"'), C,
             "acquire"),
        Case("argv-empty", "types", M, _replace('acquire = ["touch", "{d}/held"]',
                                                 "acquire = []"), C, "acquire"),
        Case("argv-not-strings", "types", M,
             _replace('acquire = ["touch", "{d}/held"]', 'acquire = ["touch", 5]'), C,
             "acquire"),
        Case("released-codes-zero", "types", M,
             _res("""\
            [[resource]]
            name = "svc"
            kind = "command"
            acquire = ["true"]
            release = ["true"]
            status = ["true"]
            released_codes = [0]
            """), C, "released_codes"),
        Case("relative-dev-dir", "types", M, _node('dev_dir = "dev"\n'), C, "dev_dir"),
        Case("relative-state-dir", "types", M,
             _replace('state_dir = "{d}/state"', 'state_dir = "state"'), C, "state_dir"),
        Case("dotdot-log-file", "types", M,
             _replace('log_file = "{d}/log/hahooks.jsonl"',
                      'log_file = "{d}/../../etc/hahooks.jsonl"'), C, "log_file"),
        Case("tool-path-relative", "types", M, _node('paths = { zpool = "sbin/zpool" }\n'), C,
             "paths"),
        Case("unknown-platform", "types", M, _node('platform = "windows"\n'), C, "platform"),
        Case("unknown-facility", "types", M, _node('syslog_facility = "kern"\n'), C,
             "syslog_facility"),
        Case("node-not-table", "types", M, 'node = 5\n' + BASE_RESOURCE, C, "node"),
        Case("resource-not-array", "types", M,
             BASE_NODE + '\n[resource]\nname = "x"\nkind = "command"\n', C, "resource"),
        Case("no-resources", "types", M, BASE_NODE, C, "resource"),
        Case("toml-syntax", "types", M, GOOD + "\n[[resource]\nname = 1\n", C,
             "hahooks.toml:"),
        Case("not-utf8", "types", M, None, C, "UTF-8",
             config_bytes=b'[node]\nname = "\xff\xfe"\n'),
        Case("nul-in-string", "types", M,
             _replace('name = "data"', 'name = "da\\u0000ta"'), C, "name"),
        Case("duration-unit", "types", M, _node('wait_timeout = "10 parsecs"\n'), C,
             "wait_timeout"),
        Case("int-as-bool", "types", M, _res("""\
            [[resource]]
            name = "svc"
            kind = "command"
            acquire = ["true"]
            release = ["true"]
            status = ["true"]
            released_codes = [true]
            """), C, "released_codes"),
        # -- unknown keys --------------------------------------------------------------
        Case("unknown-top-level", "unknown keys", M, GOOD + '\n[nodes]\nname = "x"\n', C,
             "nodes"),
        Case("unknown-node-key", "unknown keys", M, _node('fenc = ["true"]\n'), C, "fenc"),
        Case("unknown-resource-key", "unknown keys", M,
             _replace('acquire = ["touch"', 'aquire = ["touch"'), C, "aquire"),
        Case("unknown-kind", "unknown keys", M, _replace('kind = "command"', 'kind = "zfs"'),
             C, "zfs"),
        Case("missing-kind", "unknown keys", M, _replace('kind = "command"\n', ""), C, "kind"),
        Case("missing-status", "unknown keys", M,
             _replace('status = ["test", "-e", "{d}/held"]\n', ""), C, "status"),
        Case("duplicate-name", "unknown keys", M, GOOD + "\n" + BASE_RESOURCE, C, "data"),
        Case("missing-release", "unknown keys", M,
             _replace('release = ["rm", "-f", "{d}/held"]\n', ""), C, "release"),
        # -- hostile names -------------------------------------------------------------
        *[Case(f"hostile-resource-name-{i}", "hostile names", M,
               _replace('name = "data"', f"name = {json.dumps(bad)}"), C, "name")
          for i, bad in enumerate(["../x", "a;b", "$(reboot)", "a b", "x\ny", "`id`",
                                   "-rf", "", "a" * 100, "a|b", "/etc/passwd", "a&&b"])],
        Case("hostile-node-name", "hostile names", M,
             _replace('name = "nodea"', 'name = "../../etc"'), C, "name"),
        Case("hostile-tool-name", "hostile names", M,
             _node('paths = { "../zpool" = "/sbin/zpool" }\n'), C, "paths"),
        # -- permissions and unsafe paths ----------------------------------------------
        Case("config-world-writable", "permissions", M, GOOD, C, "writable",
             setup=_chmod(0o666)),
        Case("config-group-writable", "permissions", M, GOOD, C, "writable",
             setup=_chmod(0o620)),
        Case("config-is-directory", "permissions", M, GOOD, C, "regular file",
             setup=_config_dir),
        Case("config-missing", "permissions", M, GOOD, C, "not found", setup=_config_gone),
        Case("state-dir-symlink", "permissions", M, GOOD, ExitCode.PERM, "symlink",
             setup=_state_symlink),
        Case("state-dir-group-writable", "permissions", M, GOOD, ExitCode.PERM, "writable",
             setup=_state_mode(0o770)),
        Case("state-dir-other-owner", "permissions", M, GOOD, ExitCode.PERM, "owned",
             setup=_state_owner),
        Case("lock-symlink", "permissions", M, GOOD, ExitCode.PERM, "symlink",
             setup=_state_file_symlink("transition.lock")),
        *[Case(f"state-file-symlink-{name}", "permissions", M, GOOD, ExitCode.PERM,
               "symlink", setup=_state_file_symlink(name))
          for name in ("desire.lock", "desire.json", "done.json")],
        Case("config-dir-world-writable", "permissions", M, GOOD, C, "sticky bit",
             setup=_dir_mode(0o777)),
        Case("config-dir-other-owner", "permissions", M, GOOD, C, "owned by uid 65534",
             setup=_dir_mode(0o755, 65534)),
        Case("mountpoint-planted-symlink", "permissions", K,
             _layer("data", "filesystem", device='"/dev/null"', mountpoint='"{d}/shared/mnt"'),
             C, "symlink {d}/shared/mnt is owned by uid 65534", setup=_planted("mnt")),
        Case("links-backup-planted-symlink", "permissions", K,
             _layer("etc", "links", links='{ "{d}/shared/app.conf" = "{d}/victim/app.conf" }'),
             C, "app.conf.hahooks-orig is owned by uid 65534",
             setup=_planted("app.conf.hahooks-orig")),
        Case("pidfile-planted-symlink", "permissions", K,
             _layer("svc", "service", service='"svc"', pidfile='"{d}/shared/svc.pid"'),
             C, "symlink {d}/shared/svc.pid", setup=_planted("svc.pid")),
        # -- arguments -----------------------------------------------------------------
        Case("unknown-option", "arguments", ["master", "--bogus", "-c", "{d}/hahooks.toml"],
             GOOD, ExitCode.ARGS, "--bogus"),
        Case("unknown-command", "arguments", ["frobnicate"], GOOD, ExitCode.ARGS,
             "frobnicate"),
        Case("plan-bad-role", "arguments", ["plan", "sideways", "-c", "{d}/hahooks.toml"],
             GOOD, ExitCode.ARGS, "sideways"),
        Case("wait-and-detach", "arguments",
             ["master", "--wait", "--detach", "-c", "{d}/hahooks.toml"], GOOD, ExitCode.ARGS,
             "--detach"),
        Case("history-n-not-int", "arguments", ["history", "-n", "abc", "-c",
                                                "{d}/hahooks.toml"], GOOD, ExitCode.ARGS,
             "abc"),
        Case("no-command", "arguments", [], GOOD, ExitCode.ARGS, ""),
        Case("drill-bad-inject", "arguments", ["drill", "--inject", "a;b:fail"], GOOD,
             ExitCode.ARGS, "a;b"),
        Case("drill-bad-fault", "arguments", ["drill", "--inject", "pool:explode"], GOOD,
             ExitCode.ARGS, "pool:explode"),
        Case("drill-unknown-scenario", "arguments", ["drill", "--scenario", "../x"], GOOD,
             ExitCode.ARGS, "../x"),
        Case("hook-master-extra-arg", "arguments",
             ["hooks/master", "--detach", "$(reboot)", "-c", "{d}/hahooks.toml"], GOOD,
             ExitCode.ARGS, "$(reboot)", entry=True),
    ]
    return out + _kind_cases() + _wiring_cases()


def _kind_cases() -> list[Case]:
    """Cases for the storage and replication kinds that exist in this checkout."""
    from hahooks import kinds

    have = set(kinds.names())
    C, M = ExitCode.NOT_CONFIGURED, ["master", "-c", "{d}/hahooks.toml"]
    out: list[Case] = []
    if "hast" in have:
        for i, bad in enumerate(["../x", "r0;reboot", "$(id)"]):
            out.append(Case(f"hast-hostile-resource-{i}", "hostile names", M, BASE_NODE + f"""
[[resource]]
name = "disks"
kind = "hast"
resources = ["r0", {json.dumps(bad)}]
""", C, "resources"))
        out.append(Case("hast-resources-not-list", "types", M, BASE_NODE + """
[[resource]]
name = "disks"
kind = "hast"
resources = 7
""", C, "resources"))
    if "zpool" in have:
        out.append(Case("zpool-hostile-pool", "hostile names", M, BASE_NODE + """
[[resource]]
name = "pool"
kind = "zpool"
pool = "tank;zpool destroy tank"
""", C, "pool"))
    if "filesystem" in have:
        out.append(Case("filesystem-missing-device", "missing devices", M, BASE_NODE + """
[[resource]]
name = "fs"
kind = "filesystem"
mountpoint = "{d}/mnt"
""", C, "device"))
        out.append(Case("filesystem-relative-device", "missing devices", M, BASE_NODE + """
[[resource]]
name = "fs"
kind = "filesystem"
device = "hast/r0"
mountpoint = "{d}/mnt"
""", C, "device"))
    return out


def _wiring_cases() -> list[Case]:
    """devd variables with shell metacharacters reach the devd entry as arguments: they
    must be refused (exit 2) before anything is recorded."""
    out: list[Case] = []
    try:
        from hahooks.wiring import devd
    except ImportError:
        return out
    if not hasattr(devd, "register"):
        return out
    for i, (sub, typ) in enumerate([("1@em0;reboot", "MASTER"), ("$(reboot)@em0", "MASTER"),
                                    ("1@em0", "MASTER;reboot"), ("1@`id`", "BACKUP"),
                                    ("1@em0|sh", "MASTER"), ("1@em0\nreboot", "MASTER")]):
        out.append(Case(f"devd-metachar-{i}", "devd variables",
                        ["devd-event", "-c", "{d}/hahooks.toml", "CARP", sub, typ], GOOD,
                        ExitCode.ARGS, ""))
    return out
