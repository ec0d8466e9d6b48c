"""Bad input: malformed configs and arguments must give one line on stderr naming the
culprit, the documented exit code, no command run and nothing changed.

Each case runs the real `hahooks` (or a hooks/ entry point) as a process in its own
directory. Every tool a config names, and the usual storage tools, are shadowed on PATH by
canaries that log their call: "no command run" is checked on the canary log AND on the
runner's JSON log. "Nothing changed" compares a snapshot of the case directory (names,
types, modes, sizes, contents, link targets) before and after; only the JSON log may appear.
The cases themselves are in hahooks.lab.drill.badinput_cases.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

from hahooks.lab.drill.badinput_cases import Case, cases

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))
LIB = os.path.join(ROOT, "lib")
CANARY_TOOLS = ("touch", "rm", "test", "true", "false", "sh", "zpool", "zfs", "mount",
                "umount", "fsck", "fsck.ext4", "e2fsck", "hastctl", "gmirror", "ggatec",
                "ggated", "mdconfig", "drbdadm", "sysctl", "service", "systemctl", "kill",
                "reboot", "ip", "logger", "mariadbd", "nginx")


@dataclasses.dataclass
class Outcome:
    case: Case
    exit_code: int
    stderr: str
    problems: list[str]

    @property
    def safe(self) -> bool:
        return not self.problems


# -- running ---------------------------------------------------------------------------
def _snapshot(root: str, skip: tuple[str, ...]) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel.startswith(skip):
                continue
            st = os.lstat(path)
            item = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid)
            if stat.S_ISLNK(st.st_mode):
                item += (os.readlink(path),)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    item += (hashlib.sha256(fh.read()).hexdigest(),)
            out[rel] = item
    return out


def _write_canaries(bin_dir: str, log: str) -> None:
    os.makedirs(bin_dir)
    for tool in CANARY_TOOLS:
        path = os.path.join(bin_dir, tool)
        with open(path, "w") as fh:
            fh.write(f"#!/bin/sh\necho \"$0 $*\" >> {log}\nexit 1\n")
        os.chmod(path, 0o755)


def run_case(case: Case, base: str) -> Outcome:
    d = tempfile.mkdtemp(prefix=f"{case.name[:40]}-", dir=base)
    work = os.path.join(d, "w")          # what hahooks may see and must not change
    os.makedirs(os.path.join(work, "log"))
    canary_log = os.path.join(d, "canary.log")
    _write_canaries(os.path.join(d, "canary"), canary_log)
    cfg_path = os.path.join(work, "hahooks.toml")
    if case.config_bytes is not None:
        with open(cfg_path, "wb") as fh:
            fh.write(case.config_bytes)
    elif case.config is not None:
        with open(cfg_path, "w") as fh:
            fh.write(case.config.replace("{d}", work))
    if os.path.exists(cfg_path):
        os.chmod(cfg_path, 0o600)
    if case.setup:
        case.setup(work)
    before = _snapshot(work, ("log",))
    argv = [a.replace("{d}", work) for a in case.argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAHOOKS_")}
    env["PATH"] = os.path.join(d, "canary") + os.pathsep + env.get("PATH", os.defpath)
    env["PYTHONPATH"] = LIB
    # entry points find `hahooks` on PATH: a canary-free one that runs this checkout
    shim = os.path.join(d, "shim")
    os.makedirs(shim)
    with open(os.path.join(shim, "hahooks"), "w") as fh:
        fh.write(f"#!/bin/sh\nexec {sys.executable} -m hahooks \"$@\"\n")
    os.chmod(os.path.join(shim, "hahooks"), 0o755)
    env["PATH"] = shim + os.pathsep + env["PATH"]
    if case.entry:
        cmd = ["/bin/sh", os.path.join(ROOT, argv[0]), *argv[1:]]
    else:
        cmd = [sys.executable, "-m", "hahooks", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=60,
                          stdin=subprocess.DEVNULL)
    problems = []
    if proc.returncode != case.expect:
        problems.append(f"exit {proc.returncode}, expected {case.expect}")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr, expected 1: {proc.stderr.strip()!r}")
    elif case.mention and case.mention.replace("{d}", work) not in lines[0]:
        problems.append(f"stderr does not name {case.mention!r}: {lines[0]!r}")
    if os.path.exists(canary_log):
        with open(canary_log) as fh:
            problems.append(f"commands ran: {fh.read().strip()!r}")
    problems += _runner_records(os.path.join(work, "log", "hahooks.jsonl"))
    after = _snapshot(work, ("log",))
    if after != before:
        changed = sorted(set(before.items()) ^ set(after.items()))
        problems.append(f"changed: {sorted({c[0] for c in changed})}")
    shutil.rmtree(d, ignore_errors=True)
    return Outcome(case, proc.returncode, lines[0] if len(lines) == 1 else proc.stderr,
                   problems)


def _runner_records(path: str) -> list[str]:
    try:
        with open(path) as fh:
            recs = [json.loads(line) for line in fh if line.strip()]
    except (FileNotFoundError, ValueError):
        return []
    ran = [r for r in recs if r.get("event") == "command"]
    return [f"runner log shows {len(ran)} command(s): {ran[0].get('argv')}"] if ran else []


def run_all(selected: list[Case] | None = None, workers: int = 4) -> list[Outcome]:
    base = tempfile.mkdtemp(prefix="hahooks-badinput-")
    os.chmod(base, 0o755)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda c: run_case(c, base), selected or cases()))
    finally:
        shutil.rmtree(base, ignore_errors=True)
