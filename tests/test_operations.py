"""Issue 20, what operators expect: maintenance mode, history --since, [notify], the Nagios
line with perfdata and thresholds, the Prometheus textfile (real layer scripts through the
real command line; switchover has its own file)."""
from __future__ import annotations

import json
import os

from core_support import Stack

DEVD = ("devd-event", "--detach", "CARP", "1@em0", "MASTER")


def test_maintenance_ignores_daemon_events_and_lets_a_person_act(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a", "b"))
    on = stack.hahooks("maintenance", "on", "--reason", "disk swap")
    assert on.returncode == 0, on.stderr
    assert "maintenance mode on since" in on.stdout and "disk swap" in on.stdout
    # the daemons' forms: recorded, ignored, exit 0 (devd must not see a failed action)
    for argv in (DEVD, ("master", "--detach", "--source", "freevrrpd")):
        r = stack.hahooks(*argv)
        assert r.returncode == 0, r.stderr
        assert "ignored: maintenance mode on since" in r.stderr
    assert stack.held() == [] and not os.path.exists(os.path.join(stack.state_dir,
                                                                  "desire.json"))
    ignored = stack.json_records(event="ignored")
    assert [r["source"] for r in ignored] == ["devd CARP 1@em0 MASTER", "freevrrpd"]
    status = stack.hahooks("status")
    assert status.returncode == 1, status.stdout           # WARNING, although all released
    assert "maintenance mode on since" in status.stdout and "(disk swap)" in status.stdout
    assert json.loads(stack.hahooks("status", "--json").stdout)["maintenance"]["reason"] \
        == "disk swap"
    history = stack.hahooks("history").stdout
    assert "ignored" in history and "devd CARP 1@em0 MASTER" in history, history
    # a person's master still runs, and the log says it ran during maintenance
    r = stack.hahooks("master")
    assert r.returncode == 0, r.stderr
    assert stack.held() == ["a", "b"]
    assert stack.json_records(event="maintenance_manual")
    assert stack.hahooks("maintenance", "status").returncode == 1
    off = stack.hahooks("maintenance", "off")
    assert off.returncode == 0 and "maintenance mode off" in off.stdout
    assert stack.hahooks("maintenance", "status").returncode == 0
    assert stack.hahooks("status").returncode == 0
    r = stack.hahooks("slave", "--detach", "--source", "freevrrpd")
    assert r.returncode == 0 and "recorded" in r.stdout
