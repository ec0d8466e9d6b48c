"""Concurrency: the desire log, the transition lock, detached workers, killed transitions."""
from __future__ import annotations

import concurrent.futures
import os
import random
import signal
import subprocess
import sys

import pytest

from core_support import Stack, assert_no_overlap, converged
from conftest import hahooks_env, pid_alive
from hahooks import waits
from hahooks.state import StateDir, TransitionLock


def test_detach_returns_before_the_transition_ends(tmp_path, write_config):
    stack = Stack(tmp_path, write_config)
    stack.mark("b", "block")       # b's acquire waits for b.gate, created below
    r = stack.hahooks("master", "--detach")
    assert r.returncode == 0, r.stderr
    assert "worker started" in r.stdout
    # The hook has returned; b cannot have finished since its gate does not exist yet.
    assert "exit" not in [e["event"] for e in stack.trace() if e["name"] == "b"]
    assert not stack.is_held("c")
    stack.mark("b", "gate")
    done = converged(stack)
    assert done["role"] == "master" and done["exit_code"] == 0
    assert stack.held() == ["a", "b", "c"]
    # a worker, not the hook (which has exited), ran the commands
    assert len({e["ppid"] for e in stack.trace()}) == 1


def test_detach_while_a_transition_runs_hands_over_to_it(tmp_path, write_config):
    stack = Stack(tmp_path, write_config)
    stack.mark("a", "block")
    first = stack.hahooks("master", "--detach")
    assert first.returncode == 0
    waits.wait_for(lambda: "acquire a" in stack.steps(), 30, "a's acquire to start")
    second = stack.hahooks("slave", "--detach")
    assert second.returncode == 0
    assert "running transition will converge" in second.stdout
    stack.mark("a", "gate")
    done = converged(stack)
    assert done["role"] == "slave" and done["seq"] == 2 and done["exit_code"] == 0
    assert stack.held() == []
    assert stack.steps() == ["acquire a", "release a"]   # b and c were never acquired


def test_status_probes_never_make_a_pending_desire_wait_for_nobody(tmp_path, write_config):
    """A converger that unlocks checks for a desire recorded meanwhile and converges it if
    the lock is free. Probes (`status`, the drill) must not take the transition lock, or
    that check could find the lock held by a probe and leave the desire to nobody."""
    from hahooks import config, transition

    stack = Stack(tmp_path, write_config, names=("a",))
    cfg = config.load(stack.config)
    state = StateDir(stack.state_dir).prepare()
    # probes in other processes, as `hahooks status` runs beside a transition
    probe_code = ("import sys\nfrom hahooks.state import StateDir, TransitionLock\n"
                  f"state = StateDir({stack.state_dir!r})\n"
                  "while True:\n    TransitionLock(state).held_elsewhere()\n")
    probers = [subprocess.Popen([sys.executable, "-c", probe_code], env=hahooks_env())
               for _ in range(2)]
    try:
        for i in range(40):
            holder = TransitionLock(state)
            holder.acquire(10)
            role = "master" if i % 2 == 0 else "slave"
            desire = state.record_desire(role, "a --detach that found the lock taken")
            holder.release()
            transition.follow_up(cfg, state)
            assert state.pending() is None, f"desire #{desire.seq} left to nobody"
            assert stack.held() == (["a"] if role == "master" else [])
    finally:
        for p in probers:
            p.kill()
            p.wait()


@pytest.mark.parametrize("detach_share", [0.5])
def test_storm_of_concurrent_requests_ends_in_the_newest_role(tmp_path, write_config,
                                                              detach_share):
    """200 random master/slave requests from many processes at once, half --detach, half
    --wait: transitions never overlap and the stack ends in the newest recorded role."""
    stack = Stack(tmp_path, write_config, names=("a", "b"))
    rng = random.Random(20261122)
    events = [(rng.choice(["master", "slave"]),
               "--detach" if rng.random() < detach_share else "--wait") for _ in range(200)]
    env = hahooks_env(LAYER_SLEEP="0.01")

    def fire(event):
        role, mode = event
        r = stack.hahooks(role, mode, "-q", env=env, timeout=600)
        return role, mode, r.returncode, r.stdout + r.stderr

    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(fire, events))

    for role, mode, code, out in results:
        if mode == "--detach":
            assert code == 0, out
        else:   # done, or overtaken by a newer request for the other role
            assert code == 0 or (code == 1 and "superseded by a newer" in out), out
    done = converged(stack)
    desire = StateDir(stack.state_dir).desire()
    assert desire.seq == 200
    assert done["seq"] == desire.seq and done["role"] == desire.role
    assert done["exit_code"] == 0
    want = ["a", "b"] if desire.role == "master" else []
    assert stack.held() == want
    trace = stack.trace()
    assert trace, "the storm changed nothing"
    assert_no_overlap(trace)
    # the engine's own records agree: each transition ends before the next one starts
    open_tid = None
    for rec in stack.json_records():
        if rec.get("event") == "transition_start":
            assert open_tid is None, f"{rec['transition']} started inside {open_tid}"
            open_tid = rec["transition"]
        elif rec.get("event") == "transition_end":
            assert rec["transition"] == open_tid
            open_tid = None


@pytest.mark.parametrize("mode", ["--wait", "--detach"])
def test_sigkill_mid_transition_then_rerun_converges(tmp_path, write_config, mode):
    stack = Stack(tmp_path, write_config)
    stack.mark("b", "block")       # the first acquire of b blocks forever (no gate)
    first = stack.popen("master", mode)
    waits.wait_for(lambda: "acquire b" in stack.steps(), 30, "b's acquire to start")
    enter = [e for e in stack.trace() if e["name"] == "b"][0]
    transition_pid, orphan_pid = enter["ppid"], enter["pid"]
    os.kill(transition_pid, signal.SIGKILL)
    first.communicate(timeout=30)
    waits.wait_for(lambda: not pid_alive(transition_pid), 30, "the transition to die")
    assert pid_alive(orphan_pid)       # its command is still running in its own group

    again = stack.hahooks("master")
    assert again.returncode == 0, again.stderr
    assert "left" in again.stderr and "running" in again.stderr   # the orphan warning
    assert not pid_alive(orphan_pid)
    assert stack.held() == ["a", "b", "c"]
    # a was held already; b is acquired again (the killed attempt never finished), then c
    assert stack.steps() == ["acquire a", "acquire b", "acquire b", "acquire c"]
    done = StateDir(stack.state_dir).done()
    assert done["role"] == "master" and done["exit_code"] == 0
    # and back: the state left behind is an ordinary one
    assert stack.hahooks("slave").returncode == 0 and stack.held() == []


def test_state_dir_refuses_symlinks_and_loose_permissions(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a",))
    os.makedirs(stack.state_dir, mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("")
    os.symlink(target, os.path.join(stack.state_dir, "transition.lock"))
    r = stack.hahooks("master")
    assert r.returncode == 4 and "symlink" in r.stderr
    assert stack.trace() == [] and target.read_text() == ""
    os.unlink(os.path.join(stack.state_dir, "transition.lock"))
    os.chmod(stack.state_dir, 0o777)
    r = stack.hahooks("master")
    assert r.returncode == 4 and "writable by group or others" in r.stderr
    assert stack.trace() == []
    os.rmdir(stack.state_dir)
    os.symlink(tmp_path / "elsewhere-dir", stack.state_dir)
    os.mkdir(tmp_path / "elsewhere-dir", 0o700)
    r = stack.hahooks("master")
    assert r.returncode == 4 and "state dir is a symlink" in r.stderr
    assert stack.trace() == []


def test_wait_reports_failure_of_its_own_transition(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a", "b"))
    stack.mark("b", "fail-acquire")
    r = stack.hahooks("master", "--wait")
    assert r.returncode == 1 and "acquire b failed" in r.stderr
    done = StateDir(stack.state_dir).done()
    assert done["exit_code"] == 1 and done["role"] == "master"


def test_orphan_found_by_its_token_when_the_kill_came_right_after_the_spawn(tmp_path):
    """The in-flight record is written before the spawn and holds no process group (a kill
    between the spawn and a later write would have lost it): the next transition finds the
    command's group by the token in its environment and ends it."""
    state = StateDir(str(tmp_path / "state")).prepare()
    state.command_started("4242.7", ["sleep", "600"])
    orphan = subprocess.Popen(["sleep", "600"], start_new_session=True,
                              env={**os.environ, "HAHOOKS_RUN": "4242.7"})
    decoy = subprocess.Popen(["sleep", "600"], start_new_session=True,
                             env={**os.environ, "HAHOOKS_RUN": "4242.8"})
    try:
        reaped = StateDir(str(tmp_path / "state")).reap_orphans(grace=1.0)
        assert reaped == [orphan.pid]
        assert orphan.wait(timeout=10) is not None
        assert decoy.poll() is None
    finally:
        for proc in (orphan, decoy):
            proc.kill()
            proc.wait()
