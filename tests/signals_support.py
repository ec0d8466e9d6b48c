"""Helpers for the monitoring-signal tests: a work dir a non-root user can reach, and
running hahooks as that user."""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import LIB, hahooks_env

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


@functools.cache
def public_lib() -> str:
    """A copy of this checkout's hahooks package in a 0755 dir under /tmp (removed at exit):
    a checkout under a 0700 dir (`mktemp -d`, the README's fresh-clone check) is not
    importable by another user."""
    path = tempfile.mkdtemp(prefix="hh-signals-lib-", dir="/tmp")
    os.chmod(path, 0o755)
    atexit.register(shutil.rmtree, path, True)
    shutil.copytree(os.path.join(LIB, "hahooks"), os.path.join(path, "hahooks"),
                    ignore=shutil.ignore_patterns("__pycache__", "lab"))
    return path


def hahooks_as(uid: int, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m hahooks ARGS` with real and effective uid/gid `uid` and no groups, from
    public_lib()."""
    env = hahooks_env()
    env["PYTHONPATH"] = public_lib()
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           sys.executable, "-m", "hahooks", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout,
                          cwd="/")
