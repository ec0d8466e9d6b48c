"""freevrrpd wiring: the seed 000 example configs read with freevrrpd's grammar, and the
master/backup scripts run as freevrrpd runs them (system(): sh -c, no arguments, its own
minimal environment, blocking): the master script returns while the transition's acquire
is still held back, and the backup script freevrrpd runs at start on a priority != 255 node
changes nothing when nothing is held."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from conftest import ROOT, require
from hahooks import waits
from hahooks.wiring import freevrrpd
from wiring_support import (MINIMAL_ENV, command_records, commands_log, hahooks_command,
                            stack_config, wait_converged)

EXAMPLES = {name: os.path.join(ROOT, "examples", name)
            for name in ("freevrrpd.conf", "freevrrpd-server-b.conf")}


def sections(path: str) -> list[dict]:
    with open(path) as fh:
        return freevrrpd.parse_conf(fh.read(), path)


def test_examples_form_one_virtual_router():
    a, = sections(EXAMPLES["freevrrpd.conf"])
    b, = sections(EXAMPLES["freevrrpd-server-b.conf"])
    assert a["priority"] == "255" and b["priority"] == "200"
    for key in ("serverid", "interface", "addr", "password", "masterscript", "backupscript"):
        assert a[key] == b[key], key
    assert a["serverid"] == "1" and a["addr"] == "192.168.1.102/32"
    assert len(a["password"]) <= freevrrpd.PASSWORD_MAX
    config = "/usr/local/etc/hahooks.toml"
    assert a["masterscript"] == freevrrpd.script_line("/usr/local/sbin/hahooks", "master", config)
    assert a["backupscript"] == freevrrpd.script_line("/usr/local/sbin/hahooks", "slave", config)
    assert "--detach" in a["masterscript"] and "--detach" in a["backupscript"]


def test_seed_server_a_config_is_rejected_like_freevrrpd_does():
    """The seed's Server_A file has no [VRID] header: freevrrpd refuses to start."""
    seed_a = "serverid = 1\ninterface = lnc1\npriority = 255\naddr = 192.168.1.102/32\n"
    with pytest.raises(freevrrpd.FreevrrpdConfError, match=r"cannot see \[VRID\]"):
        freevrrpd.parse_conf(seed_a)
    with pytest.raises(freevrrpd.FreevrrpdConfError, match="no newline"):
        freevrrpd.parse_conf("[VRID]\nserverid = 1")
    # freevrrpd keeps only 8 password characters: the seed's 20 become "borkbork"
    assert freevrrpd.parse_conf("[VRID]\npassword = borkborkborkborkbork\n")[0]["password"] \
        == "borkbork"


def rendered_scripts(cfg: str, hahooks: str) -> dict:
    text = freevrrpd.render_vrid({"vhid": 1, "interface": "lo", "priority": 200,
                                  "vip": "10.99.0.100/24"}, hahooks, cfg)
    section, = freevrrpd.parse_conf(text)
    return section


def run_like_freevrrpd(script: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run(["/bin/sh", "-c", script], env=MINIMAL_ENV, capture_output=True,
                          text=True, timeout=60)
    return proc, time.monotonic() - started


def test_master_script_returns_before_the_acquire_may_finish(write_config, tmp_path):
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    cfg = stack_config(write_config, tmp_path, gate_layer="filesystem", gate=gate)
    scripts = rendered_scripts(cfg, hahooks_command(tmp_path / "bin"))

    proc, took = run_like_freevrrpd(scripts["masterscript"])
    assert proc.returncode == 0, proc
    # The filesystem layer's acquire cannot finish before the gate opens, and the test
    # opens it only now: the hook has returned while the transition goes on.
    assert "acquire filesystem" not in commands_log(tmp_path)
    print(f"\nfreevrrpd masterscript returned in {took * 1000:.0f} ms")
    waits.wait_for(lambda: "started filesystem" in commands_log(tmp_path), 30,
                   "the detached worker to reach the gated acquire")
    assert commands_log(tmp_path) == ["acquire replication", "started filesystem"]
    fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)   # a reader is waiting: does not block
    os.write(fd, b"go\n")
    os.close(fd)
    done = wait_converged(cfg, "master")
    assert done["exit_code"] == 0
    assert commands_log(tmp_path) == ["acquire replication", "started filesystem",
                                      "acquire filesystem"]


def test_backup_script_at_daemon_start_is_a_no_op(write_config, tmp_path):
    """priority != 255: freevrrpd runs backupscript at start, nothing is held yet."""
    cfg = stack_config(write_config, tmp_path)
    scripts = rendered_scripts(cfg, hahooks_command(tmp_path / "bin"))
    proc, took = run_like_freevrrpd(scripts["backupscript"])
    assert proc.returncode == 0, proc
    print(f"\nfreevrrpd backupscript returned in {took * 1000:.0f} ms")
    done = wait_converged(cfg, "slave")
    assert done["exit_code"] == 0
    assert commands_log(tmp_path) == []
    records = command_records(tmp_path)
    assert records, "the worker observed the stack (status commands)"
    assert all(r.get("readonly") for r in records), \
        [r["argv"] for r in records if not r.get("readonly")]


def test_then_master_then_backup_moves_the_stack(write_config, tmp_path):
    cfg = stack_config(write_config, tmp_path)
    scripts = rendered_scripts(cfg, hahooks_command(tmp_path / "bin"))
    for script, role, held in ((scripts["masterscript"], "master", True),
                               (scripts["backupscript"], "slave", False)):
        assert run_like_freevrrpd(script)[0].returncode == 0
        wait_converged(cfg, role)
        assert (tmp_path / "replication.held").exists() is held
        assert (tmp_path / "filesystem.held").exists() is held
    assert commands_log(tmp_path) == ["acquire replication", "acquire filesystem",
                                      "release filesystem", "release replication"]


def test_repo_hook_master_detach_under_minimal_path(write_config, tmp_path):
    """hooks/master --detach, as written in freevrrpd.conf by hand, finds the installed
    hahooks although freevrrpd's PATH lacks /usr/local."""
    hook = os.path.join(ROOT, "hooks", "master")
    require(shutil.which("hahooks", path="/usr/local/sbin:/usr/local/bin") is not None,
            "hahooks installed in /usr/local (scripts/bootstrap)")
    cfg = stack_config(write_config, tmp_path)
    proc, took = run_like_freevrrpd(f"{hook} --detach -c {cfg}")
    assert proc.returncode == 0, proc
    print(f"\nhooks/master --detach returned in {took * 1000:.0f} ms")
    wait_converged(cfg, "master")
    assert (tmp_path / "filesystem.held").exists()
