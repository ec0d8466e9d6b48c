"""What the OCF agent (wiring/ocf.py) and its promotable mode (wiring/ocf_promotable.py)
share: the result that leaves the agent with an OCF code, and one layer's step under the
node's transition lock. Its own module so that neither of the two imports the other."""
from __future__ import annotations


class OcfResult(Exception):
    """Leave the agent with this OCF code and reason (reason printed for failures)."""

    def __init__(self, code: int, reason: str = ""):
        super().__init__(reason)
        self.code, self.reason = code, reason


def under_lock(cfg, step) -> None:
    """One layer's step under the node's transition lock (no hook transition meanwhile)."""
    # local: the CLI imports the wiring modules to build its parser on every hook start
    from hahooks.state import StateDir, TransitionLock

    lock = TransitionLock(StateDir(cfg.node.state_dir).prepare())
    lock.acquire(cfg.node.wait_timeout)
    try:
        step()
    finally:
        lock.release()
