"""Issue 17 item 4: the state dir's filesystem is full (a real 16 KiB tmpfs, filled)."""
from __future__ import annotations

import errno
import os
import subprocess

import pytest

from conftest import require_root, require_tool, run_hahooks

LAYER = """\
[[resource]]
name = "layer"
kind = "command"
acquire = ["sh", "-c", "echo acquired >> {trace}"]
release = ["sh", "-c", "echo released >> {trace}"]
status = ["sh", "-c", "test -e {trace}"]
"""


@pytest.fixture
def full_state_dir(tmp_path):
    """tmp_path/state: a tmpfs of 16 KiB (0700, root's), filled to the last byte."""
    require_root()
    require_tool("mount", "umount")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs", str(state)],
                   check=True, capture_output=True)
    try:
        with open(state / "filler", "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"x" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        yield str(state)
    finally:
        subprocess.run(["umount", str(state)], check=True, capture_output=True)


def test_master_with_a_full_state_dir_says_so_and_does_nothing(full_state_dir, write_config,
                                                              tmp_path):
    trace = tmp_path / "trace"
    cfg = write_config(LAYER.format(trace=trace))
    r = run_hahooks("master", "-c", cfg)
    assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert f"state dir {full_state_dir}: no space left" in lines[0], lines[0]
    assert "desire.json" in lines[0], lines[0]          # names the file it could not write
    assert "internal error" not in lines[0]
    assert not trace.exists(), "the layer was acquired"
    leftovers = [n for n in os.listdir(full_state_dir) if n.endswith(".tmp")]
    assert leftovers == [], leftovers


def test_status_reports_an_unwritable_state_dir_as_critical(full_state_dir, write_config,
                                                            tmp_path):
    cfg = write_config(LAYER.format(trace=tmp_path / "trace"))
    r = run_hahooks("status", "-c", cfg)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    first = r.stdout.splitlines()[0]
    assert first.startswith("CRITICAL:"), first
    assert f"state dir {full_state_dir} cannot be written" in first, first
    assert "no space left" in first, first


def test_status_of_a_writable_state_dir_is_not_critical(write_config, tmp_path):
    """The released stack with a usable state dir stays OK (the check has no false alarm)."""
    cfg = write_config(LAYER.format(trace=tmp_path / "trace"))
    r = run_hahooks("status", "-c", cfg)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "state dir" not in r.stdout
