"""A stack of `command` layers driven by one small shell script that leaves a trace.

Every mutating command writes `enter` and `exit` lines (time in ns, its own PID, the PID of
the hahooks process that ran it, the action, the layer) to layers.log, so a test sees the
order of acquires and releases, proves that no two of them overlapped, and finds the
process to SIGKILL. Behaviour per layer is switched by marker files in the work dir:

  <name>.fail-acquire   acquire exits 3 (after touching the held mark if .half exists too)
  <name>.fail-release   release exits 4 without releasing (a layer that refuses)
  <name>.stuck          release exits 0 but leaves the layer held
  <name>.block          acquire waits for <name>.gate (the marker is consumed: only the
                        first acquire after it is created blocks)
  <name>.broken         status exits 2 (neither held nor released)
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

from conftest import hahooks_env

LAYER_SCRIPT = r"""#!/bin/sh
# layer ACTION NAME WORKDIR
action=$1 name=$2 dir=$3
log="$dir/layers.log"
trace() { echo "$1 $(date +%s%N) $$ $PPID $action $name" >> "$log"; }
case $action in
status)
    [ -e "$dir/$name.broken" ] && { echo "$name is in pieces" >&2; exit 2; }
    [ -e "$dir/$name.held" ] && exit 0
    exit 1 ;;
acquire)
    trace enter
    if [ -e "$dir/$name.block" ]; then
        rm -f "$dir/$name.block"
        while [ ! -e "$dir/$name.gate" ]; do sleep 0.01; done
    fi
    [ -e "$dir/$name.half" ] && touch "$dir/$name.held"
    if [ -e "$dir/$name.fail-acquire" ]; then
        echo "cannot acquire $name" >&2; trace exit; exit 3
    fi
    [ -n "$LAYER_SLEEP" ] && sleep "$LAYER_SLEEP"
    touch "$dir/$name.held"
    trace exit ;;
release)
    trace enter
    if [ -e "$dir/$name.fail-release" ]; then
        echo "$name is busy: refusing" >&2; trace exit; exit 4
    fi
    [ -n "$LAYER_SLEEP" ] && sleep "$LAYER_SLEEP"
    [ -e "$dir/$name.stuck" ] || rm -f "$dir/$name.held"
    trace exit ;;
demote)
    echo "demote $(date +%s%N) $$ $PPID demote -" >> "$log" ;;
esac
"""


def missing_probe_layer(name: str) -> str:
    """A `command` layer whose status tool is installed nowhere (exit 5 when probed)."""
    return textwrap.dedent(f"""
        [[resource]]
        name = "{name}"
        kind = "command"
        acquire = ["true"]
        release = ["true"]
        status = ["hh-no-such-probe-tool"]
        """)


class Stack:
    """A work dir with the layer script, a config of `names` layers, and readers."""

    def __init__(self, tmp_path, write_config, names=("a", "b", "c"), *, node_extra: str = "",
                 demote: bool = True, extra_body: str = ""):
        self.dir = str(tmp_path)
        self.names = list(names)
        self.script = os.path.join(self.dir, "layer")
        with open(self.script, "w") as fh:
            fh.write(LAYER_SCRIPT)
        os.chmod(self.script, 0o755)
        body = "".join(self.layer_toml(n) for n in self.names) + extra_body
        if demote:
            node_extra += f'demote = ["{self.script}", "demote", "-", "{self.dir}"]\n'
        self.config = write_config(body, node_extra)
        self.state_dir = os.path.join(self.dir, "state")
        self.json_log = os.path.join(self.dir, "hahooks.jsonl")

    def layer_toml(self, name: str) -> str:
        return textwrap.dedent(f"""
            [[resource]]
            name = "{name}"
            kind = "command"
            acquire = ["{self.script}", "acquire", "{name}", "{self.dir}"]
            release = ["{self.script}", "release", "{name}", "{self.dir}"]
            status = ["{self.script}", "status", "{name}", "{self.dir}"]
            """)

    # -- switches ------------------------------------------------------------
    def mark(self, name: str, what: str, present: bool = True) -> None:
        path = os.path.join(self.dir, f"{name}.{what}")
        if present:
            open(path, "w").close()
        elif os.path.exists(path):
            os.unlink(path)

    def is_held(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.dir, f"{name}.held"))

    def held(self) -> list[str]:
        return [n for n in self.names if self.is_held(n)]

    # -- running -------------------------------------------------------------
    def hahooks(self, *args, env=None, timeout=120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hahooks", *args, "-c", self.config],
                              capture_output=True, text=True, env=env or hahooks_env(),
                              timeout=timeout)

    def popen(self, *args, env=None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "hahooks", *args, "-c", self.config],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env or hahooks_env())

    # -- reading the traces --------------------------------------------------
    def trace(self) -> list[dict]:
        """layers.log as records: event, ns, pid, ppid, action, name."""
        path = os.path.join(self.dir, "layers.log")
        if not os.path.exists(path):
            return []
        out = []
        with open(path) as fh:
            for line in fh:
                event, ns, pid, ppid, action, name = line.split()
                out.append({"event": event, "ns": int(ns), "pid": int(pid), "ppid": int(ppid),
                            "action": action, "name": name})
        return out

    def steps(self) -> list[str]:
        """'acquire a', 'release b', 'demote -' ... in the order they started."""
        return [f"{r['action']} {r['name']}" for r in self.trace()
                if r["event"] in ("enter", "demote")]

    def json_records(self, **match) -> list[dict]:
        from hahooks import logs

        if not os.path.exists(self.json_log):
            return []
        return [r for r in logs.records(self.json_log)
                if all(r.get(k) == v for k, v in match.items())]

    def mutating_commands(self) -> list[dict]:
        """Runner records of commands that change state and really ran."""
        return [r for r in self.json_records(event="command")
                if r.get("readonly") is False and not r.get("dry_run")]


def converged(stack: Stack, timeout: float = 120) -> dict:
    """Wait until the newest desire is done and nobody holds the lock; return done.json."""
    from hahooks import waits
    from hahooks.state import StateDir, TransitionLock

    state = StateDir(stack.state_dir)

    def check():
        if state.pending() is None and not TransitionLock(state).held_elsewhere():
            return state.done()
        return None

    return waits.wait_for(check, timeout, "the stack to converge")


def assert_no_overlap(trace: list[dict]) -> None:
    """Mutating commands ran one at a time: every enter is followed by the exit of the same
    process before the next enter."""
    inside = None
    for rec in trace:
        if rec["event"] == "enter":
            assert inside is None, f"{rec} started while {inside} was still running"
            inside = rec
        elif rec["event"] == "exit":
            assert inside is not None and inside["pid"] == rec["pid"], \
                f"exit {rec} does not close {inside}"
            inside = None


def make_private(path: str) -> None:
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
