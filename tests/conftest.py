"""Shared test helpers. Tests run as root against real parts; a missing component skips
locally but FAILS when HAHOOKS_STRICT or CI is set (a skip in CI is a failure)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "lib")
STRICT = bool(os.environ.get("HAHOOKS_STRICT") or os.environ.get("CI"))

# The agents the tests start publish their express-lane pointers here, not in
# /var/run/hahooks (an agent killed by a test leaves its pointer); removed after the session.
if "HAHOOKS_RUN_DIR" not in os.environ:
    import tempfile

    os.environ["HAHOOKS_RUN_DIR"] = tempfile.mkdtemp(prefix="hahooks-run-")
    os.chmod(os.environ["HAHOOKS_RUN_DIR"], 0o755)
    _OWN_RUN_DIR = os.environ["HAHOOKS_RUN_DIR"]
else:
    _OWN_RUN_DIR = None


def pytest_sessionfinish(session, exitstatus):
    if _OWN_RUN_DIR:
        shutil.rmtree(_OWN_RUN_DIR, ignore_errors=True)


def require(condition: bool, what: str) -> None:
    """Skip (locally) or fail (CI) when a component the test needs is missing."""
    if condition:
        return
    if STRICT:
        pytest.fail(f"component missing in CI: {what}", pytrace=False)
    pytest.skip(f"component missing: {what}")


def require_root() -> None:
    require(os.geteuid() == 0, "root")


def require_tool(*tools: str) -> None:
    for tool in tools:
        require(shutil.which(tool) is not None or
                any(os.access(os.path.join(d, tool), os.X_OK)
                    for d in ("/sbin", "/usr/sbin", "/usr/local/sbin")), f"tool {tool}")


def hahooks_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = LIB + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_hahooks(*args, env=None, timeout=120, check=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "hahooks", *map(str, args)],
                          capture_output=True, text=True, env=env or hahooks_env(),
                          timeout=timeout)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def config_writer(directory, mode: int = 0o600):
    """write_config for `directory`: write(body, node_extra="") -> path of a config (mode
    `mode`) whose state and log live in `directory`. `body` holds the [[resource]] tables."""
    def write(body: str, node_extra: str = "", name: str = "hahooks.toml",
              node_name: str = "nodea") -> str:
        path = os.path.join(str(directory), name)
        with open(path, "w") as fh:
            fh.write(textwrap.dedent(f"""\
                [node]
                name = "{node_name}"
                state_dir = "{os.path.join(str(directory), 'state')}"
                log_file = "{os.path.join(str(directory), 'hahooks.jsonl')}"
                syslog = false
                """) + textwrap.dedent(node_extra) + "\n" + textwrap.dedent(body))
        os.chmod(path, mode)
        return path
    return write


@pytest.fixture
def write_config(tmp_path):
    """write_config(body, node_extra="") -> path of a 0600 config whose state and log live
    in tmp_path. `body` holds the [[resource]] tables."""
    return config_writer(tmp_path)


def install_hahooks_command(directory) -> str:
    """Write an executable `hahooks` into `directory` that runs this checkout, for the sh
    entry points (hooks/, heartbeat-resource.d/) and the daemons, which find it on PATH.
    Returns its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(str(directory), "hahooks")
    with open(path, "w") as fh:
        fh.write(f"#!/bin/sh\nPYTHONPATH={LIB}${{PYTHONPATH:+:$PYTHONPATH}} "
                 f"exec {sys.executable} -m hahooks \"$@\"\n")
    os.chmod(path, 0o755)
    return path


def pid_alive(pid: int) -> bool:
    """A live, non-zombie process, read from /proc here rather than through the library
    (the tests that use it check the library's own process handling)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):   # gone between open and read: ESRCH
        return False
