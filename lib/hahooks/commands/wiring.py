"""Subcommands that translate a cluster daemon's calling convention into a desire or a
single-resource action. Each module in hahooks.wiring that defines register() adds its own."""
from __future__ import annotations

import importlib

WIRING_MODULES = ("devd", "freevrrpd", "keepalived", "ucarp", "heartbeat", "ocf", "render")


def register(sub, common) -> None:
    for name in WIRING_MODULES:
        module = importlib.import_module(f"hahooks.wiring.{name}")
        if hasattr(module, "register"):
            module.register(sub, common)
