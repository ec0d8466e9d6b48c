"""Packaging: the wheel and the sdist carry the wiring (hooks/, devd/, ocf/,
heartbeat-resource.d/, man/) from their one source in the repository, and the sdist has
what a port or a Debian source package builds from."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from conftest import ROOT, require_tool
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


def test_wheel_leaves_the_lab_out_and_the_sdist_keeps_it(built):
    """The production install is free of the lab (setup.cfg); the sdist's tests need it."""
    wheel, sdist = built
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "hahooks/cli.py" in names and "hahooks/engine.py" in names
    assert [n for n in names if n.startswith("hahooks/lab")] == []
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for needed in ("lib/hahooks/lab/__init__.py", "lib/hahooks/lab/sim/main.py",
                   "lib/hahooks/lab/sandbox/lab.py", "lib/hahooks/lab/drill/command.py"):
        assert needed in names, needed


def test_sdist_has_license_docs_tests_wiring_and_examples(built):
    _, sdist = built
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for needed in ("LICENSE", "CHANGELOG.md", "setup.py", "setup.cfg", "README.md",
                   "tests/conftest.py", "examples/command-stack.toml", "docs/wiring.md",
                   "docs/install.md", "man/hahooks.8", "packaging/freebsd/Makefile",
                   "packaging/freebsd/pkg-plist", "packaging/debian/hahooks.logrotate",
                   "scripts/install-production",
                   *(f"{d}/{n}" for d, n in WIRING)):
        assert needed in names, needed


def test_checkout_finds_its_own_wiring():
    """An editable install and the tests read the repository's directories."""
    assert shipped.root() == ROOT
    assert shipped.path("ocf", "hahooks") == os.path.join(ROOT, "ocf", "hahooks")
    assert "master" in shipped.names("hooks")
    with pytest.raises(ValueError):
        shipped.path("lib", "hahooks")


# -- the FreeBSD port skeleton and the Debian snippets ---------------------------------------
PORT = os.path.join(ROOT, "packaging", "freebsd")


def port_makefile() -> str:
    with open(os.path.join(PORT, "Makefile")) as fh:
        return fh.read().replace("\\\n", " ")


def test_port_installs_what_install_wiring_installs():
    """pkg-plist and `hahooks install-wiring --platform freebsd` put the same entry points
    in the same places (the port ships the devd rules as a sample: they name a vhid)."""
    from hahooks import platforms
    from hahooks.commands import install_wiring

    layout = platforms.WIRING_LAYOUTS["freebsd"].resolve("/usr/local")
    wanted = set()
    for entry in install_wiring.plan(layout, interpreter="/usr/local/bin/python3.11",
                                     config_path=None):
        rel = os.path.relpath(entry.path, "/usr/local")
        if rel.startswith("share/man/"):
            rel += ".gz"                              # the ports framework compresses them
        if rel == "etc/devd/hahooks.conf":
            rel += ".sample"
        wanted.add(rel)
    with open(os.path.join(PORT, "pkg-plist")) as fh:
        plist = [line.strip() for line in fh if line.strip()]
    assert wanted <= set(plist), wanted - set(plist)
    examples = sorted(line.rsplit("/", 1)[1] for line in plist if "EXAMPLESDIR" in line)
    assert examples == sorted(os.listdir(os.path.join(ROOT, "examples")))
    make = port_makefile()
    assert re.search(r"^HOOKS=\s*" + " ".join(shipped.names("hooks")) + "$", make, re.M)
    assert re.search(r"^HEARTBEAT=\s*" + " ".join(shipped.names("heartbeat-resource.d"))
                     + "$", make, re.M)
    for path in ("files/newsyslog-hahooks.conf", "files/pkg-message.in", "pkg-descr"):
        assert os.path.isfile(os.path.join(PORT, path)), path


def test_port_run_depends_floors_are_the_tested_ones():
    with open(os.path.join(ROOT, "packaging", "floor-constraints.txt")) as fh:
        pinned = dict(line.strip().split("==") for line in fh
                      if line.strip() and not line.startswith("#"))
    depends = dict(re.findall(r"\$\{PYTHON_PKGNAMEPREFIX\}([\w-]+)>=([\d.]+):",
                              port_makefile().split("RUN_DEPENDS=", 1)[1].split("\n")[0]))
    assert depends == pinned


def test_debian_logrotate_snippet_rotates_the_log(tmp_path):
    require_tool("logrotate")
    log = tmp_path / "hahooks.jsonl"
    log.write_text('{"message": "one"}\n')
    with open(os.path.join(ROOT, "packaging", "debian", "hahooks.logrotate")) as fh:
        conf = fh.read().replace("/var/log/hahooks.jsonl", str(log))
    (tmp_path / "hahooks.conf").write_text(conf)
    proc = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"),
                           str(tmp_path / "hahooks.conf")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "hahooks.jsonl.1").read_text() == '{"message": "one"}\n'
    assert log.exists() and log.read_text() == ""               # created afresh
    assert os.stat(log).st_mode & 0o777 == 0o640


def test_wheel_built_from_the_sdist_carries_the_wiring(built, tmp_path):
    """A port or a Debian source package builds from the sdist, not from git."""
    _, sdist = built
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(sdist),
                    "-w", str(tmp_path)], check=True, timeout=600)
    wheel, = tmp_path.glob("hahooks-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert {f"hahooks/_wiring/{d}/{n}" for d, n in WIRING} <= names
