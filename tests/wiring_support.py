"""Helpers shared by the wiring tests: a `hahooks` command that runs this checkout, a stack
of `command` layers that log what they do, and waiting for a detached transition."""
from __future__ import annotations

import json

from conftest import install_hahooks_command
from hahooks import waits
from hahooks.state import StateDir

# What devd and freevrrpd give their children (rc.d scripts start them with this PATH).
MINIMAL_ENV = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin"}


# An executable `hahooks` for this checkout, usable with devd's minimal PATH.
hahooks_command = install_hahooks_command


def layer(tmp_path, name: str, acquire_extra: str = "") -> str:
    """A [[resource]] of kind command: status is a read-only `test -e`, acquire/release log
    one line each to commands.log (so a test sees every mutating command)."""
    log = tmp_path / "commands.log"
    mark = tmp_path / f"{name}.held"
    acquire = f"{acquire_extra}echo acquire {name} >> {log} && touch {mark}"
    return f"""
[[resource]]
name = "{name}"
kind = "command"
acquire = ["sh", "-c", {json.dumps(acquire)}]
release = ["sh", "-c", "echo release {name} >> {log} && rm -f {mark}"]
status = ["test", "-e", "{mark}"]
"""


def stack_config(write_config, tmp_path, names=("replication", "filesystem"), *,
                 wiring: str = "", gate_layer: str | None = None, gate=None) -> str:
    """A config of command layers; `gate_layer`'s acquire logs 'started NAME' and then
    blocks until a line is written to the FIFO `gate`."""
    body = ""
    for name in names:
        extra = ""
        if name == gate_layer:
            extra = f"echo started {name} >> {tmp_path / 'commands.log'} && read go < {gate} && "
        body += layer(tmp_path, name, extra)
    return write_config(body + ("\n" + wiring if wiring else ""))


def commands_log(tmp_path) -> list[str]:
    path = tmp_path / "commands.log"
    return path.read_text().splitlines() if path.exists() else []


def wait_converged(config_path: str, role: str, timeout: float = 60) -> dict:
    """Wait until the newest recorded desire is done; return done.json. Fails if the
    newest desire is not `role`."""
    from hahooks import config

    state = StateDir(config.load(config_path).node.state_dir)

    def converged():
        desire, done = state.desire(), state.done()
        return done if desire and done and done.get("seq", 0) >= desire.seq else None

    done = waits.wait_for(converged, timeout, f"{role} to converge")
    assert done["role"] == role, done
    return done


def command_records(tmp_path) -> list[dict]:
    """The runner's JSON log records of commands that ran (conftest: log in tmp_path)."""
    path = tmp_path / "hahooks.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("event") == "command":
            out.append(rec)
    return out
