"""What hahooks tells monitoring, syslog and people must be true: no false OK for a
monitoring user, WARNING (not CRITICAL) while a failover runs, one warning when syslog is
down, dry runs that page nobody, no secrets in the log (issue 20, newcomer review F3-F11)."""
from __future__ import annotations

import json
import os
import socket

from conftest import config_writer, require_root, run_hahooks
from core_support import Stack, missing_probe_layer
from signals_support import NOBODY, hahooks_as, public_dir  # noqa: F401
from storage_helpers import lab, mounts, sh  # noqa: F401
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


def _syslog_stack(tmp_path, write_config, sock_path: str, names=("a",), **kw) -> Stack:
    stack = Stack(tmp_path, write_config, names=names,
                  node_extra=f'syslog_socket = "{sock_path}"\n', **kw)
    text = open(stack.config).read().replace("syslog = false", "syslog = true")
    with open(stack.config, "w") as fh:
        fh.write(text)
    return stack


def _datagrams(sock) -> list[str]:
    sock.settimeout(0.5)
    grams = []
    try:
        while True:
            grams.append(sock.recv(65536).decode())
    except socket.timeout:
        return grams


def test_a_dead_syslog_socket_costs_one_warning_line_not_tracebacks(tmp_path, write_config):
    sock_path = str(tmp_path / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.close()                       # the path stays, nobody listens (syslogd stopped)
    stack = _syslog_stack(tmp_path, write_config, sock_path, names=("a", "b"))
    r = stack.hahooks("master", "-q")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "syslog" in lines[0] and sock_path in lines[0], r.stderr
    assert stack.held() == ["a", "b"]
    r = stack.hahooks("slave")
    assert "Traceback" not in r.stderr and r.stderr.count("syslog at ") == 1
    # platform = "freebsd" on Linux: its /var/run/log is a directory there
    os.unlink(sock_path)
    os.mkdir(sock_path)
    r = stack.hahooks("master", "-q")
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and f"syslog at {sock_path} unavailable" in r.stderr


def test_syslog_gets_one_sentence_per_record_and_the_file_keeps_the_fields(tmp_path,
                                                                         write_config):
    sock_path = str(tmp_path / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    try:
        stack = _syslog_stack(tmp_path, write_config, sock_path)
        assert stack.hahooks("master").returncode == 0
        grams = _datagrams(sock)
    finally:
        sock.close()
    assert grams and all(g.startswith("<134>hahooks[") for g in grams[:1])
    payloads = [g.split("]: ", 1)[1].rstrip("\x00") for g in grams]
    assert not any(p.lstrip().startswith("{") for p in payloads), payloads
    assert all("\n" not in p for p in payloads)
    end = [p for p in payloads if "transition to master done" in p]
    assert len(end) == 1 and end[0].startswith("nodea: ") and "[transition 1-" in end[0]
    assert "nodea: a: acquire a: not held (layer exited 1)" in "\n".join(payloads)
    (record,) = stack.json_records(event="transition_end")
    assert record["node"] == "nodea" and record["ok"] is True and "duration" in record


def test_a_dry_run_marks_its_records_and_pages_nobody(tmp_path, write_config):
    sock_path = str(tmp_path / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    try:
        stack = _syslog_stack(tmp_path, write_config, sock_path, names=("a",))
        text = open(stack.config).read().replace("[[resource]]", missing_probe_layer("x")
                                                 .strip() + "\n\n[[resource]]", 1)
        with open(stack.config, "w") as fh:
            fh.write(text)
        r = stack.hahooks("master", "--dry-run")
        grams = _datagrams(sock)
    finally:
        sock.close()
    assert r.returncode == 5, (r.stdout, r.stderr)
    assert "already held" not in r.stdout and "nothing to do" not in r.stdout
    assert "ROLLBACK INCOMPLETE" not in r.stderr and "critical" not in r.stderr
    assert "command not found: hh-no-such-probe-tool" in r.stderr
    records = stack.json_records()
    assert records and all(rec.get("dry_run") is True for rec in records), records
    assert not [rec for rec in records if rec["level"] == "CRITICAL"]
    # syslog severity is the low 3 bits of the priority: 0-4 are emerg..warning
    severities = [int(g[1:g.index(">")]) & 7 for g in grams]
    assert all(s > 4 for s in severities), grams
    assert not stack.mutating_commands()


def test_a_refusal_that_touched_nothing_says_so_not_rollback_incomplete(lab, tmp_path):
    dev = lab.image("refused")
    mp1, mp2 = tmp_path / "one", tmp_path / "two"
    mp1.mkdir()
    sh("mount", dev, mp1)
    r = run_hahooks("mount", dev, mp2, "ext4", "start")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "ROLLBACK INCOMPLETE" not in r.stderr and "critical" not in r.stderr, r.stderr
    assert "nothing was changed" in r.stderr and str(mp1) in r.stderr
    assert [m.mountpoint for m in mounts.of_device(mounts.read(), dev)] == [str(mp1)]


def test_plan_exits_non_zero_when_its_preview_stops(tmp_path, write_config):
    path = write_config("""
        [[resource]]
        name = "disks"
        kind = "hast"
        resources = "r0"
        """, f'paths = {{ hastctl = "{tmp_path}/no-such-hastctl" }}\n')
    r = run_hahooks("plan", "master", "-c", path)
    assert "(preview stops: command not found: hastctl" in r.stdout
    assert r.returncode == 5, (r.stdout, r.stderr)
    assert "plan stops at disks" in r.stderr
    (tmp_path / "ok").mkdir()
    stack = Stack(tmp_path / "ok", config_writer(tmp_path / "ok"), names=("a",))
    r = stack.hahooks("plan", "master")
    assert r.returncode == 0 and "would run:" in r.stdout and r.stderr == ""


def test_the_log_is_private_and_demote_fence_passwords_are_redacted(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a", "b"), demote=False,
                  node_extra=f'demote = ["{tmp_path}/layer", "demote", "--password=hunter2", '
                  f'"{tmp_path}", "passwd=hunter3"]\n')
    stack.mark("b", "fail-acquire")
    assert stack.hahooks("master").returncode == 1
    assert "demote -" in stack.steps()                       # it ran, with the real words
    text = open(stack.json_log).read()
    assert "hunter" not in text and "--password=REDACTED" in text and "passwd=REDACTED" in text
    assert os.stat(stack.json_log).st_mode & 0o777 == 0o600
    os.chmod(stack.json_log, 0o644)                      # an older install's log
    assert stack.hahooks("status").returncode == 2
    stack.hahooks("slave")
    assert os.stat(stack.json_log).st_mode & 0o777 == 0o640


def test_fence_agent_password_options_and_marked_words_never_reach_the_log(tmp_path,
                                                                          write_config):
    from hahooks import config, logs
    from hahooks.engine import Engine

    seen = tmp_path / "fence-args"
    agent = tmp_path / "fence_ipmilan"
    agent.write_text(f'#!/bin/sh\necho "$@" > {seen}\n')
    agent.chmod(0o755)
    path = write_config(missing_probe_layer("x"), f'fence = ["{agent}", "-a", "10.99.0.2", '
                        '"-l", "admin", "-p", "fencepw1", "--password", "fencepw2"]\n')
    cfg = config.load(path)
    logs.setup_from_config(cfg)
    try:
        engine = Engine.for_config(cfg)
        runner = engine.runner
        assert engine.fence("test") is True
        runner.run([str(agent), "--token", "tok-secret-9"], readonly=False,
                   secrets=["tok-secret-9"])
    finally:
        logs.setup(json_file=False)                      # closes the file handler
    assert seen.read_text() == "--token tok-secret-9\n"
    text = open(cfg.node.log_file).read()
    assert "fencepw" not in text and "tok-secret" not in text, text
    assert "-p REDACTED --password REDACTED" in text and "--token REDACTED" in text
