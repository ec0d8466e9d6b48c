"""Parallel groups: consecutive layers with the same `parallel` name are one step of the
engine's walk, acquired or released together, each member in its own thread.

The engine decides what a failed step means (rollback, stop); this module only runs one
step's members and collects what each raised. A group released together shares one
holderscan.SharedScan: before any member starts, each joins it (Resource.join_group_release:
a filesystem registers its mount), so the first busy member's /proc pass covers them all.
"""
from __future__ import annotations

import contextvars
import logging
import threading
from typing import TYPE_CHECKING, Callable

from hahooks.errors import Superseded

if TYPE_CHECKING:
    from hahooks.config import Config
    from hahooks.kinds.base import Resource

log = logging.getLogger("hahooks.engine")   # the engine's records, as before the split


def groups(config: "Config") -> list[list[int]]:
    """The walk's steps bottom-up: each a list of layer indices. Consecutive layers with
    the same `parallel` group are one step (independent: acquired/released together)."""
    out: list[list[int]] = []
    for spec in config.resources:
        if out and spec.parallel is not None and \
                config.resources[out[-1][0]].parallel == spec.parallel:
            out[-1].append(spec.index)
        else:
            out.append([spec.index])
    return out


def group_start(config: "Config", index: int) -> int:
    """The lowest layer of `index`'s group: the members of a group are not below one another."""
    return next(g[0] for g in groups(config) if index in g)


def join_scan(members: list["Resource"]) -> None:
    """Before a group released together starts: each member joins the engine's shared
    holder scan (ctx.engine.holder_scan) with what its release may find busy."""
    for res in members:
        try:
            res.join_group_release()
        except Exception as exc:     # its release registers itself, or fails there
            log.debug("%s could not join the group's holder scan: %s", res.name, exc)


def run_members(members: list["Resource"], step: Callable[["Resource"], None], *,
                in_order: bool) -> list[tuple[str, BaseException]]:
    """step() each member, each in its own thread unless `in_order` (one member, or dry-run:
    the plan reads top to bottom). Waits for every member; returns the failures (name,
    exception) in layer order. Superseded in any member is raised once all have finished
    (the next walk resumes from what it observes); KeyboardInterrupt and SystemExit are
    not ours to keep."""
    results: dict[int, BaseException | None] = {}

    def one(i: int) -> None:
        try:
            step(members[i])
            results[i] = None
        except BaseException as exc:   # collected: the walk decides after all finish
            results[i] = exc

    if in_order:
        for i in range(len(members)):
            one(i)
            if results[i] is not None and not isinstance(results[i], Exception):
                raise results[i]
    else:
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(one, i),
                                    name=f"hahooks-{res.name}")
                   for i, res in enumerate(members)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    failed = [(members[i].name, exc) for i, exc in sorted(results.items()) if exc is not None]
    for _, exc in failed:
        if isinstance(exc, Superseded):
            raise exc
    for _, exc in failed:
        if not isinstance(exc, Exception):
            raise exc
    return failed
