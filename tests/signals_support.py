"""Helpers for the monitoring-signal tests: a work dir a non-root user can reach, and
running hahooks as that user."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import hahooks_env

NOBODY = 65534


@pytest.fixture
def public_dir():
    """A 0755 dir under /tmp (pytest's tmp_path is 0700, so nobody could not reach a
    config in it); removed afterwards."""
    path = tempfile.mkdtemp(prefix="hh-signals-", dir="/tmp")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def hahooks_as(uid: int, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m hahooks ARGS` with real and effective uid/gid `uid` and no groups."""
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           sys.executable, "-m", "hahooks", *map(str, args)],
                          capture_output=True, text=True, env=hahooks_env(), timeout=timeout,
                          cwd="/")
