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


# ------------------------------------------------------------------ the nodes --
LAB_ROOT = os.environ.get("HAHOOKS_LAB_DIR", "/var/tmp/hahooks-lab")

NODE_INIT = """#!/bin/bash
# PID 1 of one node's private mount/UTS/PID namespace (inside its network namespace).
hostname "$1"
mount -t tmpfs -o mode=755 tmpfs /run
shift
while [ $# -ge 2 ]; do mount --bind "$1" "$2" || exit 1; shift 2; done
touch /run/node-ready
trap 'exit 0' TERM
while :; do sleep 1; done
"""

STUB = """#!/bin/sh
# bind-mounted over systemctl (= /sbin/reboot) and pgrep (= pkill) inside heartbeat nodes
echo "$(date +%s.%N) $(hostname) $0 $*" >> {log}
exit 1
"""


def sh(*argv, check=True, **kw):
    import subprocess

    return subprocess.run([str(a) for a in argv], check=check, capture_output=True, text=True,
                          **kw)


class PairLab:
    """Two nodes on a bridge, each a network namespace plus (inside it) its own mount, UTS
    and PID namespace whose init is NODE_INIT; an optional ext4 image on a loop device
    that both nodes see (shared storage); a `hahooks` command for this checkout that the
    nodes find as /usr/local/sbin/hahooks. Everything is removed on exit, even on failure."""

    def __init__(self, prefix: str, subnet: str, *, shared_fs: bool = False):
        import ipaddress
        import uuid

        self.prefix = prefix
        self.net = ipaddress.ip_network(subnet)
        self.root = os.path.join(LAB_ROOT, f"{prefix}-{uuid.uuid4().hex[:6]}")
        self.shared = os.path.join(self.root, "shared")
        self.bindir = os.path.join(self.root, "bin")
        self.mountpoint = os.path.join(self.root, "mnt") if shared_fs else None
        self.loop: str | None = None
        self.nodes: dict[str, dict] = {}
        self.daemons: list = []

    # -- set-up ------------------------------------------------------------
    def __enter__(self) -> "PairLab":
        from conftest import install_hahooks_command

        os.makedirs(self.shared, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.hahooks = install_hahooks_command(self.bindir)
        with open(os.path.join(self.root, "node-init"), "w") as fh:
            fh.write(NODE_INIT)
        os.chmod(os.path.join(self.root, "node-init"), 0o755)
        with open(os.path.join(self.root, "stub"), "w") as fh:
            fh.write(STUB.format(log=os.path.join(self.root, "stub.log")))
        os.chmod(os.path.join(self.root, "stub"), 0o755)
        try:
            self._switch()
            if self.mountpoint:
                image = os.path.join(self.root, "shared.img")
                with open(image, "wb") as fh:
                    fh.truncate(64 << 20)
                sh("mkfs.ext4", "-q", "-F", image)
                self.loop = sh("losetup", "-f", "--show", image).stdout.strip()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close(keep=exc[0] is not None or bool(os.environ.get("HAHOOKS_LAB_KEEP")))

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def _switch(self) -> None:
        sw = self.ns("sw")
        sh("ip", "netns", "add", sw)
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "type", "bridge", "stp_state", "0",
           "forward_delay", "0", "mcast_snooping", "0")
        sh("ip", "-n", sw, "link", "set", "br0", "up")

    def add_node(self, name: str, ip: str, *, wiring: str = "", lease: bool = True,
                 binds: dict[str, str] | None = None, heartbeat: bool = False,
                 config_path: str | None = None) -> None:
        """A node on the bridge at `ip` (with `brd +`: Heartbeat's bcast needs it), its
        hahooks config (`config_path`, default <workdir>/hahooks.toml) and its init."""
        ns, i = self.ns(name), len(self.nodes)
        work = self.workdir(name)
        os.makedirs(work, exist_ok=True)
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"{self.prefix}t{i}", "type", "veth", "peer", "name",
           f"{self.prefix}p{i}")
        sh("ip", "link", "set", f"{self.prefix}t{i}", "netns", ns)
        sh("ip", "link", "set", f"{self.prefix}p{i}", "netns", self.ns("sw"))
        sh("ip", "-n", ns, "link", "set", f"{self.prefix}t{i}", "name", "eth0")
        sh("ip", "-n", self.ns("sw"), "link", "set", f"{self.prefix}p{i}", "master", "br0",
           "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/{self.net.prefixlen}", "brd", "+", "dev",
           "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        config = config_path or os.path.join(work, "hahooks.toml")
        node_config(config, name, work, self.shared, wiring=wiring, lease=lease,
                    filesystem=(self.loop, self.mountpoint) if self.loop else None)
        mounts = dict(binds or {})
        mounts["/usr/local/sbin"] = self.bindir
        if heartbeat:   # SAFETY: Heartbeat's failed-stop path must not reach the machine
            mounts["/usr/bin/systemctl"] = os.path.join(self.root, "stub")
            mounts["/usr/bin/pgrep"] = os.path.join(self.root, "stub")
        self.nodes[name] = {"config": config, "binds": mounts}
        self._boot(name)

    def _boot(self, name: str) -> None:
        import subprocess

        pairs = [x for target, src in self.nodes[name]["binds"].items() for x in (src, target)]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(name), "unshare", "-m", "-u", "-p", "-f",
             "--mount-proc", os.path.join(self.root, "node-init"), name, *pairs],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.daemons.append(proc)
        waits.wait_for(lambda: self.init_pid(name), 10, f"node {name} to boot")
        waits.wait_for(lambda: self.run(name, ["test", "-e", "/run/node-ready"],
                                        check=False).returncode == 0, 10,
                       f"node {name} init")

    # -- inside a node ---------------------------------------------------------
    def workdir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def env(self, name: str) -> dict[str, str]:
        return {"PATH": "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HAHOOKS_CONFIG": self.nodes[name]["config"], "LANG": "C.UTF-8",
                "HOME": "/root"}

    def pids(self, name: str) -> list[int]:
        out = sh("ip", "netns", "pids", self.ns(name), check=False).stdout
        return [int(p) for p in out.split()]

    def node_pids_matching(self, name: str, fragment: str) -> list[int]:
        found = []
        for pid in self.pids(name):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if fragment in cmdline:
                found.append(pid)
        return found

    def init_pid(self, name: str) -> int | None:
        for pid in self.node_pids_matching(name, "node-init"):
            try:
                with open(f"/proc/{pid}/status") as fh:
                    nspid = next(line for line in fh if line.startswith("NSpid:")).split()
            except (OSError, StopIteration):
                continue
            if nspid[-1] == "1":
                return pid
        return None

    def _enter(self, name: str, argv: list[str]) -> list[str]:
        init = self.init_pid(name)
        assert init, f"node {name} is not running"
        return ["nsenter", "-t", str(init), "-m", "-u", "-n", "-p", "--", *argv]

    def run(self, name: str, argv: list[str], check: bool = False):
        return sh(*self._enter(name, argv), check=check, env=self.env(name), timeout=60)

    def node(self, name: str) -> "_NodeView":
        return _NodeView(self, name)

    def start_daemon(self, name: str, argv: list[str], log: str):
        """Start a daemon inside the node (its output in <workdir>/<log>.log)."""
        import subprocess

        out = open(os.path.join(self.workdir(name), f"{log}.log"), "ab")
        proc = subprocess.Popen(self._enter(name, argv), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=self.env(name),
                                start_new_session=True, cwd="/")
        out.close()
        self.daemons.append(proc)
        return proc

    def signal_pidfile(self, name: str, pidfile: str, sig: int) -> None:
        """Signal the process whose pid (in the node's PID namespace) is in the node's
        `pidfile`."""
        pid = self.run(name, ["cat", pidfile], check=True).stdout.strip()
        self.run(name, ["kill", f"-{int(sig)}", pid], check=True)

    # -- node life ---------------------------------------------------------------
    def crash(self, name: str) -> None:
        """Pull the plug: SIGKILL every process of the node at once (its mounts and locks
        go with its namespaces)."""
        import signal

        def gone():
            for pid in self.pids(name):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return not self.pids(name)
        waits.wait_for(gone, 20, f"every process of {name} to die")

    def restart_node(self, name: str) -> None:
        """Boot the node again after a crash (same network namespace, fresh /run)."""
        assert not self.pids(name), f"{name} still has processes"
        self._boot(name)

    # -- observations ---------------------------------------------------------------
    def holder(self) -> str:
        return holder(self.shared)

    def mounted(self, name: str) -> bool:
        return self.run(name, ["findmnt", "-n", "--mountpoint", self.mountpoint]).returncode == 0

    def vips(self, vip: str) -> set[str]:
        out = set()
        for name in self.nodes:
            text = sh("ip", "-n", self.ns(name), "-o", "-4", "addr", "show", "dev", "eth0",
                      check=False).stdout
            if f"inet {vip}/" in text:
                out.add(name)
        return out

    def first_call(self, name: str, caller: str, after: float, last_word: str = "",
                   state: str = "") -> float:
        """Time of the node's first hook call by `caller` after `after` (whose argv ends
        with `last_word` / contains `state`, if given)."""
        for rec in hook_calls(self.workdir(name)):
            if rec["caller"] == caller and record_time(rec) > after and \
                    (not last_word or rec["argv"][-1:] == [last_word]) and \
                    (not state or state in rec["argv"]):
                return record_time(rec)
        raise AssertionError(f"no {caller} call on {name} after {after}")

    def wait_converged(self, names: list[str], role: str, timeout: float = 60) -> None:
        from hahooks.state import StateDir

        for name in names:
            state = StateDir(os.path.join(self.workdir(name), "state"))

            def done(state=state):
                desire, result = state.desire(), state.done()
                return desire and result and desire.role == role and \
                    result.get("seq", 0) >= desire.seq and result.get("role") == role
            waits.wait_for(done, timeout, f"{name} to converge to {role}")
            result = state.done()
            assert result["exit_code"] == 0, result

    def clear_stub_calls(self) -> None:
        open(os.path.join(self.root, "stub.log"), "w").close()

    def stub_calls(self) -> list[str]:
        try:
            with open(os.path.join(self.root, "stub.log")) as fh:
                return fh.read().splitlines()
        except FileNotFoundError:
            return []

    # -- tear-down --------------------------------------------------------------------
    def close(self, keep: bool = False) -> None:
        import shutil

        for name in list(self.nodes):
            try:
                self.crash(name)
            except Exception:
                pass
        for proc in self.daemons:
            try:
                proc.wait(timeout=5)
            except Exception:
                pass
        for name in [*self.nodes, "sw"]:
            sh("ip", "netns", "del", self.ns(name), check=False)
        if self.loop:
            waits.retry(lambda: sh("losetup", "-d", self.loop), 10, f"detach {self.loop}",
                        retry_on=(Exception,))
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)


class _NodeView:
    def __init__(self, lab: PairLab, name: str):
        self.lab, self.name = lab, name

    def run(self, argv, check=False):
        return self.lab.run(self.name, argv, check=check)
