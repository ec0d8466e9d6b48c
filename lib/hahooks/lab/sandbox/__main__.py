"""`python3 -m hahooks.lab.sandbox cleanup DIR`: tear down a lab whose process is gone (a
`hahooks drill --keep` sandbox, or the remnants of a SIGKILLed test).

Why it is built this way: the lab's own manifest (DIR/lab.json, or DIR/lab/lab.json for a
drill's work dir) names its prefix; under that prefix's lock, everything "<prefix>-*" and
every loop device backed under DIR belongs to the dead lab and nothing else."""
from __future__ import annotations

import argparse
import os
import shutil
import sys

from hahooks.lab.sandbox.hoststate import (MANIFEST, lock_prefix, purge, read_manifest,
                                       unlock_prefix)
from hahooks.lab.sandbox.lab import MARKER, PREFIX_RE
from hahooks.lab.sandbox.nsproc import SandboxError


def find_lab_dir(path: str) -> str | None:
    for candidate in (path, os.path.join(path, "lab")):
        if os.path.exists(os.path.join(candidate, MANIFEST)):
            return os.path.abspath(candidate)
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m hahooks.lab.sandbox",
                                description="tear down a sandbox lab left running")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cleanup", help="kill its nodes, delete its namespaces and loop "
                                       "devices, remove its work dir")
    c.add_argument("dir", help="the lab's work dir (or a drill work dir holding lab/)")
    c.add_argument("--keep-files", action="store_true", help="leave the work dir's files")
    args = p.parse_args(argv)
    lab_dir = find_lab_dir(args.dir)
    if lab_dir is None:
        print(f"hahooks.lab.sandbox: {args.dir}: no {MANIFEST} here or in lab/ (not a sandbox "
              "work dir)", file=sys.stderr)
        return 2
    prefix = read_manifest(lab_dir).get("prefix", "")
    try:
        if not PREFIX_RE.match(prefix):
            raise SandboxError(f"{lab_dir}/{MANIFEST}: bad prefix {prefix!r}")
        fd = lock_prefix(prefix)          # refused while the lab's process is alive
        try:
            removed = purge(prefix, lab_dir)
            if not args.keep_files and os.path.exists(os.path.join(lab_dir, MARKER)):
                shutil.rmtree(lab_dir)
        finally:
            unlock_prefix(prefix, fd)
    except SandboxError as err:
        print(f"hahooks.lab.sandbox: {err}", file=sys.stderr)
        return 1
    for what in removed:
        print(f"removed {what}")
    print(f"hahooks.lab.sandbox: lab {prefix} in {lab_dir} torn down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
