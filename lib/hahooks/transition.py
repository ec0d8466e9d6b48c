"""Turning a desire into a converged stack: record, lock, converge (latest wins), detach.

The protocol (state.py names the files):
1. Every `master`/`slave` call records its desire with the next sequence number *before*
   it looks at the lock.
2. Whoever holds the transition lock converges to the *newest* desire, re-reading it
   between steps: a desire for the other role stops the walk at the next safe point and the
   walk restarts towards the newest one. A desire of the same role that arrives meanwhile is
   satisfied by the walk under way (done.json records the highest such seq).
3. A converger that unlocks checks once more for a desire recorded while it held the lock
   and converges again if the lock is free; if it is not, the new holder is a converger
   that will do the same check (probes such as `status` never take the lock: state.py).
4. `--detach` records, then tries the lock: taken -> the holder will see the desire (step
   2 or 3); free -> it starts one background worker and returns at once. A storm of events
   therefore starts at most a few workers, never one per event.
5. `--wait` takes the lock (waiting up to node.wait_timeout), converges, and reports the
   outcome of its own desire: done, failed, or superseded by a newer one of the other role.
6. A transition killed mid-way leaves the lock free (the kernel drops flocks), the desire
   pending and maybe one command's process group running (inflight.json): the next
   converger ends those processes and walks the stack again from what it observes.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import uuid

from hahooks import logs
from hahooks.config import Config
from hahooks.errors import ExitCode, HahooksError, Superseded
from hahooks.state import Desire, StateDir, TransitionLock

log = logging.getLogger("hahooks.transition")


def request(cfg: Config, role: str, *, detach: bool, source: str = "") -> tuple[int, str]:
    """Record `role` and converge (now, or in a worker with detach). Returns (exit code,
    one-line message); with detach the code is 0 once the desire is recorded."""
    state = StateDir(cfg.node.state_dir).prepare()
    desire = state.record_desire(role, source, waiter=not detach)
    # in the agent's child running a daemon's command from the express lane (spool.py)
    log_desire(desire, detach, **({"via": "express", "hook": desire.pid}
                                  if StateDir.claim else {}))
    if detach:
        # Lock free: a warm agent may take the desire (we wait ACK_WAIT for its answer).
        # Taken: the holder converges to it (step 2), maybe the agent's converger already.
        lock = TransitionLock(state)
        free = lock.try_acquire()
        lock.release()
        taker = agent_took(state, desire, wait=free)
        if taker:
            return 0, f"{role} #{desire.seq} recorded; the agent's converger {taker} took it"
        return 0, f"{role} #{desire.seq} recorded; {_worker_unless_locked(cfg, free)}"
    # --wait converges itself, here: once the library is loaded, handing over to the
    # agent's converger and waiting for its answer costs more than it saves
    # (docs/performance.md); a call that should not pay the imports takes the express lane
    # before it loads them (express_wait.py: then this runs in the agent's child). It waits
    # behind whoever holds the lock, the agent's converger included.
    converge_locked(cfg, state)
    code, message = outcome_of(desire, state.done())
    follow_up(cfg, state)
    return code, message


def log_desire(desire: Desire, detach: bool, **extra) -> None:
    """The record history and the drill read for every desire, whoever recorded it."""
    source = desire.source
    log.info("recorded desire %s #%d%s", desire.role, desire.seq,
             f" from {source}" if source else "",
             extra={"event": "desire", "seq": desire.seq, "role": desire.role,
                    "source": source, "detach": detach, **extra})


def _worker_unless_locked(cfg: Config, free: bool) -> str:
    """A recorded --detach desire nobody took: a worker if the lock was free (if another
    converger is first, fine), else the holder converges to it (protocol step 2 or 3)."""
    if not free:
        return "the running transition will converge to it"
    spawn_worker(cfg.path)
    return "worker started"


def ensure_converging(config_path: str, role: str | None, seq: str | None) -> str:
    """An express request (express.py) the agent recorded and then went silent on (stopped
    before it forked a converger; for a daemon's command run in the agent's child, role and
    seq are not known to the hook): what request() does for a --detach desire no agent
    took. The one-line message for the hook."""
    from hahooks import config as config_mod

    cfg = config_mod.load(config_path)
    logs.setup_from_config(cfg, logging.WARNING)
    state = StateDir(cfg.node.state_dir).prepare()
    lock = TransitionLock(state)
    free = lock.try_acquire()
    lock.release()
    what = f"desire {role} #{seq}" if role else "the desire of a daemon's request"
    log.info("the agent recorded %s and went silent: %s", what,
             "starting a worker" if free else "the lock holder converges",
             extra={"event": "agent_silent", "seq": seq, "role": role})
    return f"{what} recorded by the agent; {_worker_unless_locked(cfg, free)}"


def resume_waiting(config_path: str, role: str, level: int) -> tuple[int, str]:
    """A waiting call the agent's child ran (express_wait.py) and died on after it recorded
    the desire, before its answer: converge here, under the lock, as the call would have,
    and answer for it (exit code, one-line message)."""
    from hahooks import config as config_mod

    cfg = config_mod.load(config_path)
    logs.setup_from_config(cfg, level)
    state = StateDir(cfg.node.state_dir).prepare()
    log.warning("the agent's child running a waiting %s call ended before its answer: "
                "converging here", role, extra={"event": "express_resumed", "role": role,
                                  "pid": os.getpid()})
    converge_locked(cfg, state)
    newest = state.desire()
    if newest is None:
        code, message = ExitCode.GENERIC, f"{role}: no desire recorded"
    elif newest.pid == os.getpid() or newest.role == role:     # ours, or one like it after
        code, message = outcome_of(newest, state.done())
    else:
        code, message = ExitCode.GENERIC, (f"{role} superseded by a newer {newest.role} "
                                           f"request #{newest.seq}")
    follow_up(cfg, state)
    return code, message


def agent_took(state: StateDir, desire: Desire, wait: bool) -> int | None:
    """The PID of the `hahooks agent` converger that took `desire`, or None: no agent, or it
    did not answer (within handover.ACK_WAIT if `wait`, else now); the caller then converges
    as if there were none."""
    from hahooks import bell, handover   # off the hook's start-up path (performance.md)

    if wait and bell.silent:      # the express lane found it silent already
        wait = False
        log.info("the agent did not take express request for desire #%d within %.0f ms: "
                 "converging without it", desire.seq, bell.ACK_WAIT * 1000,
                 extra={"event": "agent_silent", "seq": desire.seq})
    taker = handover.hand_over(state, desire.seq, handover.ACK_WAIT if wait else 0.0)
    if taker:
        log.info("desire #%d taken by the agent's converger %d", desire.seq, taker,
                 extra={"event": "agent_took", "seq": desire.seq, "pid": taker})
    return taker


def outcome_of(desire: Desire, done: dict | None) -> tuple[int, str]:
    """The answer for one --wait caller, from done.json after its converge."""
    done = done or {}
    if done.get("seq", 0) < desire.seq:
        return ExitCode.GENERIC, f"{desire.role} #{desire.seq} not converged"
    if done.get("role") != desire.role:
        return ExitCode.GENERIC, (f"{desire.role} #{desire.seq} superseded by a newer "
                                  f"{done.get('role')} request #{done.get('seq')}")
    return int(done.get("exit_code", ExitCode.GENERIC)), str(done.get("message", ""))


def converge_locked(cfg: Config, state: StateDir) -> None:
    """Wait (node.wait_timeout) for the transition lock, converge, unlock."""
    lock = TransitionLock(state)
    lock.acquire(cfg.node.wait_timeout)
    try:
        converge(cfg, state)
    finally:
        lock.release()


def converge(cfg: Config, state: StateDir) -> None:
    """Run while holding the lock: converge to the newest desire until none is pending."""
    from hahooks.engine import Engine

    state.reap_orphans()
    while True:
        desire = state.pending()
        if desire is None:
            return
        role = desire.role

        def superseded(role=role) -> bool:
            newest = state.desire()
            return newest is not None and newest.role != role

        engine = Engine.for_config(cfg, superseded=superseded)
        engine.runner.tracker = state
        tid = f"{desire.seq}-{uuid.uuid4().hex[:6]}"
        with logs.context(transition=tid, role=role):
            log.info("transition to %s (desire #%d) started", role, desire.seq,
                     extra={"event": "transition_start", "seq": desire.seq,
                            "source": desire.source})   # history's trigger column
            started = time.monotonic()
            try:
                outcome = engine.run(role)
                code, message = ExitCode.OK, outcome.message
            except Superseded:
                took = round(time.monotonic() - started, 4)
                log.info("transition to %s superseded by a newer desire", role,
                         extra={"event": "transition_end", "ok": False, "superseded": True,
                                "duration": took})
                _notify(cfg, role, "superseded", ExitCode.GENERIC, "superseded by a newer "
                        "desire", desire.seq, tid, desire.source, took)
                continue
            except HahooksError as exc:
                code, message = exc.exit_code, exc.one_line()
            # Desires of the same role that arrived meanwhile are satisfied by this run.
            newest = state.desire()
            seq = newest.seq if newest and newest.role == role else desire.seq
            state.record_done(seq, role, int(code), message)
            took = round(time.monotonic() - started, 4)
            log.log(logging.INFO if code == 0 else logging.ERROR,
                    "transition to %s %s: %s", role, "done" if code == 0 else "FAILED", message,
                    extra={"event": "transition_end", "ok": code == 0, "exit_code": int(code),
                           "seq": seq, "summary": message, "duration": took})
            _notify(cfg, role, "ok" if code == 0 else "failed", int(code), message, seq, tid,
                    desire.source, took)


def _notify(cfg: Config, role: str, outcome: str, code: int, message: str, seq: int,
            tid: str, trigger: str, took: float) -> None:
    """[notify]: started detached, so a slow mail server never holds the lock."""
    if not cfg.notify["commands"]:
        return
    from hahooks import notify

    notify.after_transition(cfg, notify.payload(
        cfg, role=role, outcome=outcome, exit_code=code, message=message, seq=seq,
        transition=tid, trigger=trigger, duration=took))


def follow_up(cfg: Config, state: StateDir) -> None:
    """After unlocking: a desire written while we held the lock may have found the lock
    taken and relied on us. Converge again if so."""
    while state.pending() is not None:
        lock = TransitionLock(state)
        if not lock.try_acquire():
            return  # the holder converges, or (a --detach caller) starts a worker that does
        try:
            converge(cfg, state)
        finally:
            lock.release()


def worker(cfg: Config) -> int:
    """The detached converger: wait for the lock, converge, follow up, exit."""
    state = StateDir(cfg.node.state_dir).prepare()
    converge_locked(cfg, state)
    follow_up(cfg, state)
    done = state.done() or {}
    return int(done.get("exit_code", 0))


def spawn_worker(config_path: str) -> int:
    """A detached worker in its own session: devd/freevrrpd/ucarp wait for the hook, not for
    it, and it must outlive the hook. Returns its PID."""
    import subprocess

    env = dict(os.environ)
    lib = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = lib + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen([sys.executable, "-m", "hahooks", "worker", "-q",
                             "-c", os.path.abspath(config_path)],   # the worker runs in /
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                            env=env, cwd="/")
    log.debug("started worker pid %d", proc.pid, extra={"event": "worker", "pid": proc.pid})
    return proc.pid

