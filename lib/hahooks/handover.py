"""The hook's side of the warm agent (agent.py): whether an agent is there, and handing it a
recorded desire. Apart from agent.py so that transition.py, which the agent's converger runs,
and the agent never import each other."""
from __future__ import annotations

import logging
import time

from hahooks import bell
from hahooks.state import AGENT_ACK, AGENT_LOCK, StateDir

log = logging.getLogger("hahooks.agent")

ACK_WAIT = bell.ACK_WAIT      # what a hook waits for the agent to take its desire


def alive(state: StateDir) -> bool:
    """True while some agent holds agent.lock (a stopped one too: hence the ack)."""
    return state.flocked(AGENT_LOCK)


def hand_over(state: StateDir, seq: int, wait: float = ACK_WAIT) -> int | None:
    """The PID of the agent's converger that took desire `seq`, or None when there is no
    agent or it did not answer within `wait` (then the caller converges as without one)."""
    if not alive(state):
        return None
    ring(state)
    deadline = time.monotonic() + wait
    nap = 0.001
    while True:
        ack = state._read(AGENT_ACK) or {}
        if int(ack.get("seq", 0)) >= seq:
            return int(ack.get("converger", 0)) or None
        if time.monotonic() >= deadline:
            if wait <= 0:
                return None
            log.info("the agent did not take desire #%d within %.0f ms: converging without "
                     "it", seq, wait * 1000, extra={"event": "agent_silent", "seq": seq})
            return None
        time.sleep(nap)
        nap = min(nap * 2, 0.008)


def ring(state: StateDir) -> bool:
    """bell.ring for this state dir."""
    return bell.ring(state.path)
