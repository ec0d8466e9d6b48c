"""The express lane for the daemons' own commands (devd-event, keepalived-notify,
ucarp-up/-down: express.WIRING): the agent runs them in a forked child with the library
loaded, and the desire is recorded by whichever of child and hook holds the request under
the desire lock, never by both."""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import hahooks_env
from core_support import converged
from hahooks import bell, express, waits
from hahooks.state import StateDir
from test_agent import resident, stack  # noqa: F401 (fixtures)
from test_express import (a_dead_pid, assert_lean_hook, lane,  # noqa: F401 (fixtures)
                          requests_left, seq)


@pytest.mark.parametrize("argv, config", [
    (["keepalived-notify", "INSTANCE", "VI_1", "MASTER", "-c", "/x.toml"], "/x.toml"),
    (["keepalived-notify", "-q", "INSTANCE", "VI_1", "BACKUP", "100"], ""),
    (["devd-event", "--detach", "--config=/x.toml", "CARP", "1@em0", "MASTER"], "/x.toml"),
    (["ucarp-up", "-v", "--prefix", "24", "eth0", "10.0.0.1", "-c", "/x.toml"], "/x.toml"),
    (["ucarp-down", "eth0", "10.0.0.1", "--prefix=24"], ""),
    (["devd-event", "--wait", "CARP", "1@em0", "MASTER"], None),    # converges itself
    (["devd-event", "--explain", "CARP", "1@em0", "MASTER"], None),
    (["ucarp-up", "--vip", "eth0", "10.0.0.1"], None),     # changes the address first
    (["keepalived-notify", "INSTANCE", "VI_1", "MASTER", "-c", "x.toml"], None),  # relative
    (["keepalived-notify", "INSTANCE", "VI\t1", "MASTER"], None),
    (["keepalived-notify", "--conf", "/x.toml", "INSTANCE", "VI_1", "MASTER"], None),
    (["keepalived-notify", "-h"], None),
    (["keepalived-notify", "INSTANCE", "VI_1", "MASTER", "-c"], None),
    (["heartbeat", "start"], None),
    (["keepalived-notify"], None),
])
def test_which_daemon_commands_take_the_express_lane(argv, config, monkeypatch):
    monkeypatch.delenv("HAHOOKS_CONFIG", raising=False)
    assert express.parse_wiring(argv) == (config or express.default_config()
                                          if config is not None else None)


def run_hook(stack, *argv, importtime=False) -> subprocess.CompletedProcess:
    extra = ["-X", "importtime"] if importtime else []
    return subprocess.run([sys.executable, *extra, "-m", "hahooks", *argv, "-c", stack.config],
                          capture_output=True, text=True, env=hahooks_env(), timeout=120)


def test_a_daemons_event_runs_in_the_agent_without_the_hook_loading_the_library(stack, lane):
    r = run_hook(stack, "keepalived-notify", "INSTANCE", "VI_1", "MASTER", importtime=True)
    assert r.returncode == 0, r.stderr
    assert "master #1 recorded; the agent's converger" in r.stdout, r.stdout
    assert_lean_hook(r.stderr)
    assert converged(stack)["role"] == "master" and stack.held() == ["a", "b", "c"]
    [record] = stack.json_records(event="desire")
    assert record["via"] == "express" and record["hook"] != lane.pid
    assert record["source"] == "keepalived INSTANCE VI_1 MASTER"
    assert stack.json_records(event="express_run")
    r = run_hook(stack, "devd-event", "CARP", "1@em0", "BACKUP")
    assert r.returncode == 0 and "slave #2 recorded" in r.stdout, (r.stdout, r.stderr)
    assert converged(stack)["role"] == "slave" and stack.held() == []
    assert requests_left(stack) == []


def test_bad_input_through_the_lane_is_the_same_one_line_error_and_records_nothing(stack,
                                                                                    lane):
    r = run_hook(stack, "devd-event", "CARP", "bad", "MASTER")
    normal = subprocess.run([sys.executable, "-m", "hahooks", "devd-event", "CARP", "bad",
                             "MASTER", "-c", stack.config], capture_output=True, text=True,
                            env=dict(hahooks_env(), HAHOOKS_EXPRESS="0"))
    assert (r.returncode, r.stdout, r.stderr) == (normal.returncode, normal.stdout,
                                                  normal.stderr)
    assert r.returncode == 2 and "subsystem" in r.stderr and len(r.stderr.splitlines()) == 1
    assert stack.json_records(event="express_run")     # the agent's child answered it
    r = run_hook(stack, "keepalived-notify", "INSTANCE", "VI_1", "SOMETHING")
    assert r.returncode == 2 and "STATE" in r.stderr, r.stderr
    assert seq(stack) == 0 and requests_left(stack) == []


def test_a_stopped_agent_costs_nothing_and_never_replays_the_event(stack, lane):
    os.kill(lane.pid, signal.SIGSTOP)
    r = run_hook(stack, "devd-event", "CARP", "1@em0", "MASTER")
    assert r.returncode == 0 and "worker started" in r.stdout, (r.stdout, r.stderr)
    assert converged(stack)["role"] == "master" and seq(stack) == 1
    assert requests_left(stack) == []              # withdrawn under the desire lock
    os.kill(lane.pid, signal.SIGCONT)
    r = run_hook(stack, "ucarp-down", "eth0", "10.99.0.10")    # the agent is back
    assert r.returncode == 0 and "the agent's converger" in r.stdout, (r.stdout, r.stderr)
    assert converged(stack)["role"] == "slave" and seq(stack) == 2 and stack.held() == []
    assert [d["seq"] for d in stack.json_records(event="desire")] == [1, 2]


def drop_wiring_request(stack, pid: int, *words: str) -> str:
    """A WIRING request as express.request_wiring writes it, then the bell."""
    st = os.stat(stack.config)
    base = os.path.join(stack.state_dir, express.REQUESTS, f"{time.monotonic_ns():020d}-{pid}")
    with open(base + ".new", "w") as fh:
        fh.write("\t".join((repr(time.time()), express.ARGV, str(pid),
                            os.path.abspath(stack.config), f"{st.st_dev}:{st.st_ino}",
                            *words)) + "\n")
    os.rename(base + ".new", base + ".req")
    assert bell.ring(stack.state_dir)
    return base


def answer(base: str) -> list[str]:
    with open(base + ".ans") as fh:
        return fh.read().rstrip("\n").split("\t")


def run_wiring_in_a_child(stack, base: str, words: list[str], *, withdraw: bool) -> int:
    """Spool.run_wiring as the agent's child runs it, in a child of the test; with
    `withdraw`, the test holds the desire lock from before the fork until it has removed
    the request, as express._withdraw does: the child's claim comes after, whatever its
    speed. Its exit status."""
    from hahooks import config as config_mod, spool as spool_mod
    from hahooks.state import StateDir

    state = StateDir(stack.state_dir).prepare()
    spool = spool_mod.Spool(stack.config, state, config_mod.load(stack.config))
    from hahooks import cli

    spool.parser = cli.build_parser("wiring")
    lock = os.open(os.path.join(stack.state_dir, express.DESIRE_LOCK), os.O_RDWR | os.O_CREAT)
    try:
        if withdraw:
            fcntl.flock(lock, fcntl.LOCK_EX)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(lock)
                code = spool.run_wiring(base, words, time.time(), os.getppid())
            finally:
                os._exit(code)
        if withdraw:
            time.sleep(0.2)
            assert express.unlinked(base + ".req")
    finally:
        os.close(lock)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_the_child_records_only_a_request_it_claims(stack):
    """The race the claim closes: the child reaches record_desire after its hook gave up
    waiting and withdrew the request (and records the desire itself)."""
    words = ["keepalived-notify", "INSTANCE", "VI_1", "MASTER"]
    os.makedirs(os.path.join(stack.state_dir, express.REQUESTS), mode=0o700, exist_ok=True)
    base = os.path.join(stack.state_dir, express.REQUESTS, "1-1")
    open(base + ".req", "w").close()
    assert run_wiring_in_a_child(stack, base, words, withdraw=True) == 0
    assert seq(stack) == 0 and not stack.json_records(event="desire")
    assert stack.json_records(event="express_withdrawn")
    assert not os.path.exists(base + ".ans")           # nobody to answer
    open(base + ".req", "w").close()
    assert run_wiring_in_a_child(stack, base, words, withdraw=False) == 0
    assert seq(stack) == 1 and answer(base) == [express.DONE, "0"]
    assert not os.path.exists(base + ".req")          # claimed in the step that recorded
    with open(base + ".out") as fh:
        assert "master #1 recorded" in fh.read()
    [record] = stack.json_records(event="desire")
    assert record["via"] == "express" and record["hook"] == os.getpid()
    assert converged(stack)["role"] == "master"       # no agent: the child started a worker


def test_a_call_for_another_config_or_a_gone_hook_is_not_run(stack, lane, tmp_path):
    base = drop_wiring_request(stack, os.getpid(), "devd-event", "CARP", "1@em0", "MASTER",
                               "-c", str(tmp_path / "other.toml"))
    waits.wait_for(lambda: os.path.exists(base + ".ans") and
                   answer(base)[0] == express.DECLINED, 30, "the child to decline")
    assert not os.path.exists(base + ".req") and seq(stack) == 0
    base = drop_wiring_request(stack, a_dead_pid(), "devd-event", "CARP", "1@em0", "MASTER")
    waits.wait_for(lambda: not os.path.exists(base + ".req"), 30, "the agent to drop it")
    assert not os.path.exists(base + ".ans") and seq(stack) == 0
    assert stack.json_records(event="express_dropped")


def test_a_claimed_request_whose_child_goes_silent_is_converged_by_the_hook(stack, lane):
    """The child claimed the request (recorded the desire under the desire lock) and then
    went silent, and the agent with it: the hook, finding its request gone and no answer
    within RUN_WAIT, starts a worker (transition.ensure_converging) rather than record the
    event a second time. The test plays the child's claim, holding the lock the hook's
    withdrawal waits for, so the order is fixed whatever the machine's speed."""
    os.kill(lane.pid, signal.SIGSTOP)          # no answer, no converger from the agent
    try:
        lock = os.open(os.path.join(stack.state_dir, express.DESIRE_LOCK),
                       os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            hook = subprocess.Popen([sys.executable, "-m", "hahooks", "devd-event", "CARP",
                                     "1@em0", "MASTER", "-c", stack.config], text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=hahooks_env())
            [req] = waits.wait_for(lambda: requests_left(stack), 60, "the hook's request")
            time.sleep(0.2)         # past ACK_WAIT: the hook waits for the lock to withdraw
            path = os.path.join(stack.state_dir, express.REQUESTS, req)
            with open(path) as fh:
                at, _, pid = fh.read().split("\t")[:3]
            assert int(pid) == hook.pid
            StateDir(stack.state_dir).record_desire_locked("master", "devd CARP 1@em0 MASTER",
                                                           at=float(at), pid=hook.pid)
            assert express.unlinked(path)                     # the claim
        finally:
            os.close(lock)
        out, err = hook.communicate(timeout=120)
        assert hook.returncode == 0, err
        assert out == "the desire of a daemon's request recorded by the agent; " \
                      "worker started\n", (out, err)
        assert converged(stack)["role"] == "master" and stack.held() == ["a", "b", "c"]
        assert seq(stack) == 1                 # recorded once: by the "child", not the hook
        [silent] = stack.json_records(event="agent_silent")
        assert silent["role"] is None and requests_left(stack) == []
    finally:
        os.kill(lane.pid, signal.SIGCONT)
    r = run_hook(stack, "devd-event", "CARP", "1@em0", "BACKUP")    # the agent is back
    assert r.returncode == 0 and "slave #2 recorded" in r.stdout, (r.stdout, r.stderr)
    assert converged(stack)["role"] == "slave" and seq(stack) == 2 and stack.held() == []
