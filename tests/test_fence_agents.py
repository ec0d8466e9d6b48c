"""[node] fence naming a fence-agents agent: options go on the agent's stdin as key=value
lines (docs/reference/pacemaker.md §8), passwords never on argv or in logs; the sandbox
fence agent speaks that protocol and powers off a real sandbox node."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import hahooks_env, require_root, require_tool
from wiring_support import layer

from hahooks import config as config_mod
from hahooks.errors import ConfigError
from hahooks.peer import PeerActions
from hahooks.runner import Runner


def recording_agent(tmp_path) -> str:
    """A stand-in fence agent that records its argv and stdin and succeeds."""
    path = tmp_path / "fence_recorder"
    path.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'argv'}\n"
                    f"cat > {tmp_path / 'stdin'}\nexit 0\n")
    os.chmod(path, 0o755)
    return str(path)


def fence_config(write_config, tmp_path, argv, options: str) -> str:
    body = layer(tmp_path, "svc")
    node = f"fence = {json.dumps(argv)}\n[node.fence_options]\n{options}"
    return write_config(body, node)


def test_options_and_password_go_on_stdin_only(write_config, tmp_path):
    pw = tmp_path / "ipmi-pw"
    pw.write_text("s3cret-pw\n")
    os.chmod(pw, 0o600)
    agent = recording_agent(tmp_path)
    cfg = config_mod.load(fence_config(write_config, tmp_path, [agent],
                                       f'ip = "10.99.0.50"\nusername = "admin"\n'
                                       f'password_file = "{pw}"\nplug = "nodeb"\n'))
    peer = PeerActions(cfg, Runner(), lambda: False)
    assert peer.fence("test") is True
    lines = (tmp_path / "stdin").read_text().splitlines()
    assert lines == ["action=off", "ip=10.99.0.50", "username=admin", "plug=nodeb",
                     "password=s3cret-pw"]
    assert (tmp_path / "argv").read_text().split() == []
    log = (tmp_path / "hahooks.jsonl")
    assert not log.exists() or "s3cret" not in log.read_text()


def test_password_file_readable_by_others_is_refused(write_config, tmp_path):
    pw = tmp_path / "ipmi-pw"
    pw.write_text("s3cret-pw\n")
    os.chmod(pw, 0o644)
    cfg = config_mod.load(fence_config(write_config, tmp_path, [recording_agent(tmp_path)],
                                       f'password_file = "{pw}"\n'))
    assert PeerActions(cfg, Runner(), lambda: False).fence("test") is False
    assert not (tmp_path / "stdin").exists()          # the agent never ran


def test_fence_options_need_a_bare_agent(write_config, tmp_path):
    """fence-agents read stdin only when argv is empty (lib/fencing.py.py process_input())."""
    path = fence_config(write_config, tmp_path, ["/usr/sbin/fence_ipmilan", "--verbose"],
                        'ip = "10.99.0.50"\n')
    with pytest.raises(ConfigError) as err:
        config_mod.load(path)
    assert "only the agent's path" in str(err.value)


@pytest.mark.parametrize("options, words", [
    ('password = "s3cret"\n', "password_file"),
    ('passwd = "s3cret"\n', "password_file"),
    ('"ip\\nport" = "x"\n', "option name"),
    ('ip = "a\\nb"\n', "one line"),
])
def test_bad_fence_options_are_config_errors(write_config, tmp_path, options, words):
    path = fence_config(write_config, tmp_path, ["/usr/sbin/fence_ipmilan"], options)
    with pytest.raises(ConfigError) as err:
        config_mod.load(path)
    assert words in str(err.value) and "s3cret" not in str(err.value)


def test_sandbox_fence_agent_metadata_and_monitor(tmp_path):
    cmd = [sys.executable, "-m", "hahooks.lab.drill.fence_agent"]
    meta = subprocess.run(cmd, input="action=metadata\n", capture_output=True, text=True,
                          env=hahooks_env(), timeout=30)
    assert meta.returncode == 0 and '<resource-agent name="fence_hahooks_sandbox"' in meta.stdout
    desk = tmp_path / "desk"
    assert subprocess.run(cmd, input=f"action=monitor\ndesk={desk}\n", capture_output=True,
                          text=True, env=hahooks_env(), timeout=30).returncode == 1
    desk.mkdir()
    assert subprocess.run(cmd, input=f"action=monitor\ndesk={desk}\n", capture_output=True,
                          text=True, env=hahooks_env(), timeout=30).returncode == 0


def test_sandbox_fence_agent_powers_off_a_sandbox_node(write_config, tmp_path):
    """hahooks' fence step runs the sandbox agent with its options on stdin; the drill's
    fence desk kills the target node's namespaces (a power-off) before the agent says 0."""
    require_root()
    require_tool("ip", "unshare", "nsenter")
    from hahooks.lab.drill.fence import FenceDesk
    from hahooks.lab.sandbox import Lab

    with Lab(prefix="fagent", workdir=str(tmp_path / "lab")) as lab:
        nodea = lab.node("nodea")
        assert nodea.alive
        up = {"nodeb"}
        desk = FenceDesk(str(tmp_path / "desk"), ("nodea", "nodeb"),
                         lambda target, why: nodea.crash(),
                         lambda n: n in up or (n == "nodea" and nodea.alive)).start()
        try:
            agent = tmp_path / "fence_hahooks_sandbox"       # fence-agents take no argv here
            agent.write_text(f"#!/bin/sh\nexec {sys.executable} -m hahooks.lab.drill.fence_agent\n")
            os.chmod(agent, 0o755)
            cfg = config_mod.load(fence_config(
                write_config, tmp_path, [str(agent)],
                f'desk = "{desk.desk}"\nfencer = "nodeb"\nplug = "nodea"\n'))
            runner = Runner(env={"PYTHONPATH": hahooks_env()["PYTHONPATH"]})
            assert PeerActions(cfg, runner, lambda: False).fence("test") is True
            assert not nodea.alive
            assert [h["ok"] for h in desk.handled] == [True]
        finally:
            desk.stop()
