"""Shared parts of the real-daemon pair tests (Heartbeat, keepalived, ucarp): the node
configs, the hold log on shared storage (tests/shared_storage.py) and its analysis, the
hook calls each daemon made (from the nodes' JSON logs), and the measured figures."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from hahooks import waits

TESTS = os.path.dirname(os.path.abspath(__file__))
SHARED_STORAGE = os.path.join(TESTS, "shared_storage.py")


def layer(name: str, op: str, shared: str, node: str, *extra: str,
          timeout: str | None = None) -> str:
    """A `command` layer driving shared_storage.py <op>-acquire|release|status."""
    def argv(action, *more):
        return json.dumps([sys.executable, SHARED_STORAGE, f"{op}-{action}", shared, node,
                           *more])
    return f"""
[[resource]]
name = "{name}"
kind = "command"
acquire = {argv("acquire", *extra)}
release = {argv("release", *extra[:1])}
status = {argv("status", *extra[:1])}
""" + (f'timeout = "{timeout}"\n' if timeout else "")


def node_config(path: str, node: str, workdir: str, shared: str, *, lease_wait: float = 10,
                wiring: str = "", lease: bool = True,
                filesystem: tuple[str, str] | None = None) -> str:
    """Write the node's hahooks.toml: [lease on shared storage ->] [ext4 (device,
    mountpoint) ->] data. State and log live in the node's own dir (they survive a node
    crash, as /var/lib does)."""
    os.makedirs(workdir, exist_ok=True)
    body = f"""[node]
name = "{node}"
state_dir = "{workdir}/state"
log_file = "{workdir}/hahooks.jsonl"
syslog = false
{wiring}
"""
    if lease:
        body += layer("lease", "lease", shared, node, f"{workdir}/lease.pid", f"{lease_wait:g}",
                      timeout=f"{lease_wait + 10:g}s")
    if filesystem:
        body += f"""
[[resource]]
name = "fs"
kind = "filesystem"
device = "{filesystem[0]}"
mountpoint = "{filesystem[1]}"
fstype = "ext4"
"""
    body += layer("data", "data", shared, node)
    with open(path, "w") as fh:
        fh.write(body)
    os.chmod(path, 0o600)
    return path


# ---------------------------------------------------------------- the hold log --
@dataclasses.dataclass
class Event:
    t: float
    node: str
    what: str
    detail: str = ""


def note(shared: str, node: str, what: str, detail: str = "") -> float:
    """A line from the test itself (crash, restart...), in the same log and format."""
    t = time.time()
    with open(os.path.join(shared, "holds.log"), "a") as fh:
        fh.write(f"{t:.6f} {node} {what}{' ' + detail if detail else ''}\n")
    return t


def events(shared: str) -> list[Event]:
    try:
        with open(os.path.join(shared, "holds.log")) as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        t, node, what, *detail = line.split(" ", 3)
        out.append(Event(float(t), node, what, " ".join(detail)))
    return sorted(out, key=lambda e: e.t)


def wait_event(shared: str, node: str, what: str, after: float, timeout: float) -> Event:
    def found():
        return next((e for e in events(shared)
                     if e.node == node and e.what == what and e.t >= after), None)
    return waits.wait_for(found, timeout, f"{node} {what} in {shared}/holds.log")


def intervals(evs: list[Event], resource: str = "data") -> dict[str, list[tuple[float, float]]]:
    """Per node, the [start, end) intervals it held `resource`; a node's `crash` ends what it
    held (its processes, and with them its lease, are gone)."""
    out: dict[str, list[tuple[float, float]]] = {}
    open_at: dict[str, float] = {}
    for e in evs:
        if e.what == f"{resource}-start":
            assert e.node not in open_at, f"{e.node} started {resource} twice: {evs}"
            open_at[e.node] = e.t
        elif e.what in (f"{resource}-end", "crash") and e.node in open_at:
            out.setdefault(e.node, []).append((open_at.pop(e.node), e.t))
    for node, start in open_at.items():
        out.setdefault(node, []).append((start, float("inf")))
    return out


def overlaps(evs: list[Event], resource: str = "data") -> list[str]:
    """Moments when two nodes held `resource` at once (empty when exclusive)."""
    spans = [(s, e, node) for node, lst in intervals(evs, resource).items() for s, e in lst]
    bad = []
    for i, (s1, e1, n1) in enumerate(spans):
        for s2, e2, n2 in spans[i + 1:]:
            if n1 != n2 and s1 < e2 and s2 < e1:
                bad.append(f"{n1} [{s1:.3f}, {e1:.3f}) overlaps {n2} [{s2:.3f}, {e2:.3f})")
    return bad


def holder(shared: str) -> str:
    try:
        with open(os.path.join(shared, "data.owner")) as fh:
            return fh.read().strip()
    except FileNotFoundError:
        return ""


# ------------------------------------------------------------ what the hooks saw --
def hook_calls(workdir: str) -> list[dict]:
    """The `hook` records of a node's JSON log: caller, exact argv, decision."""
    path = os.path.join(workdir, "hahooks.jsonl")
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "hook":
                out.append(rec)
    return out


def steps(workdir: str, after: float, before: float = float("inf")) -> str:
    """The node's transition steps after `after`, as `acquire fs 0.123s` (for the figures:
    where a transition spent its time)."""
    out = []
    with open(os.path.join(workdir, "hahooks.jsonl")) as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("event") == "step" and after < record_time(rec) < before:
                out.append(f"{rec['step']} {rec.get('resource')} {rec.get('duration', 0):.3f}s")
    return ", ".join(out)


class Figures:
    """Measured durations, printed at the end of a test (tests never assert on them)."""

    def __init__(self, title: str):
        self.title = title
        self.rows: list[tuple[str, str | None]] = []

    def add(self, what: str, seconds: float) -> None:
        self.rows.append((what, f"{seconds:.2f} s"))

    def note(self, text: str) -> None:
        self.rows.append((text, None))

    def report(self, extra: list[str] = ()) -> str:
        lines = [f"== {self.title}"] + \
            [f"   {w}: {v}" if v is not None else f"   {w}" for w, v in self.rows] + \
            [f"   {x}" for x in extra]
        text = "\n".join(lines)
        print(text)
        out = os.environ.get("HAHOOKS_FIGURES")
        if out:
            with open(out, "a") as fh:
                fh.write(text + "\n")
        return text


def record_time(rec: dict) -> float:
    """Epoch seconds of a JSON log record ("time" is ISO 8601 with a UTC offset)."""
    from datetime import datetime

    return datetime.fromisoformat(rec["time"]).timestamp()
