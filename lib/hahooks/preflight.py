"""`hahooks check` beyond the schema.

lint(): the order of the stack, no I/O. A filesystem whose device a replication layer
*above* it provides would wait for a device that only appears later in the walk (and the
release would demote the device first); a service or links layer below a filesystem starts on
the bare mountpoint directory and keeps running while the filesystem is unmounted.

deep(): what this node must have, read-only (the dry-run runner `plan` uses: queries run,
nothing else): every tool the status, acquire and release of each layer would run (init
scripts included: they are the argv[0] of a service's commands), the devices of
filesystems that no replication layer provides, and that each pool is imported or
importable (`zpool import` without a pool name only lists).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os

from hahooks.engine import Engine
from hahooks.errors import ExitCode, HahooksError, NotInstalled, PermissionProblem

# kinds whose acquire makes block devices appear (kinds/_replication.py dev_path)
REPLICATION = ("hast", "drbd", "gmirror", "md", "ggate-attach")
STARTS_PROGRAMS = ("service", "links")


@dataclasses.dataclass
class Finding:
    level: str            # "error" | "warning" | "note"
    line: int
    message: str
    exit_code: int = ExitCode.NOT_CONFIGURED

    def render(self, path: str) -> str:
        return f"{path}:{self.line}: {self.level}: {self.message}"


def _engine(cfg):
    return Engine.for_config(cfg, dry_run=True)


def provided_devices(res) -> list[str]:
    """Device paths (fnmatch patterns) a replication layer makes appear when held."""
    if res.KIND == "hast":
        return [res.device("*" if res.all else name) for name in res.targets()]
    device = getattr(res, "device", None)
    return [device] if isinstance(device, str) else []


def lint(cfg) -> list[Finding]:
    engine = _engine(cfg)
    specs = cfg.resources
    provides = {s.index: provided_devices(engine.resource(s.index)) for s in specs
                if s.kind in REPLICATION}
    out: list[Finding] = []
    for spec in specs:
        above = specs[spec.index + 1:]
        if spec.kind == "filesystem":
            device = spec.params["device"]
            for other in above:
                if any(fnmatch.fnmatchcase(device, p) for p in provides.get(other.index, ())):
                    out.append(Finding("error", spec.line, (
                        f"filesystem {spec.name!r} mounts {device}, which {other.name!r} "
                        f"({other.kind}, line {other.line}) above it provides: master would "
                        f"wait for a device not there yet; move {other.name!r} below it")))
        if spec.kind in STARTS_PROGRAMS:
            for other in above:
                if other.kind == "filesystem":
                    out.append(Finding("warning", spec.line, (
                        f"{spec.kind} {spec.name!r} is below filesystem {other.name!r} "
                        f"(line {other.line}): master starts it on the bare mountpoint "
                        f"directory and slave unmounts {other.name!r} while it runs; if it "
                        f"uses that filesystem, move it above")))
                    break
    return out


def deep(cfg) -> list[Finding]:
    out: list[Finding] = []
    provided = [p for s in cfg.resources if s.kind in REPLICATION
                for p in provided_devices(_engine(cfg).resource(s.index))]
    for spec in cfg.resources:
        messages: dict[str, Finding] = {}

        def add(level: str, message: str, code: int = ExitCode.NOT_CONFIGURED) -> None:
            messages.setdefault(message, Finding(level, spec.line, f"{spec.name}: {message}",
                                                 code))

        engine = _engine(cfg)
        for action in ("status", "acquire", "release"):
            try:
                getattr(engine.resource(spec.index), action)()
            except (NotInstalled, PermissionProblem) as exc:
                add("error", exc.one_line(), int(exc.exit_code))
            except HahooksError as exc:   # a preview that needs the layers below held
                add("note", f"{action} preview stops: {exc.one_line()}", ExitCode.OK)
        for result in engine.runner.history:
            if result.dry_run:
                try:
                    engine.runner.resolve(result.argv[0])
                except NotInstalled as exc:
                    add("error", exc.one_line(), ExitCode.NOT_INSTALLED)
        if spec.kind == "zpool":
            try:
                _check_pool(engine.runner, spec, cfg, add)
            except HahooksError as exc:    # zpool missing: already reported by status
                add("note", f"pool not looked up: {exc.one_line()}", ExitCode.OK)
        if spec.kind == "zpool":
            try:
                _check_pool(engine.runner, spec, cfg, add)
            except HahooksError as exc:    # zpool missing: already reported by status
                add("note", f"pool not looked up: {exc.one_line()}", ExitCode.OK)
        if spec.kind == "filesystem":
            device = spec.params["device"]
            if not os.path.exists(device) and \
                    not any(fnmatch.fnmatchcase(device, p) for p in provided):
                add("warning", f"device {device} does not exist and no replication layer "
                    "provides it")
        out += messages.values()
    return out


def _check_pool(runner, spec, cfg, add) -> None:
    """The pool is imported here or `zpool import [-d DIR]` (a read-only listing) shows it.
    On top of a replication layer its devices exist only where that layer is held."""
    pool, dirs = spec.params["pool"], spec.params["import_dirs"]
    if runner.run(["zpool", "list", "-H", "-o", "name", pool], readonly=True,
                  check=False).ok:
        return
    listing = runner.run(["zpool", "import", *[w for d in dirs for w in ("-d", d)]],
                         readonly=True, check=False).stdout
    if any(line.strip() == f"pool: {pool}" for line in listing.splitlines()):
        return
    where = f" from {', '.join(dirs)}" if dirs else ""
    below = [s.name for s in cfg.resources[:spec.index] if s.kind in REPLICATION]
    if below:
        add("note", f"pool {pool} is not importable{where} here: its devices come from "
            f"{', '.join(below)}; check --deep where that is held", ExitCode.OK)
    else:
        add("warning", f"pool {pool} is neither imported nor importable{where}")


def exit_code(findings: list[Finding]) -> int:
    """5 if a tool is missing, else the first error's code, else 0."""
    errors = [f.exit_code for f in findings if f.level == "error"]
    if ExitCode.NOT_INSTALLED in errors:
        return ExitCode.NOT_INSTALLED
    return int(errors[0]) if errors else ExitCode.OK
