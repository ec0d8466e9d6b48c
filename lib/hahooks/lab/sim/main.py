"""Entry point of every simulated command: `python3 -m hahooks.lab.sim <tool> args...` or the
launchers in $HAHOOKS_SIM_ROOT/bin. Identity comes from HAHOOKS_SIM_ROOT and
HAHOOKS_SIM_NODE; faults and latencies apply before the tool runs; every run is logged."""
from __future__ import annotations

import importlib
import os
import sys
import time

from hahooks.lab.sim import faults
from hahooks.lab.sim.state import COMMANDS, SimError, Store, root_from_env

# tool name -> module (each module has main(ctx, args) -> exit code)
TOOLS = {
    "hastctl": "hahooks.lab.sim.hast",
    "hastd": "hahooks.lab.sim.hastd",
    "gmirror": "hahooks.lab.sim.gmirror",
    "ggatec": "hahooks.lab.sim.ggate",
    "ggated": "hahooks.lab.sim.ggate",
    "mdconfig": "hahooks.lab.sim.md",
    "drbdadm": "hahooks.lab.sim.drbd",
    "drbdsetup": "hahooks.lab.sim.drbd",
    "sysctl": "hahooks.lab.sim.sysctl",
    "jot": "hahooks.lab.sim.jot",
}

EX_CONFIG = 78


class Ctx:
    """One simulated command: which tool, on which node, in which world."""

    def __init__(self, tool: str, args: list[str], root: str, node: str):
        self.tool = tool
        self.args = args
        self.store = Store(root)
        self.node = node
        self.out = sys.stdout
        self.err = sys.stderr

    @property
    def cmdline(self) -> str:
        return " ".join([self.tool, *self.args])

    def dev(self, *parts: str) -> str:
        return os.path.join(self.store.dev_dir(self.node), *parts)

    def violation(self, kind: str, detail: str, **extra) -> None:
        self.store.violation(kind, detail, node=self.node, cmd=self.cmdline, **extra)


def run(tool: str, args: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if args is None else args)
    try:
        root = root_from_env()
        node = os.environ.get("HAHOOKS_SIM_NODE")
        if not node:
            raise SimError("HAHOOKS_SIM_NODE is not set (the simulated node's name)")
        if not os.path.isdir(root):
            raise SimError(f"HAHOOKS_SIM_ROOT={root} is not a directory")
    except SimError as exc:
        sys.stderr.write(f"{tool}: hahooks.lab.sim: {exc}\n")
        sys.exit(EX_CONFIG)
    ctx = Ctx(tool, args, root, node)
    started = time.time()
    outcome = faults.decide(root, ctx.cmdline, node)
    record = {"node": node, "argv": [tool, *args], "start": started, "rc": None,
              "pid": os.getpid(), "latency": outcome.latency,
              "fault": outcome.rule["id"] if outcome.rule else None}
    if outcome.hang:
        ctx.store.append(COMMANDS, {**record, "end": None, "hang": True})
        faults.hang()
    if outcome.fail_before:
        ctx.store.append(COMMANDS, {**record, "end": time.time(),
                                    "rc": int(outcome.rule["fail"])})
        faults.emit_failure(outcome.rule)
    module = importlib.import_module(TOOLS[tool])
    try:
        rc = module.main(ctx, args)
    except BrokenPipeError:
        rc = 1
    ctx.out.flush()
    if outcome.fail_after:
        rc = int(outcome.rule["fail"])
    ctx.store.append(COMMANDS, {**record, "end": time.time(), "rc": rc})
    if outcome.fail_after:
        faults.emit_failure(outcome.rule)
    sys.exit(rc)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TOOLS:
        sys.stderr.write("usage: python3 -m hahooks.lab.sim {%s} [args...]\n" % "|".join(TOOLS))
        sys.exit(64)
    run(sys.argv[1], sys.argv[2:])
