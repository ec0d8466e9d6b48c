"""`hahooks history` tells what happened last night: the trigger, demotions and fences (also
at WARNING when they happen), a superseded run as superseded, an empty log as such (issue
20, newcomer review F14-F16)."""
from __future__ import annotations

import json

from core_support import Stack
from hahooks import waits

DEVD = "devd CARP 1@em0 MASTER"


def test_history_shows_the_trigger_and_the_demotion_at_warning(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a", "b"))
    stack.mark("b", "fail-acquire")
    r = stack.hahooks("master", "-q", "--source", DEVD)
    assert r.returncode == 1
    assert "demote -" in stack.steps()
    assert "warning: demoted: ran " in r.stderr, r.stderr      # -q still shows it
    (t,) = json.loads(stack.hahooks("history", "--json").stdout)
    assert t["trigger"] == DEVD and t["ok"] is False
    assert [a["event"] for a in t["actions"]] == ["demote"] and t["actions"][0]["ok"] is True
    text = stack.hahooks("history").stdout
    assert DEVD in text.splitlines()[0] and "FAILED" in text.splitlines()[0]
    assert "    demoted: ran " in text


def test_history_reads_a_superseded_run_as_superseded(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a", "b", "c"))
    stack.mark("b", "block")
    master = stack.popen("master")
    try:
        waits.wait_for(lambda: "acquire b" in stack.steps(), 60, "b's acquire to start")
        assert stack.hahooks("slave", "--detach").returncode == 0
    finally:
        stack.mark("b", "gate")
        master.communicate(timeout=60)
    assert master.returncode == 1
    waits.wait_for(lambda: not stack.held(), 60, "the slave to release everything")
    first, second = json.loads(stack.hahooks("history", "--json").stdout)
    assert first["superseded"] is True and second["ok"] is True
    line = stack.hahooks("history").stdout.splitlines()[0]
    assert " superseded " in line and "FAILED" not in line


def test_history_of_an_empty_log_says_so(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a",))
    open(stack.json_log, "w").close()
    r = stack.hahooks("history")
    assert r.returncode == 0 and r.stdout == ""
    assert r.stderr == f"no transitions recorded in {stack.json_log}\n"
