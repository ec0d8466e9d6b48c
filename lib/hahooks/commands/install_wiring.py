"""`hahooks install-wiring`: put every daemon's entry point where the daemon looks, pointing
at this install of hahooks (docs/install.md).

What goes where is platforms.WIRING_LAYOUTS: the `hahooks` command in PREFIX/sbin (a symlink
to this interpreter's console script; devd rules and the sh scripts name that path),
hooks/ in PREFIX/libexec/hahooks, the Heartbeat scripts in resource.d, the OCF agent as
ocf:hahooks:hahooks with this interpreter as its `#!` line (`env python3` would find one
without hahooks), devd rules on FreeBSD and the man pages. The sources are the shipped
wiring files (hahooks.wiring.shipped). Idempotent: an entry already as it should be is left
alone; a manifest of what was installed (and which directories were created) is what
--uninstall removes, and nothing else.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import sys

from hahooks import config, platforms
from hahooks.errors import PermissionProblem, UsageError
from hahooks.wiring import devd

# wiring.shipped (importlib.resources) and the runner are imported where they are used: the
# CLI imports this module to build its whole parser (cli.COMMAND_MODULES), which a wiring
# hook does at every event.

DEVD_EXAMPLE = "hahooks-carp.conf"
_SHIPPED_HAHOOKS = "/usr/local/sbin/hahooks"     # the path the shipped devd rules name
DEPENDENCIES = ("sh", "psutil", "pythonjsonlogger")


@dataclasses.dataclass
class Entry:
    path: str                  # where it goes (without --root)
    content: bytes | None      # file content, or None for a symlink
    mode: int = 0o755
    link: str | None = None    # symlink target

    @property
    def digest(self) -> str:
        if self.link is not None:
            return "symlink:" + self.link
        return "sha256:" + hashlib.sha256(self.content).hexdigest()


def current_digest(path: str) -> str | None:
    """What is at `path` now, in Entry.digest's terms (None: nothing)."""
    if os.path.islink(path):
        return "symlink:" + os.readlink(path)
    if not os.path.isfile(path):
        return None if not os.path.lexists(path) else "other"
    with open(path, "rb") as fh:
        return "sha256:" + hashlib.sha256(fh.read()).hexdigest()


# -- what to install ------------------------------------------------------------------------
def _read(directory: str, name: str) -> str:
    from hahooks.wiring import shipped

    with open(shipped.path(directory, name), encoding="utf-8") as fh:
        return fh.read()


def sh_wrapper(text: str, hahooks: str) -> bytes:
    """A shipped sh script with its `exec hahooks ...` bound to the installed command, so
    it never depends on the PATH a daemon gives it."""
    lines = text.splitlines(keepends=True)
    bound = [f"exec {hahooks} " + line[len("exec hahooks "):]
             if line.startswith("exec hahooks ") else line for line in lines]
    if bound == lines:
        raise UsageError("a shipped script has no `exec hahooks` line: the wiring files "
                         "and install-wiring disagree")
    return "".join(bound).encode()


def python_script(text: str, interpreter: str) -> bytes:
    """A shipped python script with this install's interpreter as its #! line."""
    first, _, rest = text.partition("\n")
    if not first.startswith("#!"):
        raise UsageError("the shipped OCF agent has no #! line")
    return f"#!{interpreter}\n{rest}".encode()


def console_script() -> str | None:
    """The `hahooks` console script pip installed beside this interpreter."""
    candidate = os.path.join(os.path.dirname(sys.executable), "hahooks")
    return candidate if os.access(candidate, os.X_OK) else None


def devd_rules(hahooks: str, config_path: str | None) -> bytes:
    """Rules for the given config's [wiring] (as `render --only devd`), else the shipped
    example (CARP vhid 1 on em0) bound to the installed command."""
    if config_path:
        cfg = config.load(config_path)
        return devd.render_rules(cfg.wiring, hahooks, os.path.abspath(config_path)).encode()
    return _read("devd", DEVD_EXAMPLE).replace(_SHIPPED_HAHOOKS, hahooks).encode()


def plan(layout, *, interpreter: str, config_path: str | None) -> list[Entry]:
    from hahooks.wiring import shipped

    hahooks = os.path.join(layout.sbin, "hahooks")
    script = console_script()
    if script:
        entries = [Entry(hahooks, None, link=script)]
    else:       # no console script (run from a checkout): a wrapper for this interpreter
        entries = [Entry(hahooks, f'#!/bin/sh\nexec {interpreter} -m hahooks "$@"\n'.encode())]
    for name in shipped.names("hooks"):
        entries.append(Entry(os.path.join(layout.libexec, name),
                             sh_wrapper(_read("hooks", name), hahooks)))
    for name in shipped.names("heartbeat-resource.d"):
        entries.append(Entry(os.path.join(layout.heartbeat, name),
                             sh_wrapper(_read("heartbeat-resource.d", name), hahooks)))
    entries.append(Entry(os.path.join(layout.ocf, "hahooks"),
                         python_script(_read("ocf", "hahooks"), interpreter)))
    if layout.devd:
        entries.append(Entry(os.path.join(layout.devd, "hahooks.conf"),
                             devd_rules(hahooks, config_path), mode=0o644))
    for name in shipped.names("man"):
        section = name.rsplit(".", 1)[1]
        entries.append(Entry(os.path.join(layout.man, f"man{section}", name),
                             _read("man", name).encode(), mode=0o644))
    return entries


# -- doing it -------------------------------------------------------------------------------
def rooted(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root else path


def load_manifest(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {"files": {}, "dirs": []}
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the install manifest {path}: {exc}") from None


def make_dirs(root: str, directory: str, created: list[str], dry_run: bool) -> None:
    """mkdir -p, remembering each directory made (unrooted) for --uninstall."""
    missing = []
    while directory not in ("", "/") and not os.path.isdir(rooted(root, directory)):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for d in reversed(missing):
        if not dry_run:
            os.mkdir(rooted(root, d), 0o755)
            os.chmod(rooted(root, d), 0o755)       # world-readable whatever the umask
        created.append(d)


def write_entry(root: str, entry: Entry) -> None:
    target = rooted(root, entry.path)
    tmp = target + ".hahooks-new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    if entry.link is not None:
        os.symlink(entry.link, tmp)
    else:
        with open(tmp, "wb") as fh:
            fh.write(entry.content)
        os.chmod(tmp, entry.mode)
    os.replace(tmp, target)         # atomic: a daemon never runs half a file


def install(layout, *, root: str, interpreter: str, config_path: str | None,
            dry_run: bool, out=print) -> int:
    entries = plan(layout, interpreter=interpreter, config_path=config_path)
    manifest_path = rooted(root, layout.manifest)
    manifest = load_manifest(manifest_path)
    created = list(manifest.get("dirs", []))
    verb = "would " if dry_run else ""
    changed = 0
    for entry in entries:
        now = current_digest(rooted(root, entry.path))
        mode_ok = (entry.link is not None or now is None or
                   os.stat(rooted(root, entry.path)).st_mode & 0o7777 == entry.mode)
        if now == entry.digest and mode_ok:
            out(f"unchanged {entry.path}")
            continue
        changed += 1
        if now == "other":
            raise UsageError(f"{rooted(root, entry.path)} exists and is not a file or "
                             "symlink: remove it first")
        make_dirs(root, os.path.dirname(entry.path), created, dry_run)
        if not dry_run:
            write_entry(root, entry)
        what = f"-> {entry.link}" if entry.link else f"(mode {entry.mode:o})"
        out(f"{verb}{'install' if now is None else 'replace'} {entry.path} {what}")
    make_dirs(root, os.path.dirname(layout.manifest), created, dry_run)
    new_manifest = {"installed_by": interpreter, "dirs": created,
                    "files": {e.path: e.digest for e in entries}}
    if new_manifest != manifest:
        changed += 1
        if not dry_run:
            write_entry(root, Entry(layout.manifest, (json.dumps(new_manifest, indent=1)
                                                      + "\n").encode(), mode=0o644))
        out(f"{verb}record {layout.manifest}")
    if not changed:
        out(f"install-wiring: nothing to change ({len(entries)} entries already in place)")
    elif dry_run:
        out("install-wiring: dry run, nothing changed")
    problem = importable_without_pythonpath(interpreter)
    if problem:
        print(f"install-wiring: warning: {interpreter} cannot import {problem} without "
              "PYTHONPATH: the OCF agent will exit 5 (install hahooks into that interpreter, "
              "e.g. scripts/install-production)", file=sys.stderr)
    return 0


def importable_without_pythonpath(interpreter: str) -> str | None:
    """What the baked-in interpreter cannot import as a daemon runs it (-I: no PYTHONPATH,
    no current directory), or None. Run from a checkout with PYTHONPATH=lib, the installed
    entry points would not find hahooks."""
    from hahooks.runner import Runner

    missing = [n for n in DEPENDENCIES if importlib.util.find_spec(n) is None]
    if missing:         # not even here, so the runner (sh) cannot ask either
        return " ".join(missing)
    code = ("import importlib.util as u\n"
            f"print(' '.join(n for n in {('hahooks', *DEPENDENCIES)!r} if not u.find_spec(n)))")
    result = Runner().run([interpreter, "-I", "-c", code], readonly=True, check=False,
                          timeout=60)
    if not result.ok:
        return f"anything (exit {result.exit_code})"
    return result.stdout.strip() or None


def uninstall(layout, *, root: str, dry_run: bool, out=print) -> int:
    manifest_path = rooted(root, layout.manifest)
    if not os.path.exists(manifest_path):
        out(f"install-wiring: nothing to remove (no manifest at {layout.manifest})")
        return 0
    manifest = load_manifest(manifest_path)
    verb = "would " if dry_run else ""
    kept = 0
    for path, digest in sorted(manifest["files"].items()):
        now = current_digest(rooted(root, path))
        if now is None:
            out(f"absent {path}")
        elif now != digest:    # changed since: someone's edit, not ours to delete
            kept += 1
            out(f"keep {path} (changed since it was installed)")
        else:
            if not dry_run:
                os.unlink(rooted(root, path))
            out(f"{verb}remove {path}")
    if not dry_run:
        os.unlink(manifest_path)
    out(f"{verb}remove {layout.manifest}")
    for directory in sorted(manifest.get("dirs", []), key=len, reverse=True):
        full = rooted(root, directory)
        if os.path.isdir(full) and not os.listdir(full) and not dry_run:
            os.rmdir(full)
            out(f"remove {directory}/")
    if kept:
        out(f"install-wiring: kept {kept} changed file(s)")
    return 0


# -- the subcommand -------------------------------------------------------------------------
def register(sub, common) -> None:
    p = sub.add_parser(
        "install-wiring", parents=[common], help="install the daemons' entry points "
        "(hahooks in sbin, hooks, devd rules, Heartbeat scripts, OCF agent, man pages)",
        description="Install every daemon's entry point where the daemon looks, bound to "
        "this install of hahooks (its interpreter, its console script). Idempotent; "
        "--uninstall removes what the manifest says was installed. With -c, the devd "
        "rules are rendered for that config's [wiring]; without, the shipped example "
        "rules (CARP vhid 1 on em0) are installed.")
    p.add_argument("--prefix", default="/usr/local",
                   help="for sbin, libexec, man and (FreeBSD) etc (default /usr/local)")
    p.add_argument("--root", default="", help="install under this directory, as DESTDIR "
                   "(the installed files still name the paths without it)")
    p.add_argument("--platform", choices=sorted(platforms.WIRING_LAYOUTS),
                   help="layout to install (default: this host's)")
    p.add_argument("--dry-run", action="store_true", help="print what would change")
    p.add_argument("--uninstall", action="store_true",
                   help="remove what the manifest records as installed")
    p.set_defaults(func=run)


def run(args) -> int:
    for flag, value in (("--prefix", args.prefix), ("--root", args.root or "/")):
        if not os.path.isabs(value):
            raise UsageError(f"install-wiring: {flag} {value!r} must be an absolute path")
    name = args.platform or platforms.host_platform().name
    layout = platforms.WIRING_LAYOUTS[name].resolve(args.prefix)
    root = os.path.abspath(args.root) if args.root else ""
    try:
        if args.uninstall:
            return uninstall(layout, root=root, dry_run=args.dry_run)
        return install(layout, root=root, interpreter=sys.executable,
                       config_path=args.config, dry_run=args.dry_run)
    except PermissionError as exc:
        raise PermissionProblem(f"install-wiring: {exc} (run as root)") from None
