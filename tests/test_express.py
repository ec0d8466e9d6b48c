"""The express lane (express.py, spool.py): a `--detach` hook hands its request to a running
agent without importing the library, and a stopped agent, a dead hook, a bad config or an
unsafe file never cost a transition or replay an old event."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import hahooks_env
from core_support import converged
from hahooks import bell, express, platforms, waits
from hahooks.state import StateDir
from test_agent import resident, stack  # noqa: F401 (fixtures)


@pytest.mark.parametrize("argv, parsed", [
    (["master", "--detach", "-c", "/x.toml"], ("master", "/x.toml", "")),
    (["slave", "-q", "--detach", "--config=/x.toml", "--source", "devd"],
     ("slave", "/x.toml", "devd")),
    (["master", "--detach", "--source=carp0 up", "-v"], ("master", None, "carp0 up")),
    (["master", "-c", "/x.toml"], None),                    # --wait: converges itself
    (["master", "--detach", "--dry-run"], None),
    (["master", "--detach", "--wait"], None),
    (["master", "--detach", "--detach"], None),
    (["master", "--det"], None),                            # argparse's abbreviations
    (["master", "--detach", "-c"], None),
    (["master", "--detach", "--help"], None),
    (["status", "--detach"], None),
    (["--version"], None),
])
def test_only_the_event_daemons_form_takes_the_express_lane(argv, parsed, monkeypatch):
    monkeypatch.delenv("HAHOOKS_CONFIG", raising=False)
    if parsed and parsed[1] is None:
        parsed = (parsed[0], express.default_config(), parsed[2])
    assert express.parse(argv) == parsed


@pytest.mark.parametrize("platform", ["linux", "freebsd14"])
def test_express_default_config_is_the_platforms_one(platform, monkeypatch):
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.delenv("HAHOOKS_CONFIG", raising=False)
    assert express.default_config() == platforms.default_config_path()
    monkeypatch.setenv("HAHOOKS_CONFIG", "/elsewhere.toml")
    assert express.default_config() == platforms.default_config_path() == "/elsewhere.toml"


@pytest.fixture
def lane(stack, resident):
    """The resident agent once it serves the express lane (its start record follows the
    pointer's publication)."""
    waits.wait_for(lambda: stack.json_records(event="agent_start"), 60, "the agent's start")
    assert stack.json_records(event="agent_start")[0]["express"] is True
    return resident


def requests_left(stack) -> list[str]:
    return sorted(os.listdir(os.path.join(stack.state_dir, express.REQUESTS)))


def seq(stack) -> int:
    desire = StateDir(stack.state_dir).desire()
    return desire.seq if desire else 0


def assert_lean_hook(importtime: str) -> None:
    """The hook's `-X importtime` output: the lane's module, none of the library's."""
    imported = {line.rsplit("|", 1)[1].strip() for line in importtime.splitlines()
                if line.startswith("import time:")}
    assert "hahooks.express" in imported
    assert not imported & {"hahooks.config", "hahooks.cli", "logging", "argparse", "json"}


def test_a_detached_hook_hands_over_without_importing_the_library(stack, lane):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "hahooks", "master",
                           "--detach", "--source", "devd carp0", "-c", stack.config],
                          capture_output=True, text=True, env=hahooks_env())
    assert proc.returncode == 0, proc.stderr
    assert "recorded; the agent's converger" in proc.stdout, proc.stdout
    assert_lean_hook(proc.stderr)
    assert converged(stack)["role"] == "master" and stack.held() == ["a", "b", "c"]
    [record] = stack.json_records(event="desire")
    assert record["via"] == "express" and record["source"] == "devd carp0"
    assert record["detach"] is True and record["hook"] != lane.pid
    assert requests_left(stack) == []


def test_a_stopped_agent_costs_nothing_and_never_replays_the_request(stack, lane):
    os.kill(lane.pid, signal.SIGSTOP)
    r = stack.hahooks("master", "--detach")
    assert r.returncode == 0 and "worker started" in r.stdout, (r.stdout, r.stderr)
    assert converged(stack)["role"] == "master" and seq(stack) == 1
    assert requests_left(stack) == []              # withdrawn under the desire lock
    os.kill(lane.pid, signal.SIGCONT)
    r = stack.hahooks("slave", "--detach")         # the agent is back: express again
    assert r.returncode == 0 and "the agent's converger" in r.stdout, r.stdout
    assert converged(stack)["role"] == "slave" and seq(stack) == 2 and stack.held() == []
    assert [d["seq"] for d in stack.json_records(event="desire")] == [1, 2]


def drop_request(stack, role: str, pid: int, at: float) -> str:
    """A request as a hook writes it (express.request), then the bell."""
    st = os.stat(stack.config)
    base = os.path.join(stack.state_dir, express.REQUESTS, f"{time.monotonic_ns()}-{pid}")
    with open(base + ".req", "w") as fh:
        fh.write("\t".join((repr(at), role, str(pid), os.path.abspath(stack.config),
                            f"{st.st_dev}:{st.st_ino}", "test")) + "\n")
    assert bell.ring(stack.state_dir)
    return base


def a_dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_killed_hooks_request_is_taken_only_while_it_is_the_newest_event(stack, lane):
    r = stack.hahooks("master", "--detach")
    assert r.returncode == 0 and converged(stack)["role"] == "master"
    # written before the desire above, by a hook that died: replaying it would undo master
    base = drop_request(stack, "slave", a_dead_pid(), time.time() - 0.2)
    waits.wait_for(lambda: not os.path.exists(base + ".req"), 30, "the agent to drop it")
    assert seq(stack) == 1 and not os.path.exists(base + ".ans")
    assert stack.json_records(event="express_dropped")
    # a fresh one from a hook that died after writing it stands, as a recorded desire does
    base = drop_request(stack, "slave", a_dead_pid(), time.time())
    waits.wait_for(lambda: seq(stack) == 2, 30, "the agent to take it")
    assert converged(stack)["role"] == "slave" and stack.held() == []


def test_a_broken_config_is_reported_by_the_normal_path(stack, lane):
    with open(stack.config, "a") as fh:
        fh.write("\n[[resource]]\nname = \n")
    r = stack.hahooks("master", "--detach")
    assert r.returncode == 6, (r.stdout, r.stderr)
    assert stack.config in r.stderr and seq(stack) == 0 and requests_left(stack) == []


def test_maintenance_mode_ignores_an_express_request(stack, lane):
    r = stack.hahooks("maintenance", "on", "--reason", "disk swap")
    assert r.returncode == 0, r.stderr
    r = stack.hahooks("master", "--detach", "--source", "devd")
    assert r.returncode == 0 and "ignored" in r.stderr and "disk swap" in r.stderr, r.stderr
    assert seq(stack) == 0 and stack.json_records(event="ignored")


def test_the_hook_trusts_only_private_files(stack, tmp_path, monkeypatch):
    state = StateDir(stack.state_dir).prepare()
    os.makedirs(os.path.join(state.path, express.REQUESTS), mode=0o700)
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    pointer = run / express.pointer_name(os.stat(stack.config))
    pointer.write_text(state.path + "\n")
    monkeypatch.setenv("HAHOOKS_RUN_DIR", str(run))
    assert express.agent_spool(stack.config)[0] == state.path
    for path, mode in ((pointer, 0o666), (run, 0o777)):
        os.chmod(path, mode)
        assert express.agent_spool(stack.config) is None, path
        os.chmod(path, 0o644 if path == pointer else 0o755)
    os.chown(pointer, 65534, 65534)             # nobody's: not ours
    assert express.agent_spool(stack.config) is None
    os.chown(pointer, 0, 0)
    os.chmod(state.path, 0o755)
    assert express.agent_spool(stack.config) is None


def test_the_hooks_file_names_are_the_state_dirs():
    from hahooks import bell, state

    assert (bell.BELL, express.DESIRE_LOCK) == (state.AGENT_BELL, state.DESIRE_LOCK)
