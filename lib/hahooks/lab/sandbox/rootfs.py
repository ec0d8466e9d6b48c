"""A sandbox node's private file system view, set up from outside before anything runs.

Why it is built this way (docs/reference/lab.md §4, §5):
* tmpfs on /run: pid files (/run/heartbeat.pid), zfs_socket and zfs_lock
  (/var/run, /var/lock point into /run), /run/heartbeat/* are per node.
* /etc is an overlay whose upper layer is the node's own dir (nodes/<name>/etc/upper):
  /etc/hostid does not even exist on this VM, so it cannot be bind-mounted over, and a
  node can write /etc (hostname, hostid, hosts, configs) without touching the host's. The
  upper layer survives a crash, as a disk would: a rebooted node keeps its hostid.
* The hostid (4 bytes, little endian, read by gethostid()) is what makes zfs-fuse refuse
  another node's pool ("last accessed by another system"); /var/lib/zfs (zpool.cache) is
  private too.
* Stubs: a logging script bind-mounted over the real files behind systemctl (= reboot,
  halt, poweroff) and pgrep (= pkill), so heartbeat's failed-stop path
  (`pkill -9 heartbeat; /sbin/reboot -nf`) cannot reach the host.
* Bind targets must exist, except under /run and /etc, which are private to the node.
"""
from __future__ import annotations

import os
import shlex
import struct

from hahooks.lab.sandbox.nsproc import SandboxError

STUB_OVER = ("/usr/bin/systemctl", "/usr/bin/pgrep", "/usr/bin/pkill", "/sbin/reboot")
HEARTBEAT_RUN_DIRS = ("/run/heartbeat/ccm", "/run/heartbeat/crm", "/run/heartbeat/dopd",
                      "/run/heartbeat/rsctmp", "/run/resource-agents")
PRIVATE_TREES = ("/run/", "/etc/")      # bind targets the node may create privately


def write_etc(node) -> None:
    upper = os.path.join(node.dir, "etc", "upper")
    with open(os.path.join(upper, "hostname"), "w") as fh:
        fh.write(node.name + "\n")
    if node.hostid is not None:
        with open(os.path.join(upper, "hostid"), "wb") as fh:
            fh.write(struct.pack("<I", node.hostid))
    with open("/etc/hosts") as src, open(os.path.join(upper, "hosts"), "w") as fh:
        fh.write(src.read() + f"{node.ip or '127.0.1.1'}\t{node.name}\n")


def saved_hostid(node_dir: str) -> int | None:
    try:
        with open(os.path.join(node_dir, "etc", "upper", "hostid"), "rb") as fh:
            data = fh.read(4)
    except OSError:
        return None
    return struct.unpack("<I", data)[0] if len(data) == 4 else None


def setup(node) -> None:
    d = node.dir
    node.enter(["hostname", node.name])
    node.enter(["mount", "-t", "tmpfs", "-o", "mode=755,nosuid,nodev,size=64m",
                "tmpfs", "/run"])
    dirs = ["/run/lock", "/run/user", *node.run_dirs]
    if node.zfs:
        dirs += ["/run/zfs", "/run/lock/zfs"]
    if node.heartbeat:
        dirs += list(HEARTBEAT_RUN_DIRS)
    node.enter(["mkdir", "-p", *dirs])
    node.enter(["mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir=/etc,upperdir={d}/etc/upper,workdir={d}/etc/work", "/etc"])
    if node.zfs:
        node.enter(["mount", "--bind", f"{d}/var-lib-zfs", "/var/lib/zfs"])
    for target, source in node.binds.items():
        bind(node, str(source), str(target))
    if node.stubs:
        install_stubs(node)
    if node.heartbeat:
        node.enter(["chown", "-R", "hacluster:haclient", "/run/heartbeat"])
        node.enter(["chmod", "750", "/run/heartbeat"])


def bind(node, source: str, target: str) -> None:
    if not os.path.isabs(target) or not os.path.isabs(source):
        raise SandboxError(f"node {node.name}: bind {target} <- {source}: paths must "
                           "be absolute")
    if not os.path.exists(source):
        raise SandboxError(f"node {node.name}: bind source {source} does not exist")
    exists = node.enter(["test", "-e", target], check=False).returncode == 0
    if not exists:
        if not target.startswith(PRIVATE_TREES):
            raise SandboxError(f"node {node.name}: bind target {target} does not exist "
                               "(only targets under /run or /etc are created, privately)")
        if os.path.isdir(source):
            node.enter(["mkdir", "-p", target])
        else:
            node.enter(["mkdir", "-p", os.path.dirname(target)])
            node.enter(["touch", target])
    node.enter(["mount", "--bind", source, target])


def install_stubs(node) -> None:
    stub = os.path.join(node.dir, "stub")
    with open(stub, "w") as fh:
        fh.write("#!/bin/sh\n# hahooks sandbox stub (over systemctl/reboot, pgrep/pkill):"
                 " log the call, do nothing\n"
                 f"echo \"$(date +%s.%N) $(hostname) $0 $*\" >> {shlex.quote(node.stub_log)}"
                 "\nexit 1\n")
    os.chmod(stub, 0o755)
    open(node.stub_log, "a").close()
    targets = []
    for path in STUB_OVER:
        real = os.path.realpath(path)
        if os.path.isfile(real) and real not in targets:
            targets.append(real)
    for real in targets:
        node.enter(["mount", "--bind", stub, real])


def _mountinfo(holder_pid: int | None) -> list[tuple[list[str], list[str]]]:
    """The lines of holder_pid's mountinfo as (fields before " - ", fields after)."""
    out = []
    try:
        with open(f"/proc/{holder_pid}/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                out.append((left.split(), right.split()))
    except (OSError, TypeError):
        pass
    return out


def mounts(holder_pid: int | None) -> list[tuple[str, str, str]]:
    """(mount id, mount point, fstype) in the mount namespace of holder_pid."""
    return [(f[0], _unescape(f[4]), r[0]) for f, r in _mountinfo(holder_pid)]


def block_devices(holder_pid: int | None, skip: set[str]) -> set[int]:
    """Device numbers of the block-device filesystems mounted in holder_pid's mount
    namespace, but for the mounts whose id is in `skip` (those it was born with)."""
    out = set()
    for f, r in _mountinfo(holder_pid):
        if f[0] not in skip and len(r) > 1 and r[1].startswith("/dev/"):
            major, minor = f[2].split(":")
            out.add(os.makedev(int(major), int(minor)))
    return out


def _unescape(path: str) -> str:
    return path.encode().decode("unicode_escape") if "\\" in path else path
