"""One simulated cluster node: network + mount + UTS + PID namespaces around a PID-1 holder.

Why it is built this way (docs/reference/lab.md §1, §4, §5):
* `ip netns exec NS unshare -m -u -p -f --mount-proc holder`: the holder is PID 1 of the
  node, so killing it (or SIGKILLing every member) is pulling the power plug, and
  heartbeat's reboot(2) fallback only ends this namespace.
* Its file system view (private /run and /etc, hostid, stubs, binds: rootfs.py) is set up
  from outside with `nsenter` before anything runs in the node, and commands run with
  `nsenter -t <holder> -m -u -p [-n]`: without -n a daemon would land in the host's
  network namespace.
* nsenter forks for -p and does not pass signals on, so popen() returns a NodeProcess whose
  send_signal() targets the process inside the node, and run() kills the whole process
  group on a timeout.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

from hahooks import usage, waits
from hahooks.errors import WaitTimeout
from hahooks.lab.sandbox import nsproc, rootfs
from hahooks.lab.sandbox.nsproc import (NodeCommandError, NodeProcess, SandboxError, host,
                                     tool)

HOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "holder.py")
BOOT_TIMEOUT = 15.0


# zfs-fuse's own mounts: (re)starting it must leave other FUSE mounts alone (the
# simulator's devices, e.g. /dev/hast/*, are FUSE mounts too)
ZFS_FUSE = "fuse.zfs"


class Node:
    def __init__(self, lab, name: str, *, ip: str | None, net, hostid: int | None,
                 zfs: bool, stubs: bool, binds: dict | None, env: dict | None,
                 heartbeat: bool, run_dirs) -> None:
        self.lab, self.name, self.ip, self.net = lab, name, ip, net
        self.zfs, self.stubs, self.heartbeat = zfs, stubs, heartbeat
        self.binds = dict(binds or {})
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.run_dirs = list(run_dirs or ())
        self.dir = os.path.join(lab.workdir, "nodes", name)
        if hostid is None:        # a reboot keeps the hostid its /etc has (as a disk would)
            hostid = rootfs.saved_hostid(self.dir)
        if hostid is None and zfs:
            hostid = lab.default_hostid(name)
        if hostid is not None and not 0 < int(hostid) < 2 ** 32:
            raise SandboxError(f"node {name}: hostid {hostid!r} must be 1..0xffffffff")
        self.hostid = None if hostid is None else int(hostid)
        self.netns = f"{lab.prefix}-{name}" if net is not None else None
        self.stub_log = os.path.join(self.dir, "stub.log")
        self.holder_pid: int | None = None
        self._holder_start: int | None = None
        self._launcher: subprocess.Popen | None = None
        self._owner_w: int | None = None
        self._pidns_fd: int | None = None
        self._pidns: int | None = None
        self._netns_ino: int | None = None
        self._baseline: set[str] = set()
        self._zfs_proc: NodeProcess | None = None

    # -- boot --------------------------------------------------------------------------
    def boot(self) -> "Node":
        for sub in ("etc/upper", "etc/work", "var-lib-zfs", "log"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        rootfs.write_etc(self)
        if self.net is not None:
            self.lab._add_netns(self.netns)
            self._netns_ino = nsproc.ns_inode_of_path(f"/run/netns/{self.netns}")
            self.net.attach(self.name, self.netns, self.ip)
        self._launch()
        rootfs.setup(self)
        self._baseline = {m[0] for m in self.mounts()}
        return self

    def _launch(self) -> None:
        owner_r, self._owner_w = os.pipe()       # EOF on it: this process is gone
        ready_r, ready_w = os.pipe()             # a byte on it: init is ready for signals
        argv = [tool("ip"), "netns", "exec", self.netns] if self.netns else []
        argv += [tool("unshare"), "-m", "-u", "-p", "-f", "--mount-proc",
                 "--propagation", "private", sys.executable, "-I", "-S", HOLDER,
                 str(owner_r), str(ready_w)]
        log = open(os.path.join(self.dir, "log", "holder.log"), "ab")
        try:
            self._launcher = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT,
                                              pass_fds=(owner_r, ready_w),
                                              start_new_session=True)
        finally:
            for fd in (owner_r, ready_w):
                os.close(fd)
            log.close()

        def ready():
            if self._launcher.poll() is not None:
                raise SandboxError(f"node {self.name}: the namespace launcher exited "
                                   f"{self._launcher.returncode}: {self._log_tail('holder.log')}")
            return select.select([ready_r], [], [], 0.05)[0] and os.read(ready_r, 1)
        try:
            waits.wait_for(ready, BOOT_TIMEOUT, f"node {self.name} to start")
        finally:
            os.close(ready_r)
        for pid in nsproc.children(self._launcher.pid):
            chain = nsproc.ns_pid_chain(pid)
            if chain and chain[-1] == 1 and HOLDER.encode() in nsproc.cmdline(pid):
                self.holder_pid = pid
        if self.holder_pid is None:
            raise SandboxError(f"node {self.name}: its init is not a child of the launcher")
        self._holder_start = nsproc.start_time(self.holder_pid)
        self._pidns_fd = os.open(f"/proc/{self.holder_pid}/ns/pid", os.O_RDONLY)
        self._pidns = os.fstat(self._pidns_fd).st_ino

    # -- running things ----------------------------------------------------------------
    def _nsenter(self) -> list[str]:
        if not self.alive:
            raise SandboxError(f"node {self.name} is down")
        return [tool("nsenter"), "-t", str(self.holder_pid), "-m", "-u", "-p"] + \
            (["-n"] if self.netns else [])

    def enter(self, argv, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A set-up command in the node (rootfs.py): run(), the node's one way in, with the
        sandbox's own error (SandboxError) when it fails or times out."""
        try:
            proc = self.run(argv, check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SandboxError(f"node {self.name}: timed out after {timeout:g}s: "
                               f"{' '.join(map(str, argv))}") from None
        if check and proc.returncode != 0:
            raise SandboxError(f"node {self.name}: {' '.join(argv)}: exit {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout).strip()}")
        return proc

    def effective_env(self, env: dict | None) -> dict:
        if env is None:
            return {**os.environ, **self.env}
        return {**self.env, **{str(k): str(v) for k, v in env.items()}}

    def popen(self, argv, *, env: dict | None = None, cwd: str | None = None,
              **kw) -> NodeProcess:
        """Start argv inside the node (in its own session unless told otherwise)."""
        kw.setdefault("start_new_session", True)
        prefix = self._nsenter() + ([f"--wd={cwd}"] if cwd else [])
        return NodeProcess(prefix + ["--"] + [str(a) for a in argv],
                           env=self.effective_env(env), **kw)

    def run(self, argv, check: bool = True, timeout: float = 60, env: dict | None = None,
            input: str | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
        argv = [str(a) for a in argv]
        p = self.popen(argv, env=env, cwd=cwd, text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE,
                       stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL)
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            nsproc.kill_group(p)
            out, err = p.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, out, err) from None
        except BaseException:              # Ctrl-C: leave nothing running in the node
            nsproc.kill_group(p)
            p.wait()
            raise
        proc = subprocess.CompletedProcess(argv, p.returncode, out, err)
        if check and proc.returncode != 0:
            raise NodeCommandError(self.name, proc)
        return proc

    def enter_hint(self) -> str:
        return " ".join(self._nsenter() + ["--", "bash"]) if self.alive else "(down)"

    # -- processes ---------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.holder_pid is not None and \
            nsproc.same_process(self.holder_pid, self._holder_start)

    def _is_member(self, pid: int) -> bool:
        if self._launcher is not None and pid == self._launcher.pid:
            return False                     # see pids()
        if self._pidns is not None and nsproc.ns_inode(pid, "pid") == self._pidns:
            return True
        return self._netns_ino is not None and self.netns is not None and \
            os.path.exists(f"/run/netns/{self.netns}") and \
            nsproc.ns_inode(pid, "net") == self._netns_ino

    def pids(self) -> list[int]:
        """Global PIDs of every process in the node (its PID namespace, and anything that
        entered its network namespace). The launcher (`unshare`, waiting for the node's
        init in the host's PID namespace) is not one: it must outlive init to reap it, as
        this VM's PID 1 (process_api) reaps orphans late, if at all."""
        return sorted(p for p in nsproc.all_pids() if p != os.getpid() and self._is_member(p))

    def global_pid(self, ns_pid: int) -> int | None:
        """The global PID for a PID read from a pid file inside the node."""
        return nsproc.global_pid(ns_pid, self.pids())

    def pidfile_pid(self, path: str) -> int | None:
        """Global PID of the process named by a pid file inside the node (which holds a
        namespace PID), or None when the file is missing or its process is gone."""
        r = self.run(["cat", path], check=False, timeout=10)
        text = r.stdout.split()
        return self.global_pid(int(text[0])) if r.returncode == 0 and text and \
            text[0].isdigit() else None

    def pids_named(self, comm: str) -> list[int]:
        return [p for p in self.pids() if nsproc.comm(p) == comm]

    def mounts(self) -> list[tuple[str, str, str]]:
        """(mount id, mount point, fstype) of the node's mount namespace."""
        return rootfs.mounts(self.holder_pid) if self.alive else []

    def stale_fuse_mounts(self, fstype: str = "fuse") -> list[str]:
        """FUSE mounts made since boot (`fstype`: only those whose type starts with it)."""
        return [mp for mid, mp, fs in self.mounts()
                if fs.startswith(fstype) and mid not in self._baseline]

    def crash(self, keep_net: bool = False) -> None:
        """Pull the power plug: SIGKILL every process of the node at once. Its FUSE mounts
        are unmounted lazily and its mount namespace is gone when this returns; its
        network namespace (with any VIP left on it) is deleted unless keep_net.
        Under the lab's lock: a fence desk powers nodes off from its own thread, and a
        reboot (Lab.node) must not start while that power-off is still tearing down."""
        with self.lab._mutex:
            self._crash(keep_net)

    def _crash(self, keep_net: bool) -> None:
        mnt_fd = None
        fuse = self.stale_fuse_mounts() if self.alive else []
        disks = rootfs.block_devices(self.holder_pid, self._baseline) if self.alive else set()
        if fuse:
            mnt_fd = os.open(f"/proc/{self.holder_pid}/ns/mnt", os.O_RDONLY)
        try:
            nsproc.end_members(self.pids, self._is_member, grace=0)
            for mp in fuse:
                host([tool("nsenter"), f"--mount=/proc/{os.getpid()}/fd/{mnt_fd}", "--",
                      "umount", "-l", mp], check=False)
        finally:
            if mnt_fd is not None:
                os.close(mnt_fd)
        self._down(keep_net)
        self._wait_filesystems_gone(disks)

    def _wait_filesystems_gone(self, disks: set[int], timeout: float = 15) -> None:
        """A machine that lost power writes nothing more; here the node's last process is
        gone but the shared kernel unmounts its namespace's filesystems asynchronously (ext4
        flushes its journal first: over a second under I/O load, seen in CI), and until then
        the peer sees the filesystem still active with no mount anywhere. Wait for that to
        end, as the peer of a real machine never sees it (a failover figure timed from
        before the crash includes it only where it outlasts the peer's detection)."""
        if not disks:
            return

        def gone():
            return not usage.needs_names(usage.elsewhere(disks))   # none left detached
        try:
            waits.wait_for(gone, timeout, f"node {self.name}'s filesystems to be unmounted "
                           "by the kernel", ceiling=0.05)
        except WaitTimeout:
            pass        # something else holds it (a test's own holder): not the crash's to wait

    def shutdown(self, grace: float = 3.0, keep_net: bool = False) -> None:
        """Orderly power-off: TERM every process but init, KILL what is left after grace
        (under the lab's lock, as crash())."""
        with self.lab._mutex:
            disks = rootfs.block_devices(self.holder_pid, self._baseline) if self.alive \
                else set()
            nsproc.end_members(self.pids, self._is_member, grace=grace,
                               spare=[self.holder_pid] if self.holder_pid else [])
            self._down(keep_net)
            self._wait_filesystems_gone(disks)

    def _down(self, keep_net: bool) -> None:
        if self._launcher is not None:      # it reaps init, then exits by itself
            try:
                self._launcher.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._launcher.kill()
                self._launcher.wait()
        if self._zfs_proc is not None:
            self._zfs_proc.poll()
        for fd in (self._pidns_fd, self._owner_w):
            if fd is not None:
                os.close(fd)
        self._pidns_fd = self._owner_w = self._pidns = None
        if not keep_net and self.netns:
            if self.net is not None:
                self.net.detach(self.name)
            self.lab._del_netns(self.netns)
            self._netns_ino = None

    def release_owner(self) -> None:
        """Let the node outlive this process (Lab.release)."""
        if self.alive:
            os.kill(self.holder_pid, signal.SIGUSR1)

    # -- zfs-fuse ----------------------------------------------------------------------
    def start_zfs(self, timeout: float = 30) -> None:
        """zfs-fuse --no-daemon --no-kstat-mount in the node; returns once `zpool list` works."""
        if not self.zfs:
            raise SandboxError(f"node {self.name}: made without zfs=True")
        if self._zfs_proc is not None and self._zfs_proc.poll() is None:
            return
        self.unmount_stale_fuse(ZFS_FUSE)
        log = open(os.path.join(self.dir, "log", "zfs-fuse.log"), "ab")
        try:
            self._zfs_proc = self.popen([tool("zfs-fuse"), "--no-daemon", "--no-kstat-mount"],
                                        stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT)
        finally:
            log.close()

        def ready():
            if self._zfs_proc.poll() is not None:
                raise SandboxError(f"node {self.name}: zfs-fuse exited "
                                   f"{self._zfs_proc.returncode}: {self._log_tail('zfs-fuse.log')}")
            return self.run([tool("zpool"), "list"], check=False, timeout=10).returncode == 0
        waits.wait_for(ready, timeout, f"zfs-fuse on {self.name}", ceiling=0.1)

    def stop_zfs(self, graceful: bool = True, timeout: float = 30) -> None:
        """TERM (graceful) or KILL zfs-fuse, wait until it is gone, then lazily unmount the
        FUSE mounts it leaves stale (else they answer ENOTCONN and block a restart)."""
        pids = self.pids_named("zfs-fuse")
        sig = signal.SIGTERM if graceful else signal.SIGKILL
        nsproc.signal_members(pids, sig, self._is_member)

        def gone():
            return not [p for p in pids if not nsproc.zombie(p) and self._is_member(p)]
        try:
            waits.wait_for(gone, timeout, f"zfs-fuse on {self.name} to exit", ceiling=0.1)
        except WaitTimeout:
            nsproc.signal_members(pids, signal.SIGKILL, self._is_member)
            waits.wait_for(gone, 10, f"zfs-fuse on {self.name} to die", ceiling=0.1)
        if self._zfs_proc is not None:
            self._zfs_proc.wait(timeout=10)
            self._zfs_proc = None
        self.unmount_stale_fuse(ZFS_FUSE)

    def unmount_stale_fuse(self, fstype: str = "fuse") -> None:
        for mp in self.stale_fuse_mounts(fstype):
            self.enter(["umount", "-l", mp], check=False)

    def write_file(self, path: str, text: str, mode: int | None = None) -> None:
        """Write a file as the node sees it (e.g. under its private /etc or /run)."""
        self.run(["dd", f"of={path}", "status=none"], input=text, timeout=30)
        if mode is not None:
            self.run(["chmod", f"{mode:o}", path], timeout=30)

    def stub_calls(self) -> list[str]:
        try:
            with open(self.stub_log) as fh:
                return fh.read().splitlines()
        except OSError:
            return []

    def _log_tail(self, name: str) -> str:
        try:
            with open(os.path.join(self.dir, "log", name), errors="replace") as fh:
                lines = fh.read().strip().splitlines()
            return lines[-1] if lines else "(no output)"
        except OSError:
            return "(no log)"

    def __repr__(self) -> str:
        return f"<Node {self.name} holder={self.holder_pid} {'up' if self.alive else 'down'}>"
