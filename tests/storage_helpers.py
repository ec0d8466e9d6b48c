"""Real parts for the storage-kind tests: loop-backed ext4/xfs images, processes that hold
a mount, a small daemon with a pidfile, and cleanup that runs even when a test fails.

Everything a test makes lives under its own tmp dir ("st" prefix); processes are ended by
PID, mounts under the tmp dir are unmounted and loop devices detached by their backing file.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(os.path.dirname(HERE), "lib")
sys.path.insert(0, LIB)

from hahooks import mounts  # noqa: E402


def sh(*argv, check=True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], check=check, capture_output=True, text=True,
                          **kw)


def mounted_under(path: str) -> list[mounts.Mount]:
    prefix = os.path.realpath(path).rstrip("/") + "/"
    return [m for m in mounts.read() if m.mountpoint.startswith(prefix)]


def is_mounted(mountpoint: str) -> bool:
    return mounts.at(mounts.read(), mountpoint) is not None


class Lab:
    """Per-test owner of images, loop devices and processes; close() undoes all of it."""

    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self.loops: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.pids: list[int] = []     # daemons we did not fork directly (pidfiles)

    # -- images ------------------------------------------------------------
    def image(self, name: str, fs: str = "ext4", size_mb: int = 64) -> str:
        """A loop device holding a fresh filesystem; returns /dev/loopN."""
        if fs == "xfs":
            size_mb = max(size_mb, 300)   # mkfs.xfs refuses images under 300 MB
        path = os.path.join(self.root, f"st-{name}.img")
        with open(path, "wb") as fh:
            fh.truncate(size_mb * 1024 * 1024)
        sh(f"mkfs.{fs}", *(["-q", "-F"] if fs.startswith("ext") else ["-q", "-f"]), path)
        dev = sh("losetup", "-f", "--show", path).stdout.strip()
        self.loops.append(dev)
        return dev

    def corrupt_ext4(self, dev: str) -> None:
        """Clear the root inode and mark the fs not clean: e2fsck -p then stops with
        'UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY' (exit 4); -y repairs it."""
        sh("debugfs", "-w", "-R", "clri <2>", dev)
        sh("debugfs", "-w", "-R", "ssv state 0", dev)

    def corrupt_xfs(self, dev: str) -> None:
        """Make the root inode a regular file: xfs_repair -n exits 1, xfs_repair fixes it."""
        sh("xfs_db", "-x", "-c", "inode 128", "-c", "write core.mode 0100644", dev)

    # -- processes ---------------------------------------------------------
    def spawn(self, code: str, cwd: str = "/", ready: str | None = None) -> subprocess.Popen:
        """A python process running `code`; a thread reaps it as its parent would, so a
        killed holder does not linger as our zombie. `ready`: a path it creates when set."""
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        threading.Thread(target=proc.wait, daemon=True).start()
        if ready:
            deadline = time.monotonic() + 10
            while not os.path.exists(ready):
                assert proc.poll() is None, f"helper process exited early: {code}"
                assert time.monotonic() < deadline, f"helper never got ready: {code}"
                time.sleep(0.01)
        return proc

    def adopt(self, pid: int) -> None:
        self.pids.append(pid)

    # -- cleanup -------------------------------------------------------------
    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
        import psutil

        for pid in self.pids:      # a daemon and its workers (they outlive a KILLed master)
            with contextlib.suppress(psutil.Error):
                tree = psutil.Process(pid)
                for proc in [tree, *tree.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        proc.kill()
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
        for m in sorted(mounted_under(self.root), key=lambda m: -len(m.mountpoint)):
            if sh("umount", m.mountpoint, check=False).returncode:
                sh("umount", "-l", m.mountpoint, check=False)
        for dev in self.loops:
            sh("losetup", "-d", dev, check=False)


def alive(proc) -> bool:
    """Running and not a zombie."""
    pid = proc if isinstance(proc, int) else proc.pid
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


HOLD_CWD = "import time\nopen('{ready}', 'w').close()\ntime.sleep(600)"
HOLD_FILE = """\
    import time
    f = open('{path}', 'a')
    open('{ready}', 'w').close()
    time.sleep(600)"""
HOLD_DIR = """\
    import os, time
    fd = os.open('{path}', os.O_RDONLY | os.O_DIRECTORY)
    open('{ready}', 'w').close()
    time.sleep(600)"""
HOLD_IGNORING_TERM = """\
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open('{ready}', 'w').close()
    time.sleep(600)"""


# -- fixtures and runners shared by the storage test modules -------------------
import pytest  # noqa: E402


@pytest.fixture
def lab(tmp_path):
    from conftest import require_root, require_tool

    require_root()
    require_tool("losetup", "mkfs.ext4", "mount", "umount", "fsck")
    owner = Lab(str(tmp_path))
    try:
        yield owner
    finally:
        owner.close()


def engine(cfg_path: str, dry_run: bool = False):
    """An in-process engine on a config file, and its runner (whose history tests read)."""
    from hahooks import config
    from hahooks.engine import Engine

    cfg = config.load(cfg_path)
    engine = Engine.for_config(cfg, dry_run=dry_run)
    return engine, engine.runner


def ran(runner, *prefix: str) -> list[list[str]]:
    """The argv of every command the runner ran that starts with `prefix` (tool basename)."""
    out = []
    for r in runner.history:
        argv = [os.path.basename(r.argv[0]), *r.argv[1:]]
        if argv[:len(prefix)] == list(prefix):
            out.append(argv)
    return out


def fs_resource(name: str, device: str, mountpoint: str, **params) -> str:
    """A [[resource]] table for a filesystem layer."""
    lines = ["[[resource]]", f'name = "{name}"', 'kind = "filesystem"',
             f'device = "{device}"', f'mountpoint = "{mountpoint}"']
    lines += [f"{k} = {toml_value(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_value(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def daemon_script(script_dir: str, name: str, docroot: str, run_dir: str,
                  leave_child: bool = False) -> dict:
    """Install tests/st_daemon.py as an init.d/rc.d-style script SCRIPT_DIR/NAME.
    Returns the daemon's config (pidfile, socket, docroot, script path)."""
    import json

    os.makedirs(script_dir, exist_ok=True)
    cfg = {"name": name, "docroot": docroot, "pidfile": os.path.join(run_dir, f"{name}.pid"),
           "socket": os.path.join(run_dir, f"{name}.sock"), "leave_child": leave_child}
    conf = os.path.join(run_dir, f"{name}.json")
    with open(conf, "w") as fh:
        json.dump(cfg, fh)
    script = os.path.join(script_dir, name)
    with open(script, "w") as fh:
        fh.write(f"#!/bin/sh\nexec {sys.executable} {HERE}/st_daemon.py {conf} \"$@\"\n")
    os.chmod(script, 0o755)
    return {**cfg, "script": script, "conf": conf}


def http_get(socket_path: str, path: str = "/") -> tuple[int, str]:
    """GET over the daemon's UNIX socket: (status code, body)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(socket_path)
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


def pid_of(pidfile: str) -> int | None:
    try:
        return int(open(pidfile).read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
