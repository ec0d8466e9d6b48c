"""Turning a desire into a converged stack: record, lock, converge (latest wins), detach.

Every `master`/`slave` call records its desire with a sequence number. Whoever holds the
transition lock converges to the *newest* desire, checking between steps whether a newer
one with another role arrived. `--detach` records and makes sure a worker will see it:
if the lock is free it starts one; if not, the lock holder re-reads the desire after it
unlocks (the desire was written before our lock test), so nothing is lost and a storm of
events never starts a storm of workers.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid

from hahooks import logs
from hahooks.config import Config
from hahooks.errors import ExitCode, HahooksError, Superseded
from hahooks.state import StateDir, TransitionLock

log = logging.getLogger("hahooks.transition")


def request(cfg: Config, role: str, *, detach: bool, source: str = "") -> tuple[int, str]:
    state = StateDir(cfg.node.state_dir).prepare()
    desire = state.record_desire(role, source)
    log.debug("recorded desire %s #%d", role, desire.seq,
              extra={"event": "desire", "seq": desire.seq, "role": role, "source": source})
    lock = TransitionLock(state)
    if detach:
        if lock.held_elsewhere():
            return 0, f"{role} #{desire.seq} recorded; the running transition will converge to it"
        spawn_worker(cfg.path)
        return 0, f"{role} #{desire.seq} recorded; worker started"
    lock.acquire(cfg.node.wait_timeout)
    try:
        converge(cfg, state)
    finally:
        lock.release()
    follow_up(cfg, state)
    done = state.done() or {}
    if done.get("seq", 0) < desire.seq:
        return ExitCode.GENERIC, f"{role} #{desire.seq} not converged"
    if done.get("role") != role:
        return ExitCode.GENERIC, (f"{role} #{desire.seq} superseded by a newer "
                                  f"{done.get('role')} request #{done.get('seq')}")
    return done["exit_code"], done["message"]


def converge(cfg: Config, state: StateDir) -> None:
    """Run while holding the lock: converge to the newest desire until none is pending."""
    from hahooks.engine import Engine
    from hahooks.runner import Runner

    while True:
        desire = state.desire()
        done = state.done()
        if desire is None or (done and done.get("seq", 0) >= desire.seq):
            return
        role = desire.role

        def superseded(role=role) -> bool:
            newest = state.desire()
            return newest is not None and newest.role != role

        runner = make_runner(cfg)
        engine = Engine(cfg, runner, superseded=superseded)
        tid = f"{desire.seq}-{uuid.uuid4().hex[:6]}"
        with logs.context(transition=tid, role=role):
            log.info("transition to %s (desire #%d) started", role, desire.seq,
                     extra={"event": "transition_start", "seq": desire.seq})
            try:
                outcome = engine.run(role)
                code, message = ExitCode.OK, outcome.message
            except Superseded:
                log.info("transition to %s superseded", role, extra={"event": "transition_end",
                                                                     "ok": False})
                continue
            except HahooksError as exc:
                code, message = exc.exit_code, exc.one_line()
            # Desires of the same role that arrived meanwhile are satisfied by this run.
            newest = state.desire()
            seq = newest.seq if newest and newest.role == role else desire.seq
            state.record_done(seq, role, int(code), message)
            log.log(logging.INFO if code == 0 else logging.ERROR,
                    "transition to %s %s: %s", role, "done" if code == 0 else "FAILED", message,
                    extra={"event": "transition_end", "ok": code == 0, "exit_code": int(code)})


def follow_up(cfg: Config, state: StateDir) -> None:
    """After unlocking: a desire written while we held the lock may have found the lock
    taken and relied on us. Converge again if so."""
    while True:
        desire, done = state.desire(), state.done()
        if desire is None or (done and done.get("seq", 0) >= desire.seq):
            return
        lock = TransitionLock(state)
        if not lock.try_acquire():
            return  # someone else holds it now and will do the same check after unlocking
        try:
            converge(cfg, state)
        finally:
            lock.release()


def worker(cfg: Config) -> int:
    state = StateDir(cfg.node.state_dir).prepare()
    lock = TransitionLock(state)
    lock.acquire(cfg.node.wait_timeout)
    try:
        converge(cfg, state)
    finally:
        lock.release()
    follow_up(cfg, state)
    return 0


def spawn_worker(config_path: str) -> None:
    """A detached worker in its own session: devd/freevrrpd/ucarp wait for the hook, not it."""
    env = dict(os.environ)
    lib = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = lib + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    subprocess.Popen([sys.executable, "-m", "hahooks", "worker", "-c", config_path],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                     env=env, cwd="/")


def make_runner(cfg: Config, dry_run: bool = False):
    from hahooks.runner import Runner

    return Runner(cfg.node.platform, dry_run=dry_run, tool_paths=cfg.node.paths,
                  search_dirs=cfg.node.search_path, default_timeout=cfg.node.command_timeout)
