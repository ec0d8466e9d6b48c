"""`hahooks install-wiring`: every daemon's entry point where the daemon looks, bound to
the installing interpreter; idempotent; --dry-run changes nothing; --uninstall removes
exactly what the manifest records."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import ROOT, run_hahooks

FREEBSD_FILES = ["sbin/hahooks", *(f"libexec/hahooks/{h}" for h in (
    "import-pool", "master", "mount", "slave", "ucarp-down", "ucarp-up")),
    "etc/ha.d/resource.d/hahooks", "etc/ha.d/resource.d/hahooks-import-pool",
    "etc/ha.d/resource.d/hahooks-mount", "lib/ocf/resource.d/hahooks/hahooks",
    "etc/devd/hahooks.conf", "share/man/man8/hahooks.8", "share/man/man5/hahooks.toml.5"]


def tree(top) -> dict:
    """{relative path: (mode, mtime_ns, link or size)} of everything under top."""
    out = {}
    for base, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(base, name)
            st = os.lstat(path)
            out[os.path.relpath(path, top)] = (st.st_mode, st.st_mtime_ns,
                                               os.readlink(path) if os.path.islink(path)
                                               else st.st_size)
    return out


def install(prefix, *extra, check=0):
    return run_hahooks("install-wiring", "--platform", "freebsd", "--prefix", prefix,
                       *extra, check=check)


def test_dry_run_changes_nothing(tmp_path):
    prefix = tmp_path / "usr" / "local"
    proc = install(prefix, "--dry-run")
    assert not os.path.exists(tmp_path / "usr")
    for rel in FREEBSD_FILES:
        assert f"would install {prefix}/{rel}" in proc.stdout, rel
    assert "dry run, nothing changed" in proc.stdout


def test_install_is_idempotent_and_binds_the_interpreter(tmp_path):
    prefix = tmp_path / "usr" / "local"
    first = install(prefix)
    for rel in FREEBSD_FILES:
        path = prefix / rel
        assert os.path.lexists(path), rel
        assert f"install {path}" in first.stdout
        if not os.path.islink(path):
            want = 0o644 if rel.startswith(("etc/devd", "share/man")) else 0o755
            assert os.stat(path).st_mode & 0o777 == want, rel
    before = tree(tmp_path)
    second = install(prefix)
    assert "nothing to change (14 entries already in place)" in second.stdout
    assert "install " not in second.stdout and "replace " not in second.stdout
    assert tree(tmp_path) == before                              # not even rewritten
    hahooks = str(prefix / "sbin" / "hahooks")
    # sh scripts exec the installed command, not whatever PATH finds
    assert f"exec {hahooks} master \"$@\"" in (prefix / "libexec/hahooks/master").read_text()
    assert f"exec {hahooks} heartbeat \"$@\"" in (
        prefix / "etc/ha.d/resource.d/hahooks").read_text()
    # devd rules name the installed command
    rules = (prefix / "etc/devd/hahooks.conf").read_text()
    assert f'action "{hahooks} devd-event --detach' in rules
    assert '"/usr/local/sbin/hahooks' not in rules
    # the OCF agent runs with the interpreter that has hahooks
    agent = (prefix / "lib/ocf/resource.d/hahooks/hahooks").read_text()
    first_line = agent.splitlines()[0]
    assert first_line.startswith("#!/") and "env" not in first_line
    proc = subprocess.run([first_line[2:], "-c", "import hahooks, sh, psutil"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0
    # the installed hahooks runs
    out = subprocess.run([hahooks, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("hahooks ")


def test_a_changed_entry_is_put_back(tmp_path):
    prefix = tmp_path / "usr" / "local"
    install(prefix)
    hook = prefix / "libexec/hahooks/slave"
    hook.write_text("#!/bin/sh\nexit 0\n")
    proc = install(prefix)
    assert f"replace {hook}" in proc.stdout
    assert "exec " in hook.read_text()
    os.chmod(hook, 0o700)                                      # a mode change counts too
    assert f"replace {hook}" in install(prefix).stdout
    assert os.stat(hook).st_mode & 0o777 == 0o755


def test_uninstall_removes_exactly_what_it_installed(tmp_path):
    prefix = tmp_path / "usr" / "local"
    (prefix / "etc" / "devd").mkdir(parents=True)               # existed before: stays
    (prefix / "etc" / "devd" / "other.conf").write_text("# someone else's rules\n")
    before = tree(tmp_path)
    install(prefix)
    manifest = json.loads((prefix / "share/hahooks/installed-wiring.json").read_text())
    assert sorted(manifest["files"]) == sorted(str(prefix / r) for r in FREEBSD_FILES)
    edited = prefix / "etc/ha.d/resource.d/hahooks-mount"
    edited.write_text(edited.read_text() + "# local edit\n")
    proc = install(prefix, "--uninstall", "--dry-run")
    assert os.path.exists(prefix / "sbin" / "hahooks")
    assert f"would remove {prefix}/sbin/hahooks" in proc.stdout
    proc = install(prefix, "--uninstall")
    assert f"keep {edited} (changed since it was installed)" in proc.stdout
    assert edited.exists()                                     # the admin's file, kept
    edited.unlink()
    after = tree(tmp_path)
    # what was there before is as it was (directory mtimes moved, nothing else); only the
    # directories that held the kept file are left
    kept_dirs = {"usr/local/etc/ha.d", "usr/local/etc/ha.d/resource.d"}
    assert {k: v[0::2] for k, v in after.items() if k not in kept_dirs} == \
        {k: v[0::2] for k, v in before.items()}
    assert set(after) - set(before) == kept_dirs
    assert "nothing to remove" in install(prefix, "--uninstall").stdout


def test_devd_rules_rendered_for_a_config(write_config, tmp_path):
    cfg = write_config('[[resource]]\nname = "a"\nkind = "command"\nacquire = ["true"]\n'
                       'release = ["true"]\nstatus = ["true"]\n')
    with open(cfg, "a") as fh:
        fh.write('\n[wiring]\nvhid = 7\ninterface = "igb0"\n')
    prefix = tmp_path / "usr" / "local"
    install(prefix, "-c", cfg)
    rules = (prefix / "etc/devd/hahooks.conf").read_text()
    assert 'match "subsystem"\t"7@igb0";' in rules
    assert f"-c {cfg} CARP 7@igb0 MASTER" in rules


def test_linux_layout_has_no_devd_and_uses_the_daemons_dirs(tmp_path):
    proc = run_hahooks("install-wiring", "--platform", "linux", "--root", tmp_path,
                       "--dry-run", check=0)
    assert "would install /usr/lib/ocf/resource.d/hahooks/hahooks" in proc.stdout
    assert "would install /etc/ha.d/resource.d/hahooks-mount" in proc.stdout
    assert "would install /usr/local/sbin/hahooks" in proc.stdout
    assert "devd" not in proc.stdout
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args", [["--prefix", "usr/local"], ["--root", "rel"]])
def test_relative_paths_are_refused(args):
    proc = run_hahooks("install-wiring", *args, "--dry-run")
    assert proc.returncode == 2 and "must be an absolute path" in proc.stderr


def test_warns_when_the_interpreter_cannot_import_hahooks(tmp_path):
    """Run from a checkout (PYTHONPATH=lib) by a python without hahooks installed, the
    entry points it bakes in would not work: say so."""
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True, timeout=120)
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "lib")}
    proc = subprocess.run([str(python), "-m", "hahooks", "install-wiring", "--platform",
                           "freebsd", "--prefix", str(tmp_path / "usr")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "cannot import sh psutil pythonjsonlogger without PYTHONPATH" in proc.stderr
    # hahooks on PYTHONPATH only, its dependencies installed (Debian's python3-sh, ...)
    probe = subprocess.run(["/usr/bin/python3", "-c", "import sh, psutil, pythonjsonlogger"],
                           capture_output=True)
    if probe.returncode == 0:
        proc = subprocess.run(["/usr/bin/python3", "-m", "hahooks", "install-wiring",
                               "--platform", "freebsd", "--prefix", str(tmp_path / "usr")],
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "/usr/bin/python3 cannot import hahooks without PYTHONPATH" in proc.stderr
    # the interpreter of the test run has everything: no warning
    assert "warning" not in install(tmp_path / "usr").stderr
