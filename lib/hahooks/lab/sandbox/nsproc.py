"""Processes and commands for the sandbox: who belongs to a node, and ending them safely.

Why it is built this way:
* Membership is decided by namespace identity (the inode of /proc/PID/ns/pid or ns/net),
  never by a process name: other helpers run the same daemons on this machine at the same
  time, and a name match would kill theirs.
* A namespace inode number is reused as soon as the namespace is freed (the kernel hands
  out the lowest free number), so callers keep the namespace pinned (an open fd on
  /proc/PID/ns/pid, or /run/netns/NAME for a network namespace) while they match on it.
* Signals go through a pidfd opened *before* the membership is checked again, so a PID
  that exits and is reused between the listing and the kill can never hit a stranger.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import Callable, Iterable

from hahooks import waits
from hahooks.errors import HahooksError, WaitTimeout


class SandboxError(HahooksError):
    """The sandbox could not build, drive or tear down a simulated node."""


def host(argv: list[str], *, timeout: float = 30, check: bool = True,
         input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a host-side command (ip, losetup, mkfs, nsenter...) with a bound and a clear error."""
    try:
        proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                              timeout=timeout, input=input, env=env,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SandboxError(f"timed out after {timeout:g}s: {' '.join(map(str, argv))}") from None
    except FileNotFoundError:
        raise SandboxError(f"command not found: {argv[0]}") from None
    if check and proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        raise SandboxError(f"{' '.join(map(str, argv))}: exit {proc.returncode}"
                           + (f": {why[-1]}" if why else ""))
    return proc


def ns_inode(pid: int, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def ns_inode_of_path(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name (index 0 = state, 1 = ppid, 19 = start)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def start_time(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def same_process(pid: int, started: int | None) -> bool:
    """PID still names the process that had start time `started` (and is not a zombie)."""
    fields = stat_fields(pid)
    return bool(fields) and fields[0] != "Z" and int(fields[19]) == started


def children(ppid: int) -> list[int]:
    out = []
    for pid in all_pids():
        fields = stat_fields(pid)
        if fields and int(fields[1]) == ppid:
            out.append(pid)
    return out


def ns_pid_chain(pid: int) -> list[int]:
    """NSpid of a process: [global pid, ..., pid in its innermost namespace]."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except OSError:
        pass
    return []


def global_pid(ns_pid: int, member_pids: Iterable[int]) -> int | None:
    """The global PID of the process whose innermost (namespace) PID is ns_pid, among
    member_pids (pid files inside a node hold namespace PIDs)."""
    for pid in member_pids:
        chain = ns_pid_chain(pid)
        if chain and chain[-1] == ns_pid:
            return pid
    return None


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def signal_members(pids: Iterable[int], sig: int, is_member: Callable[[int], bool]) -> int:
    """Send sig to each pid that still is a member once a pidfd pins it. Returns how many."""
    sent = 0
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            fd = os.pidfd_open(pid)
        except OSError:          # gone already
            continue
        try:
            if is_member(pid):
                signal.pidfd_send_signal(fd, sig)
                sent += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return sent


def end_members(list_members: Callable[[], list[int]], is_member: Callable[[int], bool], *,
                grace: float, spare: Iterable[int] = (), timeout: float = 15) -> None:
    """TERM every member except `spare` (the node's init), wait up to `grace` for them to
    go, then KILL everything left (init included) and wait until no member remains."""
    spared = set(spare)
    first = [p for p in list_members() if p not in spared]
    if first and grace > 0:
        signal_members(first, signal.SIGTERM, is_member)
        try:
            waits.wait_for(lambda: not [p for p in list_members() if p not in spared
                                        and not zombie(p)], grace, "node processes to stop")
        except WaitTimeout:
            pass
    def none_left():
        left = [p for p in list_members() if not zombie(p)]
        if left:
            signal_members(left, signal.SIGKILL, is_member)
        return not left
    try:
        waits.wait_for(none_left, timeout, "node processes to be killed", ceiling=0.1)
    except WaitTimeout:
        left = list_members()
        raise SandboxError("processes survived SIGKILL: " + ", ".join(
            f"{p} ({comm(p)}, state {(stat_fields(p) or ['?'])[0]})" for p in left)) from None


def zombie(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def tool(name: str) -> str:
    found = shutil.which(name, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                      "/sbin:/bin")
    if not found:
        raise SandboxError(f"{name} is not installed (needed by the sandbox)")
    return found


class NodeCommandError(subprocess.CalledProcessError):
    def __init__(self, node: str, proc: subprocess.CompletedProcess):
        super().__init__(proc.returncode, proc.args, proc.stdout, proc.stderr)
        self.node = node

    def __str__(self) -> str:
        tail = ((self.stderr or self.stdout or "").strip().splitlines() or [""])[-1]
        return (f"{self.node}: {' '.join(map(str, self.cmd))}: exit {self.returncode}"
                + (f": {tail}" if tail else ""))


class NodeProcess(subprocess.Popen):
    """Popen of `nsenter ... -- argv`: signals go to the process inside the node."""
    _inner: int | None = None

    @property
    def inner_pid(self) -> int | None:
        """Global PID of the command inside the node (nsenter's child), None if it ended."""
        if self._inner is None:
            def child():
                if self.poll() is not None:
                    return -1
                kids = children(self.pid)
                return kids[0] if kids else None
            found = waits.wait_for(child, 5.0, "nsenter to start the command")
            self._inner = None if found == -1 else found
        return self._inner

    def send_signal(self, sig: int) -> None:
        self.poll()
        if self.returncode is not None:
            return
        inner = self.inner_pid
        if inner is None:
            return
        # nsenter has not been reaped (we are its parent), so its child is still ours
        signal_members([inner], sig, lambda p: children(self.pid) == [p])


def kill_group(p: subprocess.Popen) -> None:
    """nsenter and the command inside share nsenter's process group (a new session);
    nsenter is not reaped yet, so the group id cannot have been reused."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""
