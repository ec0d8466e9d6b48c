"""The agent's doorbell, shared by the hook's two ways to reach it (express.py before the
library is loaded, handover.py after): stdlib only, imported by both."""
from __future__ import annotations

import os
import stat

BELL = "agent.bell"     # state.AGENT_BELL (tests/test_express.py holds them equal)
ACK_WAIT = 0.05         # what a hook waits for the agent's answer before going on without it
# set when this hook's express request went unanswered: the normal path then does not wait
# for the same silent agent a second time (transition.agent_took)
silent: list[bool] = []


def ring(state_dir: str) -> bool:
    """Wake the agent now: one byte into its doorbell, a FIFO it keeps open for reading
    (the same on Linux and FreeBSD, no inotify or kqueue). Never blocks: no reader (no
    agent) is ENXIO, a full pipe (rung already) EAGAIN; anything not a FIFO is left
    alone. True when the byte went in."""
    try:
        fd = os.open(os.path.join(state_dir, BELL),
                     os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode) and os.write(fd, b"!") == 1
    except OSError:
        return False
    finally:
        os.close(fd)
