"""Progress on long waits (issue 20): a line every few seconds on a terminal, a record in the
JSON log, nothing extra on a daemon's stderr. A blocking `command` layer (the runner's
ticker) and a gmirror rebuild with wait_sync on the simulator (waits.wait_for's tick).
HAHOOKS_PROGRESS_EVERY shortens the interval so the test does not wait 5 s per line."""
from __future__ import annotations

import os
import pty
import subprocess
import sys

from conftest import hahooks_env
from core_support import Stack
from hahooks import waits
from replication_helpers import SimCluster, layer, unique, world  # noqa: F401


def _env(**extra) -> dict:
    return {**hahooks_env(), "HAHOOKS_PROGRESS_EVERY": "0.2", **extra}


def _progress(stack: Stack) -> list[dict]:
    return stack.json_records(event="wait_progress")


def test_a_long_command_reports_progress_on_a_terminal_and_in_the_log(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a",))
    stack.mark("a", "block")
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "hahooks", "master", "-c", stack.config],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=terminal, env=_env())
    os.close(terminal)
    seen = b""
    try:
        waits.wait_for(lambda: len(_progress(stack)) >= 2, 60, "two progress records")

        def read_line() -> bool:
            nonlocal seen
            seen += os.read(controller, 4096)
            return b"still waiting for " in seen and b"acquire a" in seen
        waits.wait_for(read_line, 60, "a progress line on the terminal")
    finally:
        stack.mark("a", "gate")
        assert proc.wait(timeout=60) == 0
        os.close(controller)
    rec = _progress(stack)[0]
    assert rec["what"].endswith(f"acquire a {stack.dir} to finish") and rec["waited"] > 0
    assert rec["limit"] > 0 and rec["level"] == "INFO"


def test_progress_stays_off_a_stderr_that_is_no_terminal(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a",))
    stack.mark("a", "block")
    proc = subprocess.Popen([sys.executable, "-m", "hahooks", "master", "-c", stack.config],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    try:
        waits.wait_for(lambda: len(_progress(stack)) >= 2, 60, "two progress records")
    finally:
        stack.mark("a", "gate")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "still waiting" not in err, err


def test_a_gmirror_rebuild_with_wait_sync_reports_its_percent(tmp_path, world):
    world.configure(gmirror_sync_rate=2048)          # a rebuild that takes a while
    img0, img1 = world.image(unique("img"), 8), world.image(unique("img"), 8)
    name = unique("gm")
    c = SimCluster(tmp_path, world)
    c.write("nodea", layer("img0", "md", file=img0, unit=0) +
            layer("img1", "md", file=img1, unit=1) +
            layer("mirror", "gmirror", mirror=name, components=["md0", "md1"],
                  wait_sync=True))
    env = {**c.env("nodea"), "HAHOOKS_PROGRESS_EVERY": "0.2"}
    proc = subprocess.Popen([sys.executable, "-m", "hahooks", "master", "-c",
                             c.configs["nodea"]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    log = tmp_path / "nodea.jsonl"
    from hahooks import logs

    def progress() -> list[dict]:
        return [r for r in logs.records(str(log)) if r.get("event") == "wait_progress"] \
            if log.exists() else []
    try:
        waits.wait_for(lambda: any("SYNCHRONIZING" in (r.get("detail") or "")
                                   for r in progress()), 120, "a rebuild progress record")
    finally:
        world.configure(gmirror_sync_rate=1 << 30)   # let it finish
        proc.communicate(timeout=120)
    assert proc.returncode == 0
    rec = next(r for r in progress() if "SYNCHRONIZING" in (r.get("detail") or ""))
    assert rec["what"] == f"mirror {name} to be COMPLETE"
    assert "md1 SYNCHRONIZING" in rec["detail"] and "%" in rec["detail"]
    c.hh("nodea", "slave", check=0)
    c.assert_no_violations()
