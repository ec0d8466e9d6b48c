"""Lab: the cleanup registry behind every sandbox (nodes, networks, vdevs, loop devices).

Why it is built this way:
* Tests and the drill run as root on a shared machine, beside other helpers' labs. Every
  name a Lab makes starts with "<prefix>-" (netns) or lives under its workdir (files,
  loop images), prefixes and names are short safe identifiers (interface names are
  limited to 15 characters), and a prefix is locked (flock) for the Lab's lifetime, so
  two live labs can never share one, and remnants of a dead lab with the same prefix
  can be removed safely when a new one starts.
* Teardown must happen whatever happens: the with-block, atexit, SIGTERM (turned into
  SystemExit so finally-blocks run) and SIGINT (KeyboardInterrupt) all end in cleanup(),
  which is idempotent, keeps going past errors, and reports them all at the end. If this
  process is SIGKILLed, the nodes power themselves off (see holder.py), and the next Lab
  with the same prefix removes the rest.
* Processes are ended by PID (by namespace membership), never by name.
"""
from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import signal
import sys
import threading
import zlib

from hahooks.lab.sandbox import hoststate
from hahooks.lab.sandbox.net import Network
from hahooks.lab.sandbox.node import Node
from hahooks.lab.sandbox.nsproc import SandboxError, host, tool

log = logging.getLogger("hahooks.lab.sandbox")

PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,11}$")
FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
WORKDIR_RE = re.compile(r"^/[A-Za-z0-9_./-]+$")
MARKER = ".hahooks-lab"
LIB = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_live: set = set()
_handlers_installed = False


def _check(regex, value, what: str) -> str:
    if not isinstance(value, str) or not regex.match(value):
        raise SandboxError(f"bad {what} {value!r}: must match {regex.pattern}")
    return value


class Lab:
    def __init__(self, prefix: str, workdir: str | None = None, keep: bool = False,
                 grace: float = 3.0):
        self.prefix = _check(PREFIX_RE, prefix, "lab prefix")
        workdir = os.path.normpath(workdir or f"/var/tmp/hahooks-lab/{prefix}")
        if not WORKDIR_RE.match(workdir) or workdir.count("/") < 2 or ".." in workdir:
            raise SandboxError(f"bad lab workdir {workdir!r}: an absolute path at least two "
                               "levels deep, made of [A-Za-z0-9_./-]")
        self.workdir = workdir
        self.keep = keep                  # keep the workdir's files after cleanup
        self.grace = grace
        self.nodes: dict[str, Node] = {}
        self.networks: dict[str, Network] = {}
        self._netns: list[str] = []
        self._loops: list[tuple[str, str]] = []
        self._lock_fd: int | None = None
        self._started = False
        self._closed = False
        self._released = False
        self._mutex = threading.RLock()

    # -- life cycle --------------------------------------------------------------------
    def __enter__(self) -> "Lab":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.cleanup()
        except SandboxError as err:
            if exc_type is None:
                raise
            log.error("sandbox cleanup after %s: %s", exc_type.__name__, err)

    def start(self) -> "Lab":
        if self._started:
            return self
        if os.geteuid() != 0:
            raise SandboxError("the sandbox needs root (namespaces, mounts, loop devices)")
        for name in ("ip", "unshare", "nsenter", "mount", "losetup"):
            tool(name)
        self._lock_fd = hoststate.lock_prefix(self.prefix)
        self._started = True
        _live.add(self)
        _install_handlers()
        hoststate.purge(self.prefix, self.workdir, self.grace)
        self._prepare_workdir()
        self._save()
        return self

    def _prepare_workdir(self) -> None:
        if os.path.isdir(self.workdir) and os.listdir(self.workdir):
            if not os.path.exists(os.path.join(self.workdir, MARKER)):
                raise SandboxError(f"lab workdir {self.workdir} exists and is not a sandbox "
                                   f"dir (no {MARKER}): refusing to use it")
            shutil.rmtree(self.workdir)
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        with open(os.path.join(self.workdir, MARKER), "w") as fh:
            fh.write(f"prefix {self.prefix} pid {os.getpid()}\n")

    def _save(self) -> None:
        """Keep <workdir>/lab.json current (for `python3 -m hahooks.lab.sandbox cleanup`)."""
        try:
            hoststate.write_manifest(self)
        except OSError as err:
            log.warning("sandbox manifest: %s", err)

    def _ensure(self) -> None:
        if self._closed:
            raise SandboxError(f"lab {self.prefix} is already cleaned up")
        self.start()

    # -- networks and nodes ------------------------------------------------------------
    def network(self, cidr: str, name: str = "sw") -> Network:
        """A bridge br0 in netns "<prefix>-<name>" for addresses inside `cidr`."""
        with self._mutex:
            self._ensure()
            _check(NAME_RE, name, "network name")
            if name in self.networks or name in self.nodes:
                raise SandboxError(f"lab {self.prefix}: name {name!r} is already used")
            net = Network(self, name, cidr)
            self.networks[name] = net
            return net.create()

    def node(self, name: str, ip: str | None = None, net: Network | None = None, *,
             hostid: int | None = None, zfs: bool = False, stubs: bool = False,
             binds: dict | None = None, env: dict | None = None, heartbeat: bool = False,
             run_dirs=()) -> Node:
        """Boot a node (see node.py). Booting a name again after crash() is a reboot."""
        with self._mutex:
            self._ensure()
            _check(NAME_RE, name, "node name")
            if name in self.networks:
                raise SandboxError(f"lab {self.prefix}: name {name!r} is a network")
            old = self.nodes.get(name)
            if old is not None:
                if old.alive:
                    raise SandboxError(f"lab {self.prefix}: node {name} is already running")
                old.crash()                       # make sure nothing of it is left
            if net is not None and ip is None:
                raise SandboxError(f"node {name}: a node on a network needs ip=")
            if net is None and ip is not None:
                raise SandboxError(f"node {name}: ip= without net=")
            node = Node(self, name, ip=ip, net=net, hostid=hostid, zfs=zfs, stubs=stubs,
                        binds=binds, env=env, heartbeat=heartbeat, run_dirs=run_dirs)
            self.nodes[name] = node
            try:
                node.boot()
                self._save()
                return node
            except BaseException:
                try:
                    node.crash()
                except Exception as err:          # keep the boot error, not this one
                    log.error("tearing down half-booted node %s: %s", name, err)
                raise

    def default_hostid(self, name: str) -> int:
        """A stable, per-node, non-zero hostid (zfs-fuse refuses foreign pools by it)."""
        return (zlib.crc32(f"{self.prefix}-{name}".encode()) & 0xFFFFFFFF) or 1

    def node_env(self, node: Node | str, **extra) -> dict:
        """Environment for running hahooks inside a node: this checkout importable with
        sys.executable, a plain PATH, and the node's own variables."""
        node = self.nodes[node] if isinstance(node, str) else node
        env = {"PATH": NODE_PATH, "HOME": "/root", "LANG": "C.UTF-8", "PYTHONPATH": LIB}
        env.update(node.env)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    @staticmethod
    def hahooks_argv(*args) -> list[str]:
        return [sys.executable, "-m", "hahooks", *map(str, args)]

    # -- storage -----------------------------------------------------------------------
    def file_vdev(self, name: str, size_mb: int) -> str:
        """A sparse file under <workdir>/vdevs (a zpool file vdev, or a loop image)."""
        return self._sparse("vdevs", _check(FILE_RE, name, "vdev name"), size_mb)

    def _sparse(self, sub: str, name: str, size_mb: int) -> str:
        self._ensure()
        if not isinstance(size_mb, int) or not 1 <= size_mb <= 64 * 1024:
            raise SandboxError(f"{name}: size_mb {size_mb!r} must be 1..65536")
        os.makedirs(os.path.join(self.workdir, sub), exist_ok=True)
        path = os.path.join(self.workdir, sub, name)
        with open(path, "wb") as fh:
            fh.truncate(size_mb * 1024 * 1024)
        return path

    def loop_image(self, name: str, size_mb: int, fs: str | None = None) -> str:
        """A sparse image attached to a free loop device (detached at cleanup), with an
        ext4 or xfs filesystem on it when fs is given. Returns /dev/loopN."""
        if fs not in (None, "ext4", "xfs"):
            raise SandboxError(f"loop image {name}: fs {fs!r} must be ext4, xfs or None")
        path = self._sparse("images", _check(FILE_RE, name, "image name") + ".img", size_mb)
        dev = self.loop_attach(path)
        if fs == "ext4":
            host([tool("mkfs.ext4"), "-q", "-F", dev], timeout=120)
        elif fs == "xfs":
            host([tool("mkfs.xfs"), "-q", "-f", dev], timeout=120)
        return dev

    def loop_attach(self, image: str) -> str:
        """One more loop device on an image of this lab (detached at cleanup): a shared
        disk as a second machine sees it. Sandbox nodes share one kernel; through one loop
        device they would share one superblock too, and a node would see its peer's mount
        in /sys/fs/<type>/<dev> (usage.elsewhere), which a real second machine never does.
        Its own loop device gives each node its own, as its own kernel would."""
        image = os.path.realpath(image)
        if not image.startswith(os.path.realpath(self.workdir) + os.sep):
            raise SandboxError(f"loop image {image} is not under the lab's workdir")
        with self._mutex:
            dev = host([tool("losetup"), "-f", "--show", image]).stdout.strip()
            self._loops.append((dev, image))
            self._save()
        return dev

    # -- namespaces (used by Network and Node) -----------------------------------------
    def _add_netns(self, name: str) -> None:
        hoststate.delete_netns(name, self.grace)     # a node booted again under its name
        host(["ip", "netns", "add", name])
        if name not in self._netns:
            self._netns.append(name)
        self._save()

    def _del_netns(self, name: str) -> None:
        hoststate.delete_netns(name, self.grace)
        if name in self._netns:
            self._netns.remove(name)
        self._save()

    # -- teardown ----------------------------------------------------------------------
    def release(self) -> str:
        """Leave everything running after this process exits (the drill's --keep); tear
        it down later with `python3 -m hahooks.lab.sandbox cleanup WORKDIR`."""
        self._released = True
        for node in self.nodes.values():
            node.release_owner()
        _live.discard(self)
        return f"python3 -m hahooks.lab.sandbox cleanup {self.workdir}"

    def cleanup(self) -> None:
        """Idempotent teardown: node processes (TERM, then KILL, by PID), loop devices,
        network namespaces, the workdir (unless keep). Raises one SandboxError listing
        every problem, after trying everything."""
        main = threading.current_thread() is threading.main_thread()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) \
            if main else None
        try:
            with self._mutex:
                self._cleanup()
        finally:
            if blocked is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _cleanup(self) -> None:
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        errors: list[str] = []

        def attempt(what, fn, *args):
            try:
                fn(*args)
            except Exception as err:            # go on: everything else must still go
                errors.append(f"{what}: {err}")
        for node in list(self.nodes.values()):
            attempt(f"node {node.name}", node.shutdown, self.grace)
        for dev, path in self._loops:
            attempt(f"loop {dev}", hoststate.detach_loop, dev, path)
        for net in list(self.networks.values()):
            attempt(f"network {net.name}", net.destroy)
        for name in list(self._netns):
            attempt(f"netns {name}", self._del_netns, name)
        if not self.keep:
            attempt("workdir", shutil.rmtree, self.workdir)
        _live.discard(self)
        if self._lock_fd is not None:
            hoststate.unlock_prefix(self.prefix, self._lock_fd)
            self._lock_fd = None
        if errors:
            raise SandboxError(f"lab {self.prefix} cleanup: " + "; ".join(errors))


# -- process-wide safety nets ------------------------------------------------------------
def _cleanup_all() -> None:
    for lab in list(_live):
        try:
            lab.cleanup()
        except Exception as err:
            print(f"hahooks sandbox: cleanup at exit: {err}", file=sys.stderr)


def _on_signal(signum, frame):
    raise SystemExit(128 + signum)


def _install_handlers() -> None:
    """SIGTERM/SIGHUP -> SystemExit so with/finally blocks tear the labs down (SIGINT is
    already KeyboardInterrupt); atexit catches labs nobody closed."""
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_cleanup_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _on_signal)
