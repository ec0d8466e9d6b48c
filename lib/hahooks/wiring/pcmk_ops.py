"""Pacemaker op timeouts and resource ids: the one computation behind `hahooks render`'s
pcs/crm lines (render.py), the raw CIB (pcmk_cib.py) and the OCF agent's meta-data
(ocf.py). A module of its own so that those three import it and not each other
(tests/test_import_graph.py). docs/reference/pacemaker.md.
"""
from __future__ import annotations

import re


def pcmk_id(name: str) -> str:
    """A Pacemaker resource id for layer `name` (ids allow letters, digits, _ . -)."""
    return "hahooks-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _seconds(value: float) -> str:
    return f"{int(value + 0.999)}s"


def pacemaker_timeouts(resources, layer: str | None = None) -> tuple[str, str]:
    """(start, stop) op timeouts for the whole stack or one layer: above hahooks' own
    budgets, so a failed start can roll back before Pacemaker gives up on it. The one
    computation behind both these ops and the agent's meta-data."""
    if layer is not None:
        budget = next(r.timeout for r in resources if r.name == layer)
        return _seconds(budget + 30), _seconds(budget + 30)
    total = sum(r.timeout for r in resources)
    return _seconds(2 * total + 30), _seconds(total + 30)
