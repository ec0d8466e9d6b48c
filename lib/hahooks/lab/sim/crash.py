"""What a node crash does to the non-HAST parts of the world (filled per tool module)."""
from __future__ import annotations


def node_down(store, st: dict, node: str) -> None:
    """Called under the world lock by World.crash after HAST roles were dropped."""
    from hahooks.lab.sim import drbd, ggate, md, mirror_model

    for module in (mirror_model, ggate, md, drbd):
        module.node_down(store, st, node)
