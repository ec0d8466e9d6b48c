"""`hahooks agent`: an optional resident converger, so an event pays only the small hook.

Without it every event starts a worker interpreter that imports the engine, the kinds and
the runner before its first command (docs/performance.md). The agent has them imported
already: a --detach hook rings its doorbell (agent.bell, a FIFO in the state dir: the same
on Linux and FreeBSD) once it recorded its desire, and the agent forks a converger for a
new desire, one at a time (a desire recorded meanwhile is the live converger's to take, or
the next one's). The converger follows the protocol a worker follows (transition.py):
take the transition lock, converge to the newest desire, unlock, follow up. It re-reads
the config first, so an edited config counts from the next event on.

Only `--detach` hooks (the event daemons' form) hand a recorded desire over; a `--wait`
caller converges its own desire (the agent leaves waiting desires alone), in its own process
or, through the express lane, in a child the agent forks for it (express_wait.py). The agent is
never needed: a hook hands its desire over only when the agent says it took it:
  agent.lock  held (flock) for the agent's whole life: free = no agent
  agent.json  {"seq", "pid", "converger", "at"}, written by the agent once it forked the
              converger for desire seq (which converges to the newest desire there is)
  agent.bell  a FIFO the agent reads; a hook writes one byte (handover.ring) and never
              blocks: no reader is ENXIO
The hook waits at most ACK_WAIT for agent.json to reach its own seq; a dead, stopped or slow
agent means the hook does what it does without one (a worker, or --wait converging itself).
Both running is harmless: convergers take turns on the lock, and the second finds nothing
pending, so nothing runs twice. A converger killed mid-way is a killed worker (protocol
step 6 in transition.py). The converger is forked, not run in the agent: stopping or
killing the agent alone does not stop the transition under way.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import select
import signal
import stat
import time

from hahooks.errors import HahooksError
from hahooks.handover import ACK_WAIT, alive, hand_over  # noqa: F401 (the hook's side)
from hahooks.state import AGENT_ACK, AGENT_BELL, AGENT_LOCK, StateDir

log = logging.getLogger("hahooks.agent")

POLL = 0.5           # a desire recorded without ringing the bell is seen this late
# imported once by the agent, so no converger pays for them (what a worker imports
# before its first command: `python -X importtime -m hahooks worker`)
WARM = ("hahooks.engine", "hahooks.kinds", "hahooks.runner", "hahooks.spawn", "hahooks.procs",
        "hahooks.notify", "hahooks.usage", "hahooks.mounts", "subprocess", "shlex", "uuid",
        "psutil", "hahooks.transition", "hahooks.maintenance")


# -- the agent ------------------------------------------------------------------------------
def serve(config_path: str, cfg) -> int:
    """Run until SIGTERM/SIGINT: a converger for each new desire, one at a time. Exit 1 if
    an agent runs already."""
    config_path = os.path.abspath(config_path)
    state = StateDir(os.path.abspath(cfg.node.state_dir)).prepare()
    os.chdir("/")   # as a worker (transition.spawn_worker): its convergers run commands
    holder = state.lock_fd(AGENT_LOCK)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise HahooksError(f"another agent serves {state.path}") from None
    watch = Doorbell(state.path)    # first: a hook ringing during the warm-up is heard
    _warm_up()
    from hahooks.spool import Spool

    spool = Spool(config_path, state, cfg)
    express = spool.publish()
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    # a converger's end wakes the loop too (signal.set_wakeup_fd writes to watch.wake)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(watch.wake[1])
    log.info("agent %d serves %s (%s%s)", os.getpid(), state.path, watch.how,
             f", express lane {spool.pointer}" if express else "",
             extra={"event": "agent_start", "watch": watch.how, "express": express})
    forked_for, live = 0, None
    agents_fds = (holder, *watch.fds)
    try:
        while not stop:
            if live in _reap():
                live = None
            taken, runs = spool.take() if express else ([], [])
            for path, (words, at, pid) in runs:     # a daemon's command, in a child
                _fork(lambda: spool.run_wiring(path, words, at, pid), agents_fds,
                      f"{words[0]} of hook {pid}", event="express_run")
            desire = state.pending()
            # One converger at a time: a desire recorded while it lives is its to take
            # (transition.py steps 2 and 3) or, recorded after its last look, left pending
            # until it ends and the next one is forked. A --wait caller's desire is its own
            # to converge (transition.request).
            if live is None and desire is not None and desire.seq > forked_for \
                    and not desire.waiter:
                forked_for = desire.seq
                live = converger = _fork(lambda: converge_once(config_path), agents_fds,
                                         "converger")
                # the answer a --detach hook waits for: written by the agent right after the
                # fork, so the hook's wait does not include the converger's config load
                state._write(AGENT_ACK, {"seq": desire.seq, "pid": os.getpid(),
                                         "converger": converger, "at": time.time()})
            if taken:
                spool.answer(taken, live)
            spool.refresh()
            watch.wait(POLL)
    finally:
        spool.withdraw()
        signal.set_wakeup_fd(-1)
        watch.close()
        log.info("agent %d stops", os.getpid(), extra={"event": "agent_stop"})
        os.close(holder)
    return 0


def _warm_up() -> None:
    import importlib

    for name in WARM:
        try:
            importlib.import_module(name)
        except ImportError:     # e.g. psutil absent: the converger imports what it needs
            pass


def _reap() -> set[int]:
    """Collect the convergers that ended (no zombies); their PIDs."""
    ended = set()
    with contextlib.suppress(ChildProcessError):
        while pid := os.waitpid(-1, os.WNOHANG)[0]:
            ended.add(pid)
    return ended


def _fork(target, agents_fds: tuple[int, ...], what: str, event: str = "agent_fork") -> int:
    """A child that runs target() and exits with its code: a converger, or a daemon's
    command from the express lane."""
    pid = os.fork()
    if pid:
        log.debug("%s %d forked", what, pid, extra={"event": event, "pid": pid})
        return pid
    code = 1
    try:   # the child: never return into the agent's loop
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for fd in agents_fds:   # agent.lock must be free the moment the agent dies
            if fd >= 0:
                os.close(fd)
        code = target()
    except BaseException:   # logged; the next event or hook converges instead
        log.error("agent's %s failed", what, exc_info=True)
    finally:
        logging.shutdown()      # flushes the JSON log: os._exit skips it
        os._exit(code)


def converge_once(config_path: str) -> int:
    """What a worker does (transition.worker), with the config read afresh."""
    from hahooks import config as config_mod, logs, transition

    cfg = config_mod.load(config_path)
    logs.setup_from_config(cfg, logging.WARNING)
    state = StateDir(cfg.node.state_dir).prepare()
    transition.converge_locked(cfg, state)
    transition.follow_up(cfg, state)
    return int((state.done() or {}).get("exit_code", 0))


class Doorbell:
    """What wakes the agent: a byte a --detach hook writes into agent.bell, a FIFO in the
    state dir (handover.ring), or a signal (`wake`, signal.set_wakeup_fd's pipe: a
    converger's end). The same on Linux and FreeBSD; a desire recorded without a ring is
    seen within POLL s. The agent holds a write end of its own, so the FIFO never reads
    as closed when a hook's end goes."""

    how = "doorbell agent.bell"

    def __init__(self, path: str):
        bell = os.path.join(path, AGENT_BELL)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISFIFO(os.lstat(bell).st_mode):
                os.unlink(bell)       # not ours to keep (the state dir is root's, 0700)
        with contextlib.suppress(FileExistsError):
            os.mkfifo(bell, 0o600)
        flags = os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(bell, os.O_RDONLY | flags)
        self._writer = os.open(bell, os.O_WRONLY | flags)
        self.wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)   # (read, write)

    @property
    def fds(self) -> tuple[int, ...]:
        """Every descriptor it holds (a converger closes them all)."""
        return (self.fd, self._writer, *self.wake)

    def wait(self, timeout: float) -> None:
        try:
            ready, _, _ = select.select([self.fd, self.wake[0]], [], [], timeout)
        except InterruptedError:
            return
        for fd in ready:   # drain: the loop looks at the state dir anyway
            try:
                while os.read(fd, 65536):
                    pass
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    raise

    def close(self) -> None:
        for fd in self.fds:
            if fd >= 0:
                os.close(fd)
        self.fd, self._writer, self.wake = -1, -1, (-1, -1)
