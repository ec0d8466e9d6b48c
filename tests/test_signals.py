"""What hahooks tells monitoring, syslog and people must be true: no false OK for a
monitoring user, WARNING (not CRITICAL) while a failover runs, one warning when syslog is
down, dry runs that page nobody, no secrets in the log (issue 20, newcomer review F3-F11)."""
from __future__ import annotations

import json
import os

from conftest import config_writer, require_root
from core_support import Stack
from signals_support import NOBODY, hahooks_as, public_dir  # noqa: F401
from hahooks import waits


def test_status_unknown_not_ok_for_a_user_who_cannot_read_the_state_dir(public_dir):
    require_root()
    stack = Stack(public_dir, config_writer(public_dir, 0o644), names=("a", "b"))
    stack.mark("b", "fail-acquire")
    assert stack.hahooks("master").returncode == 1
    assert stack.hahooks("status").returncode == 2          # root sees the failed master
    assert os.stat(stack.state_dir).st_mode & 0o777 == 0o700
    r = hahooks_as(NOBODY, "status", "-c", stack.config)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.stdout.startswith("UNKNOWN: nodea: ")
    assert f"cannot read state dir {stack.state_dir}" in r.stdout
    r = hahooks_as(NOBODY, "status", "--json", "-c", stack.config)
    report = json.loads(r.stdout)
    assert r.returncode == 3 and report["status"] == "UNKNOWN"
    assert "Permission denied" in report["state_error"]


def test_status_warning_not_critical_for_half_a_stack_while_a_transition_runs(
        tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a", "b"))
    stack.mark("b", "block")
    proc = stack.popen("master")
    try:
        waits.wait_for(lambda: "acquire b" in stack.steps(), 60, "b's acquire to start")
        r = stack.hahooks("status", "--json")
        report = json.loads(r.stdout)
        assert report["in_progress"] is True
        assert r.returncode == 1 and report["status"] == "WARNING", report["summary"]
        assert "transition in progress" in report["summary"]
    finally:
        stack.mark("b", "gate")
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    stack.mark("a", "held", present=False)          # half a stack, nobody working on it
    r = stack.hahooks("status")
    assert r.returncode == 2 and "half a stack held" in r.stdout
