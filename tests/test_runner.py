"""The runner (real commands), the waits and the retry policy."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from conftest import pid_alive
from hahooks import logs, platforms, waits
from hahooks.errors import CommandFailed, CommandTimeout, NotInstalled, WaitTimeout
from hahooks.runner import Runner


@pytest.fixture(autouse=True, params=["subprocess", "sh"])
def spawner(request, monkeypatch):
    """Every runner test with both spawners (spawn.py): the contract is the runner's."""
    monkeypatch.setenv("HAHOOKS_SPAWN", request.param)
    return request.param


@pytest.fixture
def json_log(tmp_path):
    """The hahooks loggers writing JSON lines to a file, as main() sets them up."""
    path = tmp_path / "runner.jsonl"
    logs.setup(node="testnode", log_file=str(path), stderr_level=logging.CRITICAL)
    yield path
    root = logging.getLogger("hahooks")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()


def records(path, **match):
    return [r for r in logs.records(str(path)) if all(r.get(k) == v for k, v in match.items())]


def test_arguments_are_passed_literally_never_through_a_shell(tmp_path):
    out = Runner().run(["printf", "%s|", "a b; rm -rf /", "$(id)", "*", "`x`"], readonly=True)
    assert out.stdout == "a b; rm -rf /|$(id)|*|`x`|"
    with pytest.raises(TypeError):
        Runner().run("echo hi", readonly=True)


def test_stdout_is_not_a_tty():
    r = Runner().run(["sh", "-c", "[ -t 1 ] && echo tty || echo pipe"], readonly=True)
    assert r.stdout.strip() == "pipe"


def test_one_json_record_per_command_with_argv_exit_duration_and_stderr_tail(json_log):
    runner = Runner()
    runner.run(["sh", "-c", "echo out; echo oops >&2; exit 3"], readonly=False, ok=(0, 3))
    with pytest.raises(CommandFailed) as err:
        runner.run(["sh", "-c", "echo 'disk on fire' >&2; exit 2"], readonly=True,
                   what="probe")
    assert "probe: sh -c 'echo '\"'\"'disk on fire'\"'\"' >&2; exit 2' failed (exit 2): " \
           "disk on fire" == str(err.value)
    first, second = records(json_log, event="command")
    assert first["argv"] == ["sh", "-c", "echo out; echo oops >&2; exit 3"]
    assert first["exit_code"] == 3 and first["readonly"] is False
    assert first["stderr_tail"] == "oops\n"
    assert isinstance(first["duration"], float) and first["duration"] >= 0
    assert first["node"] == "testnode" and first["exe"].endswith("/sh")
    assert second["exit_code"] == 2 and second["stderr_tail"] == "disk on fire\n"
    assert second["level"] == "INFO" and second["what"] == "probe"


def test_stderr_tail_is_bounded(json_log):
    Runner().run([sys.executable, "-c", "import sys; sys.stderr.write('x' * 5000 + 'END')"],
                 readonly=True)
    rec, = records(json_log, event="command")
    assert rec["stderr_tail"].endswith("END") and len(rec["stderr_tail"]) == 400


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "bg.pid"
    script = f"sleep 300 & echo $! > {pidfile}; wait"
    with pytest.raises(CommandTimeout) as err:
        Runner().run(["sh", "-c", script], readonly=False, timeout=2)
    assert err.value.result.timed_out and err.value.result.exit_code == 137
    assert "timed out after 2s (process group killed)" in str(err.value)
    orphan = int(pidfile.read_text())
    waits.wait_for(lambda: not pid_alive(orphan), 10, "the backgrounded sleep to die")



def test_a_daemon_keeping_the_output_pipe_does_not_hold_the_command(tmp_path, monkeypatch):
    """A command that leaves a process behind with its stdout (a service that forgets to
    close it) ends when the command ends plus a bounded drain, with the output read so far."""
    from hahooks import spawn

    monkeypatch.setattr(spawn, "DRAIN_AFTER_EXIT", 0.2)
    pidfile = tmp_path / "kept.pid"
    script = f"echo started; (sleep 60; echo late) & echo $! > {pidfile}; exit 0"
    try:
        r = Runner().run(["sh", "-c", script], readonly=False, timeout=30)
        assert r.ok and r.stdout == "started\n" and not r.timed_out
        assert pid_alive(int(pidfile.read_text())), "the kept process is still running"
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), 9)

def test_dry_run_runs_queries_and_only_lists_changes(tmp_path, json_log):
    marker = tmp_path / "changed"
    runner = Runner(dry_run=True)
    probe = runner.run(["echo", "looked"], readonly=True)
    change = runner.run(["touch", str(marker)], readonly=False)
    assert probe.stdout == "looked\n" and not probe.dry_run
    assert change.dry_run and change.ok and not marker.exists()
    assert runner.planned == [f"would run: touch {marker}"]
    recs = records(json_log, event="command")
    assert [r.get("dry_run", False) for r in recs] == [False, True]


def test_tool_lookup_with_devd_minimal_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    runner = Runner(platforms.LINUX)
    # found through the platform's sbin dirs although PATH has none of them
    assert runner.which("sh") in ("/usr/bin/sh", "/bin/sh", "/usr/local/bin/sh")
    assert runner.run(["sh", "-c", "echo ok"], readonly=True).stdout == "ok\n"


def test_tool_lookup_overrides_and_search_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/sbin:/bin:/usr/sbin:/usr/bin")
    bindir = tmp_path / "opt-bin"
    bindir.mkdir()
    tool = bindir / "hh-probe-tool"
    tool.write_text("#!/bin/sh\necho from-search-path\n")
    tool.chmod(0o755)
    other = tmp_path / "hh-pinned"
    other.write_text("#!/bin/sh\necho pinned\n")
    other.chmod(0o755)
    with pytest.raises(NotInstalled) as err:
        Runner().run(["hh-probe-tool"], readonly=True)
    assert "command not found: hh-probe-tool" in str(err.value) and err.value.exit_code == 5
    runner = Runner(search_dirs=[str(bindir)], tool_paths={"hh-probe-tool": str(other),
                                                           "gone": "/nonexistent/gone"})
    assert runner.run(["hh-probe-tool"], readonly=True).stdout == "pinned\n"
    assert Runner(search_dirs=[str(bindir)]).run(["hh-probe-tool"],
                                                 readonly=True).stdout == "from-search-path\n"
    with pytest.raises(NotInstalled) as err:
        runner.run(["gone"], readonly=True)
    assert "[node] paths sets /nonexistent/gone" in str(err.value)


def test_environment_and_input(tmp_path):
    runner = Runner(env={"HH_A": "1"})
    r = runner.run(["sh", "-c", 'echo "$HH_A$HH_B"; cat'], readonly=True, env={"HH_B": "2"},
                   input="fed\n")
    assert r.stdout == "12\nfed\n"


def test_tracker_records_each_command_before_it_is_spawned(tmp_path):
    """The record comes first and names a token the command carries in its environment: a
    transition killed right after the spawn still leaves a record that finds the command."""
    seen = []
    out = tmp_path / "env"

    class Tracker:
        def command_started(self, token, argv):
            seen.append(("start", token, argv, out.exists()))

        def command_finished(self, token):
            seen.append(("end", token))

    runner = Runner()
    runner.tracker = Tracker()
    runner.run(["sh", "-c", f'echo "$HAHOOKS_RUN" > {out}'], readonly=False)
    (kind, token, argv, spawned_before_record), end = seen
    assert kind == "start" and not spawned_before_record and end == ("end", token)
    assert out.read_text().strip() == token and token.startswith(f"{os.getpid()}.")


# -- waits ------------------------------------------------------------------------------

def test_wait_for_polls_fast_then_backs_off_to_40ms(monkeypatch):
    naps = []
    monkeypatch.setattr(waits.time, "sleep", naps.append)
    calls = iter([None] * 8 + ["ready"])
    assert waits.wait_for(lambda: next(calls), 60, "x") == "ready"
    assert naps == [0.005, 0.01, 0.02, 0.04, 0.04, 0.04, 0.04, 0.04]
    assert max(naps) <= waits.MAX_POLL


def test_wait_for_times_out_with_what_it_waited_for():
    with pytest.raises(WaitTimeout) as err:
        waits.wait_for(lambda: False, 0.05, "the moon")
    assert "waiting for the moon" in str(err.value)


def test_wait_for_path_and_no_process(tmp_path):
    from hahooks import procs

    target, title = tmp_path / "dev-node", f"hh-wait-title: {os.getpid()} (secondary)"
    gate = tmp_path / "gate"
    proc = subprocess.Popen(["bash", "-c", f"touch {target}; exec -a '{title}' bash -c "
                             f"'while [ ! -e {gate} ]; do sleep 0.01; done'"])
    assert waits.wait_for_path(str(target), 30) == str(target)
    waits.wait_for(lambda: procs.find_by_title(title), 30, "the titled process")
    with pytest.raises(WaitTimeout):
        procs.wait_for_no_process(title, 0.1)
    gate.touch()
    procs.wait_for_no_process(title, 30)
    assert proc.wait(timeout=30) == 0


def test_titles_running_names_those_some_process_carries(tmp_path):
    from hahooks import procs

    gate = tmp_path / "gate"
    titles = [f"hh-titles: {os.getpid()}-{n} (secondary)" for n in ("a", "b", "c")]
    started = [subprocess.Popen(["bash", "-c", f"exec -a '{t}' bash -c "
                                 f"'while [ ! -e {gate} ]; do sleep 0.01; done'"])
               for t in (titles[2], titles[0])]
    try:
        waits.wait_for(lambda: len(procs.titles_running(titles)) == 2, 30, "both titles")
        # in the order asked, the absent one left out
        assert procs.titles_running(titles) == [titles[0], titles[2]]
        assert procs.titles_running([titles[1]]) == []
    finally:
        gate.touch()
        for proc in started:
            proc.wait(timeout=30)
    waits.wait_for(lambda: not procs.titles_running(titles), 30, "the titles to go")


def test_retry_backs_off_until_success_and_reraises_the_last_error(monkeypatch):
    naps = []
    monkeypatch.setattr(waits.time, "sleep", naps.append)
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 4:
            raise CommandFailed(_result(len(attempts)))
        return "ok"

    assert waits.retry(flaky, 60, "flaky") == "ok"
    assert naps == [0.02, 0.04, 0.08]
    with pytest.raises(CommandFailed) as err:
        waits.retry(lambda: (_ for _ in ()).throw(CommandFailed(_result(9))), 0.0, "never")
    assert "exit 9" in str(err.value)


def test_deadline_is_shared_by_attempts():
    d = waits.Deadline(0.0)
    assert d.expired and d.remaining() == 0.0 and d.remaining(floor=0.05) == 0.05
    assert not waits.Deadline(60).expired


def test_no_literal_sleeps_outside_waits():
    import re

    lib = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib",
                       "hahooks")
    offenders = []
    for dirpath, _, files in os.walk(lib):
        for name in files:
            path = os.path.join(dirpath, name)
            if name.endswith(".py") and path != os.path.join(lib, "waits.py") and \
                    "/sim/" not in path and "/drill/" not in path:
                for no, line in enumerate(open(path), 1):
                    if re.search(r"\btime\.sleep\(\s*[\d.]+\s*\)", line):
                        offenders.append(f"{path}:{no}")
    assert offenders == []


def _result(code):
    from hahooks.runner import Result

    return Result(["tool"], code, stderr=f"failure {code}")


def test_json_log_records_are_single_lines(json_log):
    logging.getLogger("hahooks.test").info("two\nlines", extra={"event": "x"})
    text = json_log.read_text()
    assert len(text.splitlines()) == 1
    assert json.loads(text)["message"] == "two\nlines"
