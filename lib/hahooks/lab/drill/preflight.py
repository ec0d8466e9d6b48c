"""What the drill needs before it touches anything: root, and the tools of the scenario,
each named with the Debian package that provides it (the drill is the first thing a new
user runs: "mariadbd not found" means less to them than "apt-get install mariadb-server")."""
from __future__ import annotations

import os
import shutil

from hahooks.errors import NotInstalled, PermissionProblem

# tool -> Debian package (scripts/bootstrap installs all of them)
PACKAGES = {
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
    "losetup": "mount",
    "zfs-fuse": "zfs-fuse",
    "zpool": "zfs-fuse",
    "zfs": "zfs-fuse",
    "mkfs.ext4": "e2fsprogs",
    "fsck.ext4": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client",
    "nginx": "nginx-light",
    "pkill": "procps",
}

SEARCH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def find_tool(tool: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SEARCH])
    return shutil.which(tool, path=path)


def missing_packages(tools) -> dict[str, list[str]]:
    """{debian package: [missing tools]} for the tools that cannot be found."""
    out: dict[str, list[str]] = {}
    for tool in tools:
        if not find_tool(tool):
            out.setdefault(PACKAGES.get(tool, tool), []).append(tool)
    return out


def check(tools, *, need_root: bool = True) -> None:
    """Raise PermissionProblem (exit 4) without root, NotInstalled (exit 5) naming the
    Debian packages to install when a tool is missing."""
    if need_root and os.geteuid() != 0:
        raise PermissionProblem("the drill builds network/mount/PID namespaces, loop devices "
                                "and FUSE mounts: run it as root (sudo hahooks drill)")
    missing = missing_packages(tools)
    if missing:
        pkgs = sorted(missing)
        tools_txt = ", ".join(t for p in pkgs for t in missing[p])
        raise NotInstalled(f"missing {tools_txt}: install the Debian package(s) "
                           f"{' '.join(pkgs)} (apt-get install {' '.join(pkgs)}, or run "
                           "./scripts/bootstrap)")
