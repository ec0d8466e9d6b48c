"""Packaging: the wheel and the sdist carry the wiring (hooks/, devd/, ocf/,
heartbeat-resource.d/, man/) from their one source in the repository, and the sdist has
what a port or a Debian source package builds from."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from conftest import ROOT
from hahooks.wiring import shipped

WIRING = [(d, n) for d in shipped.WIRING_DIRS
          for n in sorted(os.listdir(os.path.join(ROOT, d)))
          if os.path.isfile(os.path.join(ROOT, d, n))]


def clean_copy(dest) -> str:
    """The checkout's tracked files only (no build/, *.egg-info or _wiring left over)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(os.path.join(dest, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), os.path.join(dest, name))
    return str(dest)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One wheel and one sdist built from a clean copy of the checkout."""
    top = tmp_path_factory.mktemp("build")
    src = clean_copy(top / "src")
    out = top / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", src, "-w", str(out)], check=True, timeout=600)
    subprocess.run([sys.executable, "-c", "from setuptools import build_meta as b; import sys;"
                    " b.build_sdist(sys.argv[1])", str(out)], cwd=src, check=True, timeout=600)
    wheel, = out.glob("hahooks-*.whl")
    sdist, = out.glob("hahooks-*.tar.gz")
    return wheel, sdist


def test_wheel_carries_every_wiring_file_unchanged(built):
    wheel, _ = built
    assert len(WIRING) >= 14
    with zipfile.ZipFile(wheel) as zf:
        for directory, name in WIRING:
            member = f"hahooks/_wiring/{directory}/{name}"
            with open(os.path.join(ROOT, directory, name), "rb") as fh:
                assert zf.read(member) == fh.read(), member
            if os.access(os.path.join(ROOT, directory, name), os.X_OK):
                assert zf.getinfo(member).external_attr >> 16 & 0o111, f"{member} not +x"


def test_sdist_has_license_docs_tests_wiring_and_examples(built):
    _, sdist = built
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for needed in ("LICENSE", "CHANGELOG.md", "setup.py", "setup.cfg", "README.md",
                   "tests/conftest.py", "examples/command-stack.toml", "docs/wiring.md",
                   "man/hahooks.8",
                   *(f"{d}/{n}" for d, n in WIRING)):
        assert needed in names, needed


def test_checkout_finds_its_own_wiring():
    """An editable install and the tests read the repository's directories."""
    assert shipped.root() == ROOT
    assert shipped.path("ocf", "hahooks") == os.path.join(ROOT, "ocf", "hahooks")
    assert "master" in shipped.names("hooks")
    with pytest.raises(ValueError):
        shipped.path("lib", "hahooks")
