"""Resource kinds: one module per kind, found by name (``kind = "ggate-export"`` ->
``hahooks.kinds.ggate_export``). Each module defines ``RESOURCE``, a ``base.Resource``
subclass. Modules are imported only when a config uses them."""
from __future__ import annotations

import importlib
import pkgutil

_NOT_KINDS = {"base"}


def names() -> list[str]:
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name not in _NOT_KINDS)


def get(kind: str):
    module = importlib.import_module("hahooks.kinds." + kind.replace("-", "_"))
    return module.RESOURCE
