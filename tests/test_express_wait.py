"""The express lane for callers that wait (express_wait.py: `master|slave [--wait]`,
`heartbeat [CONFIG] start|stop`): the agent's child runs the call with the library loaded
while the hook follows it, forwards SIGTERM/SIGINT and, if the child dies after recording
the desire, converges that desire itself. Real agents, real hooks, the core stack."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import hahooks_env, pid_alive
from core_support import assert_no_overlap, converged
from hahooks import express_wait, waits
from test_agent import parent_of, resident, stack  # noqa: F401 (fixtures)
from test_express import assert_lean_hook, lane, requests_left, seq  # noqa: F401 (fixtures)


@pytest.mark.parametrize("argv, parsed", [
    (["master"], ("", ["master"], "master")),
    (["slave", "--wait", "-q", "-c", "/x.toml", "--source", "me"],
     ("/x.toml", ["slave", "--wait", "-q", "--source", "me", "-c", "/x.toml"], "slave")),
    (["master", "--config=/x.toml", "--source=pcs"],
     ("/x.toml", ["master", "--source=pcs", "-c", "/x.toml"], "master")),
    (["heartbeat", "start"], ("", ["heartbeat", "start"], "master")),
    (["heartbeat", "/etc/h.toml", "stop"],
     ("/etc/h.toml", ["heartbeat", "-c", "/etc/h.toml", "stop"], "slave")),
    (["heartbeat", "-v", "-c", "/etc/h.toml", "start"],
     ("/etc/h.toml", ["heartbeat", "-v", "-c", "/etc/h.toml", "start"], "master")),
    (["heartbeat", "status"], None),                  # read-only: the normal path
    (["heartbeat", "/etc/h.toml", "-c", "/x.toml", "start"], None),    # config twice
    (["heartbeat", "x.toml", "start"], None),         # relative: the parser's error
    (["heartbeat", "/a b.toml", "start"], None),      # blanks: the parser's error
    (["heartbeat", "/a\x01.toml", "start"], None),    # a control character: the same
    (["heartbeat", "a", "b", "start"], None),
    (["heartbeat", "--source", "x", "start"], None),
    (["master", "--detach"], None),                   # express.parse's
    (["master", "--dry-run"], None),
    (["master", "-c", "x.toml"], None),               # relative (the child runs in /)
    (["master", "-c"], None),
    (["master", "extra"], None),
    (["master", "--source", "a\tb"], None),
    (["status"], None),
])
def test_which_waiting_calls_take_the_express_lane(argv, parsed, monkeypatch):
    monkeypatch.setenv("HAHOOKS_CONFIG", "/default.toml")
    if parsed and not parsed[0]:
        parsed = ("/default.toml", *parsed[1:])
    assert express_wait.parse(argv) == parsed


def express_runs(stack) -> list[int]:
    """The PIDs of the children the agent forked for calls from the express lane."""
    return [rec["pid"] for rec in stack.json_records(event="express_run")]


def test_a_waiting_call_runs_in_the_agents_child_and_returns_its_outcome(stack, lane):
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "hahooks", "master", "-c",
                        stack.config], capture_output=True, text=True, env=hahooks_env(),
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "master: 3 layer(s) held (3 acquired now, 0 already)\n", r.stdout
    assert_lean_hook(r.stderr)
    [child] = express_runs(stack)
    assert {e["ppid"] for e in stack.trace()} == {child}     # the child ran the commands
    [desire] = stack.json_records(event="desire")
    assert desire["via"] == "express" and desire["detach"] is False
    assert stack.held() == ["a", "b", "c"] and requests_left(stack) == []
    # stop = slave --wait, the same way; status stays on the normal path
    hb = [sys.executable, "-m", "hahooks", "heartbeat", "-c", stack.config]
    r = subprocess.run(hb + ["stop"], capture_output=True, text=True, env=hahooks_env())
    assert r.returncode == 0 and stack.held() == [], (r.stdout, r.stderr)
    assert len(express_runs(stack)) == 2
    r = subprocess.run(hb + ["status"], capture_output=True, text=True, env=hahooks_env())
    assert r.stdout == "stopped\n" and len(express_runs(stack)) == 2
    assert seq(stack) == 2 and requests_left(stack) == []


def test_a_failing_step_gives_the_same_exit_code_and_one_line_as_without_the_lane(stack,
                                                                                  lane):
    stack.mark("b", "fail-acquire")
    r = stack.hahooks("master")
    assert r.returncode == 1 and len(express_runs(stack)) == 1, r.stderr
    normal = stack.hahooks("master", env=hahooks_env(HAHOOKS_EXPRESS="0"))
    assert normal.returncode == 1 and len(express_runs(stack)) == 1
    assert r.stderr.splitlines()[-1] == normal.stderr.splitlines()[-1]
    assert "acquire b failed" in r.stderr.splitlines()[-1] and "Traceback" not in r.stderr
    assert stack.held() == [] and requests_left(stack) == []


@pytest.fixture
def blocked(stack, lane):
    """A `master` caller through the lane whose child is stuck in b's acquire: (the hook,
    the child's PID). Afterwards b's gate opens, whatever the test did, so b's blocked
    command (in its own process group: no signal to the child reaches it) ends too."""
    stack.mark("b", "block")
    hook = stack.popen("master")
    try:
        waits.wait_for(lambda: "acquire b" in stack.steps(), 60, "b's acquire to start")
        [child] = express_runs(stack)
        assert [e["ppid"] for e in stack.trace() if e["name"] == "b"] == [child]
        assert pid_alive(child) and hook.poll() is None
        yield hook, child
    finally:
        stack.mark("b", "gate")
        if hook.poll() is None:
            hook.kill()
        hook.communicate(timeout=60)
        for enter in [e for e in stack.trace() if e["name"] == "b" and e["event"] == "enter"]:
            waits.wait_for(lambda: not pid_alive(enter["pid"]), 60, "b's acquire to end")


def test_sigterm_to_the_waiting_hook_ends_its_child_and_then_itself(stack, blocked):
    hook, child = blocked
    hook.send_signal(signal.SIGTERM)
    hook.communicate(timeout=60)
    assert hook.returncode == -signal.SIGTERM         # as the call without the lane
    waits.wait_for(lambda: not pid_alive(child), 30, "the child to end")
    assert not stack.json_records(event="express_resumed")
    stack.mark("b", "gate")
    r = stack.hahooks("master")           # nothing is left locked: the next call goes on
    assert r.returncode == 0 and stack.held() == ["a", "b", "c"], r.stderr
    assert_no_overlap(stack.trace())


def test_sigint_to_the_waiting_hook_interrupts_its_child(stack, blocked):
    hook, child = blocked
    hook.send_signal(signal.SIGINT)
    out, err = hook.communicate(timeout=60)
    assert hook.returncode == 1 and err.splitlines()[-1] == "hahooks: interrupted", err
    assert not pid_alive(child)


def test_a_child_killed_after_its_claim_is_converged_by_the_waiting_hook(stack, blocked):
    hook, child = blocked
    os.kill(child, signal.SIGKILL)
    stack.mark("b", "gate")
    out, err = hook.communicate(timeout=120)
    assert hook.returncode == 0, err
    assert out.startswith("master: 3 layer(s) held ("), (out, err)
    [resumed] = stack.json_records(event="express_resumed")
    assert resumed["role"] == "master" and resumed["pid"] == hook.pid
    assert seq(stack) == 1                          # recorded once, by the child
    assert stack.held() == ["a", "b", "c"] and requests_left(stack) == []
    # the killed child's b (its command outlived it) was waited for, not run beside
    steps = stack.steps()
    assert steps.count("acquire a") == steps.count("acquire c") == 1, steps
    assert_no_overlap(stack.trace())


def test_a_killed_waiting_hook_leaves_its_child_to_finish(stack, blocked):
    hook, child = blocked
    hook.kill()
    hook.communicate(timeout=60)
    stack.mark("b", "gate")
    waits.wait_for(lambda: not pid_alive(child), 60, "the child to finish")
    assert converged(stack)["role"] == "master" and stack.held() == ["a", "b", "c"]
    assert seq(stack) == 1 and parent_of(os.getpid()) != child
