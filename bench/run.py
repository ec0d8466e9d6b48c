"""All six benchmarks of issue 7 in one run, a results table with the targets beside the figures.

  1 seed scripts    bench/baselines.py      the users' scripts vs hahooks, same simulator
  2 critical path   bench/critical_path.py  transition wall vs the longest sequential chain
  3 scale           bench/critical_path.py  1..64 HAST resources, 1..16 filesystems
  4 real parts      bench/storage_stacks.py zfs-fuse and ext4 stacks vs a bare shell script
  5 overhead        bench/overhead.py       hook start-up, no-op master, status, imports
  6 reaction        bench/reaction.py       condition true -> the wait notices

Run (root, after ./scripts/bootstrap):  python3 bench/run.py [--quick] [--only 1,4,...]
Writes bench/results/benchmarks.{md,json} and the table in docs/performance.md (between its
markers). Figures are medians; nothing here asserts on time. A part that cannot run (a missing
component) is reported as a row saying why, and the exit status is 1.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback

from common import ROOT, Figure, render_markdown, write_results

PARTS = (  # (part numbers, module, how to call it)
    ((1,), "baselines", lambda m, a: m.run(a)),
    ((2, 3), "critical_path", lambda m, a: m.run(a)),
    ((4,), "storage_stacks", lambda m, a: m.run(a)),
    ((5,), "overhead", lambda m, a: m.measure(5 if a.quick else 15)),
    ((6,), "reaction", lambda m, a: m.measure(20 if a.quick else 60)),
)
DOC = os.path.join(ROOT, "docs", "performance.md")
BEGIN, END = "<!-- bench/run.py table: begin -->", "<!-- bench/run.py table: end -->"


def update_doc(table: str) -> None:
    """Replace the generated table in docs/performance.md, keeping the prose around it."""
    with open(DOC) as fh:
        text = fh.read()
    head, sep, rest = text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise SystemExit(f"{DOC}: markers {BEGIN!r} / {END!r} not found")
    with open(DOC, "w") as fh:
        fh.write(head + BEGIN + "\n" + table + END + tail)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer runs (a smoke run, ~3 min)")
    ap.add_argument("--only", default="", help="comma-separated part numbers (default: all)")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure where a part "
                    "takes it (default: the part's own)")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/performance.md")
    args = ap.parse_args()
    only = {int(x) for x in args.only.split(",") if x.strip()}
    if os.geteuid() != 0:
        print("bench/run.py: run as root (the benchmarks mount, use loop devices and "
              "namespaces)", file=sys.stderr)
        return 4
    figures: list[Figure] = []
    failed = False
    started = time.monotonic()
    for numbers, module, call in PARTS:
        if only and not only & set(numbers):
            continue
        label = "/".join(map(str, numbers))
        t0 = time.monotonic()
        print(f"== part {label}: bench/{module}.py", file=sys.stderr, flush=True)
        try:
            got = call(importlib.import_module(module), args)
            if only:
                got = [f for f in got if int(f.section.split()[0]) in only]
            figures += got
        except Exception as exc:  # one part failing must not hide the others' figures
            failed = True
            traceback.print_exc()
            figures.append(Figure(f"{label} {module}", f"did not run: {exc}".replace("|", "/"),
                                  float("nan"), "", "", False))
        print(f"   part {label} took {time.monotonic() - t0:.0f} s", file=sys.stderr)
    figures.sort(key=lambda f: f.section)
    table = render_markdown(figures, "hahooks benchmarks")
    print(table)
    js, md = write_results(figures, "benchmarks")
    print(f"written: {js}, {md} ({time.monotonic() - started:.0f} s in all)", file=sys.stderr)
    if not args.no_doc and not only and not args.quick:
        update_doc(table)
        print(f"updated: {DOC}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
