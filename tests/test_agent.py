"""`hahooks agent`, the optional warm converger (agent.py): it takes a desire the moment it
is recorded, and its failure never costs a transition: a killed or stopped agent means the
hook converges itself, within the same lock and desire protocol, and nothing runs twice."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import hahooks_env, pid_alive
from core_support import Stack, assert_no_overlap, converged
from hahooks import agent, waits
from hahooks.state import Desire, StateDir

Desire0 = Desire(0, "")


@pytest.fixture
def stack(tmp_path, write_config):
    return Stack(tmp_path, write_config)


@pytest.fixture
def resident(stack):
    """A running `hahooks agent` in its own process group (its convergers are in it too);
    killed by that group's id afterwards, continued first in case a test stopped it."""
    proc = subprocess.Popen([sys.executable, "-m", "hahooks", "agent", "-q", "-c",
                             stack.config], env=hahooks_env(), start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    state = StateDir(stack.state_dir)
    try:
        waits.wait_for(lambda: os.path.isdir(stack.state_dir) and agent.alive(state), 60,
                       "the agent to hold agent.lock")
        yield proc
    finally:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        proc.communicate(timeout=30)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def handed_over(hook: subprocess.CompletedProcess) -> bool:
    """The detached hook left its desire to the agent: taken by its converger, or found the
    lock already held (by that converger, faster than the hook's look at the lock)."""
    return "worker started" not in hook.stdout and (
        "the agent's converger" in hook.stdout or "running transition will" in hook.stdout)


def convergers(stack: Stack) -> set[int]:
    """The PIDs of the convergers the agent forked (its log records)."""
    return {rec["pid"] for rec in stack.json_records(event="agent_fork")}


def test_the_agent_takes_detached_desires_and_leaves_waiting_ones(stack, resident):
    for role in ("master", "slave"):
        r = stack.hahooks(role, "--detach")
        assert r.returncode == 0, r.stderr
        assert handed_over(r), r.stdout
        done = converged(stack)
        assert done["role"] == role and done["exit_code"] == 0
    # the commands ran in the agent's forked convergers, never in a worker
    assert {e["ppid"] for e in stack.trace()} <= convergers(stack) and not stack.held()
    r = stack.hahooks("master")    # --wait: its own converge (in the lane's child), no converger
    assert r.returncode == 0, r.stderr
    assert [e["ppid"] for e in stack.trace()][-1] not in convergers(stack)
    assert stack.steps() == ["acquire a", "acquire b", "acquire c",
                             "release c", "release b", "release a",
                             "acquire a", "acquire b", "acquire c"]
    assert_no_overlap(stack.trace())


def agent_mid_transition(stack: Stack, resident) -> dict:
    """A detached master taken by the agent, its converger stuck in b's acquire, and a
    `master --wait` caller (Heartbeat, OCF) waiting behind it. Returns b's trace record
    and the waiting caller."""
    stack.mark("b", "block")                   # b's first acquire waits for b.gate
    r = stack.hahooks("master", "--detach")
    assert r.returncode == 0 and handed_over(r), r.stdout
    waits.wait_for(lambda: "acquire b" in stack.steps(), 60, "b's acquire to start")
    enter = [e for e in stack.trace() if e["name"] == "b"][0]
    assert parent_of(enter["ppid"]) == resident.pid
    return {"converger": enter["ppid"], "orphan": enter["pid"],
            "waiter": stack.popen("master", "--wait")}


def test_agent_sigkilled_mid_transition_the_waiting_hook_completes_it(stack, resident):
    mid = agent_mid_transition(stack, resident)
    waits.wait_for(lambda: (StateDir(stack.state_dir).desire() or Desire0).seq == 2, 60,
                   "the waiting caller's desire")
    os.killpg(resident.pid, signal.SIGKILL)    # the agent and its converger
    out, err = mid["waiter"].communicate(timeout=120)
    assert mid["waiter"].returncode == 0, err
    assert out.strip() == "master: 3 layer(s) held (2 acquired now, 1 already)"
    assert not pid_alive(mid["converger"]) and not pid_alive(mid["orphan"])   # reaped
    assert stack.held() == ["a", "b", "c"]
    # b's killed attempt is redone once by the waiting caller; nothing else ran twice
    assert stack.steps() == ["acquire a", "acquire b", "acquire b", "acquire c"]
    # no agent now: a detached event starts a worker, as without one
    r = stack.hahooks("slave", "--detach")
    assert r.returncode == 0 and "worker started" in r.stdout, r.stdout
    assert converged(stack)["role"] == "slave" and stack.held() == []


def test_agent_sigstopped_mid_transition_the_hooks_go_on_without_it(stack, resident):
    mid = agent_mid_transition(stack, resident)
    os.kill(resident.pid, signal.SIGSTOP)      # the agent hangs; its converger goes on
    stack.mark("b", "gate")
    out, err = mid["waiter"].communicate(timeout=120)
    assert mid["waiter"].returncode == 0, err
    assert stack.held() == ["a", "b", "c"]
    # the next event finds the agent silent and starts a worker instead
    r = stack.hahooks("slave", "--detach")
    assert r.returncode == 0 and "worker started" in r.stdout, r.stdout
    assert converged(stack)["seq"] == 3 and stack.held() == []
    assert [rec["seq"] for rec in stack.json_records(event="agent_silent")] == [3]
    os.kill(resident.pid, signal.SIGCONT)      # back: it converges nothing a second time
    r = stack.hahooks("master", "--detach")
    assert r.returncode == 0 and handed_over(r), r.stdout
    assert converged(stack)["seq"] == 4 and stack.held() == ["a", "b", "c"]
    assert {e["ppid"] for e in stack.trace()[-6:]} <= convergers(stack)
    assert stack.steps() == ["acquire a", "acquire b", "acquire c",
                             "release c", "release b", "release a",
                             "acquire a", "acquire b", "acquire c"]
    assert_no_overlap(stack.trace())


def test_a_second_agent_on_the_same_state_dir_refuses(stack, resident):
    r = stack.hahooks("agent")
    assert r.returncode == 1 and "another agent serves" in r.stderr
    assert resident.poll() is None


def live_children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and pid_alive(int(entry)):
            try:
                if parent_of(int(entry)) == pid:
                    out.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    return out


def test_a_storm_of_detached_events_one_converger_at_a_time_ends_in_the_newest(stack,
                                                                               resident):
    env = hahooks_env(LAYER_SLEEP="0.05")      # each command takes a while: events overlap
    hooks = [stack.popen(role, "--detach", env=env) for role in ["master", "slave"] * 6]
    most = 0
    while any(h.poll() is None for h in hooks) or StateDir(stack.state_dir).pending():
        most = max(most, len(live_children(resident.pid)))
    for h in hooks:
        out, err = h.communicate(timeout=60)
        assert h.returncode == 0, err
    done = converged(stack)
    newest = StateDir(stack.state_dir).desire()
    assert (done["role"], done["seq"], done["exit_code"]) == (newest.role, 12, 0)
    assert stack.held() == (["a", "b", "c"] if newest.role == "master" else [])
    assert most <= 1, f"{most} convergers alive at once"
    assert_no_overlap(stack.trace())


def test_the_agent_reads_an_edited_config_at_the_next_event(stack, resident):
    """Its convergers load the config afresh: a layer added while the agent runs is walked
    at the next event, not after a restart."""
    with open(stack.config, "a") as fh:
        fh.write(stack.layer_toml("d"))
    stack.names.append("d")
    r = stack.hahooks("master", "--detach")
    assert r.returncode == 0 and handed_over(r), r.stdout
    assert converged(stack)["exit_code"] == 0
    assert stack.held() == ["a", "b", "c", "d"]
    assert {e["ppid"] for e in stack.trace()} <= convergers(stack)


def test_the_fault_matrix_finds_the_converger_mid_transition_never_the_agent(stack,
                                                                             resident):
    """The drill's warm trials SIGKILL the transition under way (lab/drill/warm.py): the
    agent's converger and a hook converging itself, never the agent (killing it stops no
    transition, and the next events would no longer be warm)."""
    from hahooks.lab.drill import warm

    mid = agent_mid_transition(stack, resident)
    # the waiting caller was just started: its command line shows once it has exec'd
    found = waits.wait_for(lambda: (lambda f: f if mid["waiter"].pid in f else None)(
        warm.transition_pids(stack.config)), 60, "the waiting caller to show")
    assert found.get(mid["converger"]) == "the agent's converger", found
    assert found.get(mid["waiter"].pid) == "master", found
    assert resident.pid not in found and mid["orphan"] not in found, found
    stack.mark("b", "gate")
    out, err = mid["waiter"].communicate(timeout=120)
    assert mid["waiter"].returncode == 0, err
    waits.wait_for(lambda: not warm.transition_pids(stack.config), 60,
                   "the converger and the caller to exit")
    assert pid_alive(resident.pid)             # the agent serves on


def test_the_doorbell_never_blocks_and_touches_nothing_but_a_fifo(tmp_path):
    """handover.ring: a hook's wake-up for the agent (the same on Linux and FreeBSD). No
    bell or no reader (no agent): nothing happens, at once. Something planted in its place
    that is not a FIFO is never written. A reader gets the byte."""
    from hahooks import handover
    from hahooks.state import AGENT_BELL

    state = StateDir(str(tmp_path / "state")).prepare()
    bell = os.path.join(state.path, AGENT_BELL)
    assert handover.ring(state) is False and not os.path.exists(bell)
    os.mkfifo(bell, 0o600)
    assert handover.ring(state) is False                    # a FIFO nobody reads: ENXIO
    reader = os.open(bell, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert handover.ring(state) is True
        assert os.read(reader, 10) == b"!"
    finally:
        os.close(reader)
    os.unlink(bell)
    with open(bell, "w") as fh:
        fh.write("planted\n")
    assert handover.ring(state) is False
    assert open(bell).read() == "planted\n"


def test_the_agent_makes_its_bell_a_fifo_whatever_was_there(stack, tmp_path):
    """A regular file left at agent.bell (not the agent's) is replaced by the FIFO, and a
    detached hook's ring then reaches the agent: handed over within ACK_WAIT, although
    the agent would look on its own only every POLL (0.5 s) s."""
    import stat

    from hahooks.state import AGENT_BELL

    os.makedirs(stack.state_dir, mode=0o700, exist_ok=True)
    bell = os.path.join(stack.state_dir, AGENT_BELL)
    with open(bell, "w") as fh:
        fh.write("stale\n")
    proc = subprocess.Popen([sys.executable, "-m", "hahooks", "agent", "-q", "-c",
                             stack.config], env=hahooks_env(), start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        waits.wait_for(lambda: agent.alive(StateDir(stack.state_dir)), 60, "the agent")
        # its lock comes a moment before the bell (only the lock's holder may replace it)
        waits.wait_for(lambda: stat.S_ISFIFO(os.lstat(bell).st_mode), 10, "the bell")
        r = stack.hahooks("master", "--detach")
        assert r.returncode == 0 and handed_over(r), r.stdout
        assert converged(stack)["role"] == "master"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
