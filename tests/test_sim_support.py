"""Helpers shared by the simulator's tests (no tests here)."""
from __future__ import annotations

import os

from hahooks.lab.sim import World


def make_world(tmp_path, **addrs) -> World:
    """A world under tmp_path with nodes at fixed addresses (name=addr)."""
    w = World(str(tmp_path / "world"))
    for node, addr in addrs.items():
        w.add_node(node, addr=addr)
    return w


def titles() -> list[str]:
    """Every visible process's joined cmdline (what pgrep -f and psutil see)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    out.append(f.read().rstrip(b"\0").replace(b"\0", b" ").decode())
            except OSError:
                pass
    return out
