"""What a transition does beyond this node: fence the peer (at most once per transition,
before a forced step) and demote this node after a failed master. Both change the cluster,
so both are announced at WARNING and listed by `history`; their argv is logged redacted
(runner.redact, secret_options)."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from hahooks.errors import HahooksError
from hahooks.fence_agents import stdin_for

log = logging.getLogger("hahooks.engine")   # the engine's records, as before the split


class PeerActions:
    def __init__(self, config, runner, superseded: Callable[[], bool]):
        self.config = config
        self.runner = runner
        self.superseded = superseded
        self.fenced: bool | None = None   # None: fence not tried in this transition
        self._fence_lock = threading.Lock()  # parallel layers may ask at the same time

    def fence(self, why: str) -> bool:
        """Run node.fence at most once per transition; forced steps are allowed only if it
        succeeded (or a replication layer guarantees exclusivity: the kind decides that)."""
        with self._fence_lock:
            return self._fence_once(why)

    def _fence_once(self, why: str) -> bool:
        if self.fenced is not None:
            return self.fenced
        if self.superseded():
            # a stale transition (the desire flipped meanwhile) never powers off the peer
            log.warning("not fencing (%s): a newer request with the other role arrived", why,
                        extra={"event": "fence"})
            return False
        argv = self.config.node.fence
        if not argv:
            log.warning("forced step wanted (%s) but no [node] fence command is configured",
                        why, extra={"event": "fence"})
            self.fenced = False
            return False
        try:
            result = self.runner.run(argv, readonly=False,
                                     timeout=self.config.node.command_timeout, what="fence",
                                     secret_options=True, input=self._fence_stdin())
            self.fenced = True
            _announce("fenced the peer", "fence", result, why)
        except HahooksError as exc:
            log.error("fence command failed: %s", exc.one_line(),
                      extra={"event": "fence", "ok": False})
            self.fenced = False
        return self.fenced

    def _fence_stdin(self) -> str | None:
        """A fence-agents agent's options, on its stdin (never logged): hahooks.fence_agents."""
        options = self.config.node.fence_options
        if not options:
            return None
        return stdin_for(options)

    def demote(self) -> None:
        """After a failed master, once the stack is rolled back: let the peer take over."""
        argv = self.config.node.demote
        if not argv:
            return
        try:
            result = self.runner.run(argv, readonly=False,
                                     timeout=self.config.node.command_timeout, what="demote",
                                     secret_options=True)
            _announce("demoted", "demote", result, "the master transition failed")
        except HahooksError as exc:
            log.error("demotion command failed: %s", exc.one_line(),
                      extra={"event": "demote", "ok": False})


def _announce(done: str, event: str, result, why: str) -> None:
    """A fence or a demotion changes the cluster beyond this node: a person must see it
    (WARNING, also with -q) and `history` lists it (the event with ok=True)."""
    if result.dry_run:
        return            # "would run" is already listed; nothing happened
    log.warning("%s: ran %s (exit %d) because %s", done, result.display(), result.exit_code,
                why, extra={"event": event, "ok": True})
