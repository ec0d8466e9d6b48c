"""The dependencies as installed (CI runs this on the floor releases Debian 12 and the
FreeBSD ports ship and on the newest): each command gets its own process group whatever sh's
major version, the JSON log has its fields whatever python-json-logger's, and setup.cfg's
floors are the releases scripts/test-floors tests."""
from __future__ import annotations

import configparser
import json
import logging
import os
import re

import psutil
import pytest
import sh

from conftest import ROOT
from hahooks import logs, procs
from hahooks.runner import Runner
from hahooks.spawn import sh_group_options as _sh_group_options


def test_sh_options_per_major_version():
    assert _sh_group_options("1.14.2") == {"_new_session": True}
    assert _sh_group_options("2.4.0") == {"_new_group": True, "_return_cmd": True}


@pytest.mark.parametrize("spawner", ["subprocess", "sh"])
def test_each_command_leads_its_own_process_group_and_gets_its_argv_alone(spawner,
                                                                          monkeypatch):
    """Both spawners (spawn.py). sh 1.x passes an option it does not know to the command as `--option`; the runner's
    timeout kills the command's group, so the command must lead one."""
    monkeypatch.setenv("HAHOOKS_SPAWN", spawner)
    out = Runner().run(["sh", "-c", 'echo "$$ $*"; cut -d" " -f5 /proc/$$/stat', "sh",
                        "only", "these"], readonly=True)
    first, group = out.stdout.splitlines()
    pid, args = first.split(" ", 1)
    assert args == "only these", f"sh {sh.__version__} passed extra arguments: {args!r}"
    assert group == pid, f"sh {sh.__version__}: command not in its own process group"


def test_json_log_fields(tmp_path):
    path = str(tmp_path / "log.jsonl")
    logs.setup(node="nodea", log_file=path, stderr_level=logging.CRITICAL)
    try:
        logging.getLogger("hahooks.test").info("hello %s", "there", extra={"event": "x"})
    finally:
        for h in list(logging.getLogger("hahooks").handlers):
            logging.getLogger("hahooks").removeHandler(h)
            h.close()
    with open(path) as fh:
        record = json.loads(fh.readline())
    assert {k: record[k] for k in ("level", "logger", "message", "event", "node")} == {
        "level": "INFO", "logger": "hahooks.test", "message": "hello there", "event": "x",
        "node": "nodea"}
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", record["ts"])
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.*\+00:00$", record["time"])
    assert not {"levelname", "asctime", "name", "msg", "args"} & set(record)


def test_psutil_process_calls():
    me = psutil.Process()
    assert os.getppid() in procs.protected_pids()
    assert procs.title(me) == " ".join(me.cmdline())
    assert procs.pid_running(os.getpid())


def _floors_in_setup_cfg() -> dict:
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    floors = {}
    for line in cfg["options"]["install_requires"].split("\n"):
        m = re.match(r"\s*([\w-]+)>=([\d.]+)", line)
        if m:
            floors[m.group(1)] = m.group(2)
    return floors


def test_setup_cfg_floors_are_the_tested_ones():
    with open(os.path.join(ROOT, "packaging", "floor-constraints.txt")) as fh:
        pinned = dict(line.strip().split("==") for line in fh
                      if line.strip() and not line.startswith("#"))
    assert _floors_in_setup_cfg() == pinned
