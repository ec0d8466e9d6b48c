"""The `hahooks` command line: help, status grading, history, hooks under devd's minimal
PATH, logging destinations, and start-up staying cheap."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import LIB, ROOT, hahooks_env, require, run_hahooks
from core_support import Stack, missing_probe_layer
from hahooks import waits
from hahooks.state import StateDir

MINIMAL_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"   # what devd and freevrrpd give hooks


def test_help_lists_commands_and_exit_codes():
    r = run_hahooks("--help", check=0)
    for word in ("master", "slave", "status", "check", "plan", "history"):
        assert word in r.stdout
    assert "6 bad or missing config" in r.stdout and "3 UNKNOWN" in r.stdout
    r = run_hahooks("master", "--help", check=0)
    assert "--detach" in r.stdout and "--dry-run" in r.stdout
    assert "6 the config is missing or invalid" in r.stdout
    r = run_hahooks("status", "--help", check=0)
    assert "2 CRITICAL" in r.stdout


def test_bad_arguments_exit_2_with_one_line():
    r = run_hahooks("master", "--detach", "--wait")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    r = run_hahooks("plan", "primary")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = run_hahooks()
    assert r.returncode == 2


def test_status_ok_for_a_whole_stack_either_way(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a", "b"))
    r = stack.hahooks("status")
    assert r.returncode == 0 and r.stdout.startswith("OK: nodea: slave: nothing held")
    assert stack.hahooks("master").returncode == 0
    r = stack.hahooks("status", "--json")
    assert r.returncode == 0
    report = json.loads(r.stdout)
    assert report["status"] == "OK" and report["desired"] == "master"
    assert [(layer["name"], layer["state"]) for layer in report["layers"]] == \
        [("a", "held"), ("b", "held")]
    assert report["last"]["exit_code"] == 0


def test_status_critical_for_half_a_stack_or_a_broken_layer(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a", "b"))
    stack.mark("a", "held")
    r = stack.hahooks("status")
    assert r.returncode == 2 and "CRITICAL" in r.stdout and "half a stack held" in r.stdout
    stack.mark("b", "held")
    stack.mark("b", "broken")
    r = stack.hahooks("status", "--json")
    assert r.returncode == 2
    report = json.loads(r.stdout)
    assert "broken layer(s): b (layer exited 2: b is in pieces)" in report["summary"]


def test_status_critical_when_the_desired_role_was_not_reached(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a", "b"))
    stack.mark("b", "fail-acquire")
    assert stack.hahooks("master").returncode == 1
    r = stack.hahooks("status")
    assert r.returncode == 2
    assert "desired role is master (#1), last transition failed: acquire b failed" in r.stdout


def test_status_warning_while_a_transition_runs(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a", "b"))
    assert stack.hahooks("master").returncode == 0
    gate = os.path.join(stack.dir, "b.gate")
    proc = _slave_with_blocked_release(stack, gate)
    try:
        r = stack.hahooks("status")
        assert r.returncode == 1, r.stdout
        assert "WARNING" in r.stdout and "desired role is slave (#2), transition in " \
            "progress" in r.stdout
    finally:
        open(gate, "w").close()
        proc.communicate(timeout=60)
    r = stack.hahooks("status")
    assert r.returncode == 0 and "slave: nothing held" in r.stdout


def _slave_with_blocked_release(stack: Stack, gate: str) -> subprocess.Popen:
    """`hahooks slave` whose first release (b) logs its start, then waits for `gate`."""
    text = open(stack.config).read().replace(
        f'release = ["{stack.script}", "release", "b", "{stack.dir}"]',
        f'release = ["sh", "-c", "echo enter $(date +%s%N) $$ $PPID release b >> '
        f'{stack.dir}/layers.log; while [ ! -e {gate} ]; do sleep 0.01; done; '
        f'{stack.script} release b {stack.dir}"]')
    with open(stack.config, "w") as fh:
        fh.write(text)
    proc = stack.popen("slave")
    waits.wait_for(lambda: "release b" in stack.steps(), 30, "b's release to start")
    return proc


def test_status_unknown_when_the_config_or_a_tool_is_missing(tmp_path, write_config):
    r = run_hahooks("status", "-c", tmp_path / "missing.toml")
    assert r.returncode == 3 and r.stdout.startswith("UNKNOWN: ")
    path = write_config(missing_probe_layer("a"))
    r = run_hahooks("status", "-c", path)
    assert r.returncode == 3 and "cannot observe: a" in r.stdout
    assert "command not found: hh-no-such-probe-tool" in r.stdout


def test_history_shows_transitions_and_step_timings(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a", "b"))
    assert stack.hahooks("master").returncode == 0
    assert stack.hahooks("slave").returncode == 0
    stack.mark("b", "fail-acquire")
    assert stack.hahooks("master").returncode == 1
    r = stack.hahooks("history", "-n", "2", "--json")
    assert r.returncode == 0, r.stderr
    slave, failed = json.loads(r.stdout)
    assert slave["role"] == "slave" and slave["ok"] is True
    assert [(s["step"], s["resource"]) for s in slave["steps"]] == \
        [("release", "b"), ("release", "a")]
    assert all(isinstance(s["duration"], float) for s in slave["steps"])
    assert failed["role"] == "master" and failed["ok"] is False
    assert [(s["step"], s["resource"], s["ok"]) for s in failed["steps"]] == \
        [("acquire", "a", True), ("acquire", "b", False), ("skip", "b", True),
         ("release", "a", True)]
    text = stack.hahooks("history").stdout
    assert text.count("\n    acquire  a") == 2 and "FAILED" in text


def test_hooks_work_with_devd_minimal_path(tmp_path, write_config):
    installed = "/usr/local/sbin/hahooks"
    require(os.access(installed, os.X_OK), f"{installed} (run scripts/bootstrap)")
    bindir = tmp_path / "opt" / "bin"
    bindir.mkdir(parents=True)
    tool = bindir / "hh-layer-tool"          # found only through [node] paths
    tool.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/tool.log\n")
    tool.chmod(0o755)
    mark = tmp_path / "held"
    layer = f"""
        [[resource]]
        name = "layer"
        kind = "command"
        acquire = ["hh-layer-tool", "acquire"]
        release = ["rm", "-f", "{mark}"]
        state_file = "{mark}"
        """
    path = write_config(layer, f'paths = {{ hh-layer-tool = "{tool}" }}\n')
    env = {"PATH": MINIMAL_PATH}
    r = subprocess.run([os.path.join(ROOT, "hooks", "master"), "-c", path], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert mark.exists() and (tmp_path / "tool.log").read_text() == "acquire\n"
    r = subprocess.run([os.path.join(ROOT, "hooks", "slave"), "--detach", "-c", path], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    waits.wait_for(lambda: not mark.exists(), 60, "the detached slave to release")
    # the same stack without the override: the tool is not on the minimal PATH -> exit 5
    bare = write_config(layer, name="bare.toml")
    r = subprocess.run([os.path.join(ROOT, "hooks", "master"), "-c", bare], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 5 and "command not found: hh-layer-tool" in r.stderr
    assert not mark.exists()


def test_logs_go_to_syslog_local0(tmp_path, write_config):
    sock_path = str(tmp_path / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(30)
    try:
        stack = Stack(tmp_path, write_config, names=("a",),
                      node_extra=f'syslog_socket = "{sock_path}"\n')
        text = open(stack.config).read().replace("syslog = false", "syslog = true")
        with open(stack.config, "w") as fh:
            fh.write(text)
        r = stack.hahooks("master")
        assert r.returncode == 0, r.stderr
        grams = []
        sock.settimeout(0.5)
        try:
            while True:
                grams.append(sock.recv(65536))
        except socket.timeout:
            pass
    finally:
        sock.close()
    assert grams
    first = grams[0].decode()
    assert first.startswith("<134>hahooks[")      # local0 (16) * 8 + info (6)
    payloads = [g.decode().split("]: ", 1)[1].rstrip("\x00") for g in grams]
    assert any(p.startswith("nodea: transition to master done") for p in payloads)


def test_stderr_gets_short_human_lines(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a",))
    r = stack.hahooks("master")
    lines = r.stderr.splitlines()
    assert "hahooks[a]: acquire a: not held (layer exited 1)" in lines
    assert all(not line.startswith("{") and len(line) < 200 for line in lines)
    assert r.stdout.strip() == "master: 1 layer(s) held (1 acquired now, 0 already)"
    r = stack.hahooks("master", "-q")
    assert r.stderr == ""


def test_import_configures_no_logging_and_loads_nothing_heavy():
    code = """
import logging, sys
import hahooks.cli, hahooks.engine, hahooks.config, hahooks.transition, hahooks.state
import hahooks.runner, hahooks.logs, hahooks.waits, hahooks.procs, hahooks.kinds.command
hahooks.cli.build_parser()
assert not logging.getLogger("hahooks").handlers, "logging configured at import"
assert not logging.getLogger().handlers
heavy = [m for m in ("sh", "psutil", "pythonjsonlogger") if m in sys.modules]
assert not heavy, heavy
"""
    r = subprocess.run([sys.executable, "-c", code], env=hahooks_env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_detach_hook_imports_neither_sh_nor_psutil(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a",))
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "hahooks", "master",
                        "--detach", "-c", stack.config], env=hahooks_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    assert "hahooks.transition" in imported
    assert not {"sh", "psutil"} & imported
    done = waits.wait_for(lambda: StateDir(stack.state_dir).pending() is None and
                          StateDir(stack.state_dir).done(), 60, "the worker")
    assert done["role"] == "master" and stack.held() == ["a"]


def test_a_transition_that_runs_commands_imports_neither_sh_nor_psutil(tmp_path,
                                                                       write_config):
    """The worker's path too: the runner spawns with subprocess (spawn.py), and a walk of
    command layers needs no process table (docs/performance.md)."""
    stack = Stack(tmp_path, write_config, names=("a", "b"))
    env = {k: v for k, v in hahooks_env().items() if k != "HAHOOKS_SPAWN"}
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "hahooks", "master",
                        "-c", stack.config], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert stack.held() == ["a", "b"]
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    assert "hahooks.runner" in imported
    assert not {"sh", "psutil", "asyncio", "ssl"} & imported, {"sh", "psutil"} & imported


RUN_WITH_ATEXIT = ("import atexit, sys\n"
                   "atexit.register(lambda: print('teardown ran'))\n"
                   "{extra}"
                   "sys.argv = ['hahooks', *{argv!r}]\n"
                   "from hahooks.cli import run\n"
                   "run()\n")


def run_with_atexit(*argv, extra=""):
    return subprocess.run([sys.executable, "-c", RUN_WITH_ATEXIT.format(argv=argv, extra=extra)],
                          env=hahooks_env(), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("lab_loaded", [False, True])
def test_a_hook_exits_without_teardown_but_with_its_log_and_output(tmp_path, write_config,
                                                                   lab_loaded):
    """The hot path leaves with os._exit whatever else is loaded (the sandbox included)."""
    stack = Stack(tmp_path, write_config, names=("a",))
    extra = "import hahooks.lab.sandbox.lab\n" if lab_loaded else ""
    r = run_with_atexit("master", "-c", stack.config, extra=extra)
    assert r.returncode == 0, r.stderr
    # os._exit after the flush: the output and the whole log are there, no teardown ran
    assert r.stdout == "master: 1 layer(s) held (1 acquired now, 0 already)\n", r.stdout
    records = [json.loads(line) for line in (tmp_path / "hahooks.jsonl").read_text()
               .splitlines()]
    assert records[-1]["event"] == "transition_end"


@pytest.mark.parametrize("argv", [["slave", "--bogus"], ["worker", "--bogus"],
                                  ["mount", "--bogus"], ["import-pool", "--bogus"]])
def test_every_hot_command_exits_fast_with_its_code(argv):
    r = run_with_atexit(*argv, extra="import hahooks.lab.sandbox.lab\n")
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("hahooks"), r.stderr


@pytest.mark.parametrize("argv, code", [(["check"], 0), (["status"], 0), (["--version"], 0),
                                        (["history", "--bogus"], 2), ([], 2)])
def test_other_commands_exit_normally_and_run_atexit(tmp_path, write_config, argv, code):
    stack = Stack(tmp_path, write_config, names=("a",))
    if argv and argv[0] in ("check", "status"):
        argv = [*argv, "-c", stack.config]
    r = run_with_atexit(*argv)
    assert r.returncode == code, r.stderr
    assert r.stdout.splitlines()[-1:] == ["teardown ran"], r.stdout


def test_module_and_console_entry_points_agree():
    r = subprocess.run([sys.executable, "-m", "hahooks", "--version"], env=hahooks_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("hahooks ")
    assert os.path.isdir(LIB)


@pytest.mark.parametrize("hook", ["master", "slave", "mount", "import-pool"])
def test_hooks_are_executable(hook):
    assert os.access(os.path.join(ROOT, "hooks", hook), os.X_OK)


def test_a_mistyped_command_gets_a_hint_and_never_the_hidden_worker():
    r = run_hahooks("mastr")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "did you mean 'master'?" in r.stderr and "worker" not in r.stderr
    r = run_hahooks("frobnicate")
    assert r.returncode == 2 and "worker" not in r.stderr and "status" in r.stderr
    assert "worker" not in run_hahooks("--help").stdout
