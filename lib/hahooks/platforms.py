"""FreeBSD vs Linux differences: command search dirs, syslog socket, default paths.

Tests force the FreeBSD path on Linux with `node.platform = "freebsd"` (or
HAHOOKS_PLATFORM), so the FreeBSD command forms run in CI against the simulator. What the
kernel offers is not configured here: the mount table (mounts.read: mountinfo or `mount
-p`) and the proof that nothing else uses a device (usage.py: mount namespaces and lazy
unmounts exist only on Linux) follow the running kernel.
"""
from __future__ import annotations

import dataclasses
import os
import sys


@dataclasses.dataclass(frozen=True)
class Platform:
    name: str                    # "freebsd" | "linux"
    sbin_dirs: tuple[str, ...]   # searched after PATH: devd/freevrrpd give hooks a minimal PATH
    syslog_socket: str
    default_config: str
    default_state_dir: str
    default_log_dir: str

    @property
    def is_freebsd(self) -> bool:
        return self.name == "freebsd"


FREEBSD = Platform(
    name="freebsd",
    sbin_dirs=("/sbin", "/bin", "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"),
    syslog_socket="/var/run/log",
    default_config="/usr/local/etc/hahooks.toml",
    default_state_dir="/var/db/hahooks",
    default_log_dir="/var/log",
)

LINUX = Platform(
    name="linux",
    sbin_dirs=("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"),
    syslog_socket="/dev/log",
    default_config="/etc/hahooks.toml",
    default_state_dir="/var/lib/hahooks",
    default_log_dir="/var/log",
)

PLATFORMS = {"freebsd": FREEBSD, "linux": LINUX}


def host_platform() -> Platform:
    forced = os.environ.get("HAHOOKS_PLATFORM")
    if forced in PLATFORMS:
        return PLATFORMS[forced]
    return FREEBSD if sys.platform.startswith("freebsd") else LINUX


def get(name: str | None) -> Platform:
    if not name or name == "auto":
        return host_platform()
    return PLATFORMS[name]


def default_config_path() -> str:
    return os.environ.get("HAHOOKS_CONFIG") or host_platform().default_config


@dataclasses.dataclass(frozen=True)
class WiringLayout:
    """Where each daemon looks for hahooks' entry points (`hahooks install-wiring`).
    "{prefix}" stands for --prefix (default /usr/local); the rest are the daemons' own fixed
    places. None: the platform has no such daemon (devd is FreeBSD's)."""
    sbin: str            # the `hahooks` command devd, freevrrpd and root's PATH find
    libexec: str         # hooks/ (freevrrpd, ucarp scripts)
    ocf: str             # Pacemaker's OCF provider dir: ocf:hahooks:hahooks
    heartbeat: str       # Heartbeat v1 resource.d
    devd: str | None     # devd.conf(5) directory
    man: str
    manifest: str        # what install-wiring installed, for --uninstall

    def resolve(self, prefix: str) -> "WiringLayout":
        return WiringLayout(**{k: v.replace("{prefix}", prefix.rstrip("/") or "/")
                               if isinstance(v, str) else v
                               for k, v in dataclasses.asdict(self).items()})


WIRING_LAYOUTS = {
    # Debian: resource-agents and pacemaker use /usr/lib/ocf, heartbeat /etc/ha.d
    "linux": WiringLayout(sbin="{prefix}/sbin", libexec="{prefix}/libexec/hahooks",
                          ocf="/usr/lib/ocf/resource.d/hahooks",
                          heartbeat="/etc/ha.d/resource.d", devd=None,
                          man="{prefix}/share/man",
                          manifest="{prefix}/share/hahooks/installed-wiring.json"),
    # FreeBSD: everything from ports lives under LOCALBASE; devd also reads the files in
    # /usr/local/etc/devd (sbin/devd/devd.conf, options { directory "/usr/local/etc/devd" })
    "freebsd": WiringLayout(sbin="{prefix}/sbin", libexec="{prefix}/libexec/hahooks",
                            ocf="{prefix}/lib/ocf/resource.d/hahooks",
                            heartbeat="{prefix}/etc/ha.d/resource.d",
                            devd="{prefix}/etc/devd", man="{prefix}/share/man",
                            manifest="{prefix}/share/hahooks/installed-wiring.json"),
}
