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


def test_history_since_keeps_what_started_after(tmp_path, write_config):
    import datetime as dt

    stack = Stack(tmp_path, write_config, names=("a",))
    assert stack.hahooks("master").returncode == 0
    (first,) = stack.json_records(event="transition_end")
    between = dt.datetime.fromisoformat(first["time"]).timestamp() + 0.001
    while dt.datetime.now().timestamp() <= between + 0.01:   # the next record starts later
        os.sched_yield()
    assert stack.hahooks("slave").returncode == 0
    since = dt.datetime.fromtimestamp(between).isoformat()   # local, as an operator types it
    (only,) = json.loads(stack.hahooks("history", "--json", "--since", since).stdout)
    assert only["role"] == "slave"
    for word in ("-1h", "yesterday", "today"):
        got = json.loads(stack.hahooks("history", "--json", "--since", word).stdout)
        assert [t["role"] for t in got] == ["master", "slave"], word
    r = stack.hahooks("history", "--since", "2h")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 4   # 2 transitions + steps
    r = stack.hahooks("history", "--since", "2999-01-01")
    assert r.stdout == "" and "since 2999-01-01" in r.stderr
    r = stack.hahooks("history", "--since", "last tuesday")
    assert r.returncode == 2 and "--since 'last tuesday'" in r.stderr


def test_parse_since_words():
    import datetime as dt

    from hahooks.timespec import parse_since

    now = dt.datetime(2026, 12, 6, 10, 30).timestamp()
    assert parse_since("yesterday", now) == dt.datetime(2026, 12, 5).timestamp()
    assert parse_since("today", now) == dt.datetime(2026, 12, 6).timestamp()
    assert parse_since("-2h", now) == now - 7200 == parse_since("2h", now)
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2026-12-05T22:00", now) == dt.datetime(2026, 12, 5, 22).timestamp()


def _notify_config(stack: Stack, tmp_path, extra: str = "", *, hang_first: bool = True,
                   timeout: str = "2s") -> None:
    """Append a [notify] table whose commands copy stdin to files / hang."""
    sink = tmp_path / "notify-sink"
    sink.write_text(f"#!/bin/sh\ncat > {tmp_path}/notified.$$.json\n")
    sink.chmod(0o755)
    hang = tmp_path / "notify-hang"
    hang.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/hang.pid\nexec sleep 600\n")
    hang.chmod(0o755)
    with open(stack.config, "a") as fh:
        order = f'["{hang}"], ["{sink}"]' if hang_first else f'["{sink}"], ["{hang}"]'
        fh.write(f'\n[notify]\ncommands = [{order}]\ntimeout = "{timeout}"\n{extra}')


def _notified(tmp_path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(tmp_path.glob("notified.*.json"))
            if p.read_text().endswith("\n")]


def test_notify_runs_detached_with_the_outcome_on_stdin(tmp_path, write_config):
    from conftest import pid_alive
    from hahooks import waits

    stack = Stack(tmp_path, write_config, names=("a", "b"))
    _notify_config(stack, tmp_path, hang_first=False, timeout="10m")
    r = stack.hahooks("master", "--source", "a person")
    assert r.returncode == 0, r.stderr
    (got,) = waits.wait_for(lambda: _notified(tmp_path), 60, "the notify sink")
    hang_pid = int(waits.wait_for(lambda: (tmp_path / "hang.pid").exists() and
                                  (tmp_path / "hang.pid").read_text().strip(), 60,
                                  "the hanging notify command to start"))
    try:
        # master returned while a notify command runs (its timeout is 10 minutes away)
        assert pid_alive(hang_pid)
        assert os.getsid(hang_pid) != os.getsid(0)   # in its own session: outlives the hook
    finally:
        os.kill(hang_pid, 9)
    assert got["role"] == "master" and got["outcome"] == "ok" and got["ok"] is True
    assert got["trigger"] == "a person" and got["node"] == "nodea" and got["exit_code"] == 0


def test_notify_on_failure_only(tmp_path, write_config):
    from conftest import pid_alive
    from hahooks import waits

    stack = Stack(tmp_path, write_config, names=("a", "b"))
    _notify_config(stack, tmp_path, 'on = "failure"\n')
    assert stack.hahooks("master").returncode == 0
    stack.mark("b", "fail-acquire")
    assert stack.hahooks("slave").returncode == 0
    assert stack.hahooks("master").returncode == 1
    # the hanging command comes first: the runner's timeout ends it, the sink still runs
    (got,) = waits.wait_for(lambda: _notified(tmp_path), 60, "the notify sink")
    assert got["outcome"] == "failed" and got["exit_code"] == 1 and got["role"] == "master"
    assert len(stack.json_records(event="transition_end")) == 3
    waits.wait_for(lambda: len(stack.json_records(event="notify")) == 2, 60, "notify records")
    by_cmd = {r["argv0"].rsplit("/", 1)[-1]: r for r in stack.json_records(event="notify")}
    assert by_cmd["notify-hang"]["ok"] is False and by_cmd["notify-sink"]["ok"] is True
    hang_pid = int((tmp_path / "hang.pid").read_text())
    waits.wait_for(lambda: not pid_alive(hang_pid), 60, "the timed-out command to be gone")


def test_notify_config_errors_name_the_line(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a",))
    with open(stack.config, "a") as fh:
        fh.write('\n[notify]\ncommands = ["mail root"]\n')
    r = stack.hahooks("check")
    assert r.returncode == 6 and "[notify]: commands: expected a list of argument lists" \
        in r.stderr, r.stderr


def test_status_speaks_nagios_with_perfdata_and_thresholds(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a", "b"))
    first = stack.hahooks("status").stdout.splitlines()[0]
    assert first.startswith("OK: nodea: slave: nothing held")
    assert first.endswith(" | layers_held=0;;;0;2"), first   # no transition yet: no age
    assert stack.hahooks("master").returncode == 0
    r = stack.hahooks("status", "-w", "layers_held=1:", "-C", "last_transition_age=@0:3600")
    assert r.returncode == 2, r.stdout      # the transition just ran: inside 0..3600 s
    text, perf = r.stdout.splitlines()[0].split(" | ")
    assert text.startswith("CRITICAL: nodea: master: all 2 layer(s) held; last_transition_age=")
    assert "(critical @0:3600)" in text
    fields = dict(f.split("=", 1) for f in perf.split())
    assert fields["layers_held"] == "2;1:;;0;2"
    age, rest = fields["last_transition_age"].split("s;", 1)
    assert int(age) >= 0 and rest == ";@0:3600;0"
    r = stack.hahooks("status", "--warning", "layers_held=3:")        # fewer than 3 held
    assert r.returncode == 1 and "layers_held=2 (warning 3:)" in r.stdout
    assert stack.hahooks("status", "-w", "layers_held=1:").returncode == 0
    assert json.loads(stack.hahooks("status", "--json").stdout)["metrics"]["layers_held"] == 2
    r = stack.hahooks("status", "-w", "dirty=1")
    assert r.returncode == 3 and r.stdout.startswith("UNKNOWN: threshold 'dirty=1'")
    r = stack.hahooks("status", "-w", "layers_held=abc")
    assert r.returncode == 3 and "bad threshold range 'abc'" in r.stdout


def test_status_writes_a_prometheus_textfile_atomically(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a", "b"))
    prom = tmp_path / "textfile" / "hahooks.prom"
    prom.parent.mkdir()
    assert stack.hahooks("master").returncode == 0
    stack.mark("b", "fail-release")
    assert stack.hahooks("slave").returncode == 1
    stack.mark("b", "fail-release", False)
    assert stack.hahooks("slave").returncode == 0
    r = stack.hahooks("status", "--prometheus", str(prom))
    assert r.returncode == 0, r.stdout
    text = prom.read_text()
    assert os.stat(prom).st_mode & 0o777 == 0o644
    assert os.listdir(prom.parent) == ["hahooks.prom"]          # no temporary left behind
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
               for line in text.splitlines() if not line.startswith("#")}
    assert samples['hahooks_status{node="nodea"}'] == 0
    assert samples['hahooks_transitions_total{node="nodea",role="master",outcome="ok"}'] == 1
    assert samples['hahooks_transitions_total{node="nodea",role="slave",outcome="failed"}'] == 1
    assert samples['hahooks_transitions_total{node="nodea",role="slave",outcome="ok"}'] == 1
    assert samples['hahooks_last_transition_ok{node="nodea",role="slave"}'] == 1
    (end,) = stack.json_records(event="transition_end", role="slave", ok=True)
    assert samples['hahooks_last_transition_duration_seconds{node="nodea"}'] == \
        end["duration"]
    assert samples['hahooks_layers_held{node="nodea"}'] == 0
    assert samples['hahooks_maintenance{node="nodea"}'] == 0
    assert "# TYPE hahooks_transitions_total counter" in text
