"""The production install from nothing (docs/install.md): scripts/install-production makes a
fresh venv from /usr/bin/python3, pip-installs hahooks built from a copy of this checkout
(non-editable, runtime dependencies only, from the package index) and runs
`hahooks install-wiring`. Here the wiring goes into a temporary PREFIX with the FreeBSD
layout, where every entry point lives under the prefix, and each daemon's entry point is
run the way its daemon runs it: it must run the installed hahooks."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import ROOT, require, require_root
from test_ocf import exit_reasons, ocf_tester
from wiring_support import stack_config, wait_converged

DRILL_AND_TEST_PACKAGES = {"pytest", "hypothesis", "mfusepy"}
MINIMAL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"       # what devd and Heartbeat give a hook


def install_production(top: str, **env_extra) -> tuple[str, str]:
    """Run scripts/install-production into top/venv, wiring under top/usr/local."""
    require_root()
    require(os.access("/usr/bin/python3", os.X_OK), "/usr/bin/python3")
    os.chmod(top, 0o755)
    venv, prefix = os.path.join(top, "venv"), os.path.join(top, "usr", "local")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(HAHOOKS_VENV=venv, PYTHON="/usr/bin/python3", PATH=MINIMAL_PATH, **env_extra)
    proc = subprocess.run([os.path.join(ROOT, "scripts", "install-production"),
                           "--platform", "freebsd", "--prefix", prefix],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "install-production: ok (hahooks " in proc.stdout
    return venv, prefix


@pytest.fixture(scope="module")
def production():
    """(venv, prefix) of one production install into a world-readable temp dir (ocf-tester
    runs meta-data as nobody)."""
    top = tempfile.mkdtemp(prefix="hahooks-prod-")
    try:
        yield install_production(top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("OCF_")}
    env["PATH"] = MINIMAL_PATH
    env.update(extra)
    return env


def test_venv_has_the_runtime_only(production):
    venv, _ = production
    proc = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "list",
                           "--format=json"], capture_output=True, text=True, timeout=120)
    names = {p["name"].lower() for p in json.loads(proc.stdout)}
    assert {"hahooks", "sh", "psutil", "python-json-logger"} <= names
    assert not names & DRILL_AND_TEST_PACKAGES
    # non-editable: the package lives in the venv, not in this checkout
    proc = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                           "import hahooks; print(hahooks.__file__)"],
                          capture_output=True, text=True, env=clean_env(), cwd="/")
    assert proc.stdout.startswith(venv + "/")


def test_the_drill_says_it_needs_a_development_install(production):
    venv, _ = production
    proc = subprocess.run([os.path.join(venv, "bin", "hahooks"), "drill", "--list"],
                          capture_output=True, text=True, env=clean_env(), cwd="/", timeout=60)
    assert proc.returncode == 5, proc.stderr
    assert "the drill needs a development install (scripts/bootstrap)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_works_on_an_example_config(production, tmp_path):
    _, prefix = production
    cfg = tmp_path / "command-stack.toml"
    shutil.copy(os.path.join(ROOT, "examples", "command-stack.toml"), cfg)
    os.chmod(cfg, 0o600)
    proc = subprocess.run([os.path.join(prefix, "sbin", "hahooks"), "check", "-c", str(cfg)],
                          capture_output=True, text=True, env=clean_env(), cwd="/",
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


def test_devd_rule_runs_the_installed_hahooks(production, write_config, tmp_path):
    venv, prefix = production
    cfg = stack_config(write_config, tmp_path, wiring="[wiring]\nvhid = 3\ninterface = \"em0\"")
    hahooks = os.path.join(prefix, "sbin", "hahooks")
    subprocess.run([hahooks, "install-wiring", "--platform", "freebsd", "--prefix", prefix,
                    "-c", cfg], check=True, capture_output=True, env=clean_env(), timeout=120)
    try:
        with open(os.path.join(prefix, "etc", "devd", "hahooks.conf")) as fh:
            actions = re.findall(r'action "([^"]*)";', fh.read())
        master = next(a for a in actions if a.endswith(" CARP 3@em0 MASTER"))
        command = master.split()[0]
        assert command == hahooks and os.access(command, os.X_OK)
        assert os.path.realpath(command) == os.path.realpath(os.path.join(venv, "bin",
                                                                          "hahooks"))
        # devd runs an action with /bin/sh -c and a minimal environment
        proc = subprocess.run(["/bin/sh", "-c", master], env=clean_env(), cwd="/",
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        done = wait_converged(cfg, "master")
        assert done["exit_code"] == 0, done
        assert (tmp_path / "filesystem.held").exists()
        records = [json.loads(line) for line in open(tmp_path / "hahooks.jsonl")]
        assert any("CARP 3@em0 MASTER" in json.dumps(r) for r in records)
    finally:
        subprocess.run([hahooks, "slave", "--wait", "-c", cfg], env=clean_env(),
                       capture_output=True, timeout=120)
        subprocess.run([hahooks, "install-wiring", "--platform", "freebsd", "--prefix",
                        prefix], env=clean_env(), capture_output=True, timeout=120)
    assert not (tmp_path / "replication.held").exists()


def test_installed_ocf_agent_passes_ocf_tester(production, write_config, tmp_path):
    _, prefix = production
    agent = os.path.join(prefix, "lib", "ocf", "resource.d", "hahooks", "hahooks")
    proc = ocf_tester(agent, stack_config(write_config, tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed all tests" in proc.stdout


def test_installed_ocf_agent_without_hahooks_is_not_installed(production):
    _, prefix = production
    agent = os.path.join(prefix, "lib", "ocf", "resource.d", "hahooks", "hahooks")
    proc = subprocess.run(["/usr/bin/python3", "-S", agent, "monitor"], capture_output=True,
                          text=True, env=clean_env(), timeout=60)
    assert proc.returncode == 5, proc.stderr
    assert len(exit_reasons(proc)) == 1 and "Traceback" not in proc.stderr


def test_heartbeat_script_runs_status(production, write_config, tmp_path):
    _, prefix = production
    cfg = stack_config(write_config, tmp_path)
    script = os.path.join(prefix, "etc", "ha.d", "resource.d", "hahooks")
    proc = subprocess.run([script, cfg, "status"], capture_output=True, text=True,
                          env=clean_env(), cwd="/", timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (7, "stopped"), proc.stderr
    hook = os.path.join(prefix, "libexec", "hahooks", "mount")
    proc = subprocess.run([hook, "/dev/nonexistent", str(tmp_path / "mnt"), "status"],
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert proc.stdout.strip() == "stopped"


def test_against_debian_packages_without_the_index(tmp_path):
    """HAHOOKS_SYSTEM_DEPS=1: sh, psutil and python-json-logger are Debian 12's own
    (the floors), nothing comes from the package index, and hahooks works with them."""
    require(subprocess.run(["/usr/bin/python3", "-c", "import sh, psutil, pythonjsonlogger"],
                           capture_output=True).returncode == 0,
            "python3-sh, python3-psutil, python3-pythonjsonlogger")
    top = tempfile.mkdtemp(prefix="hahooks-prod-sys-")
    try:
        venv, prefix = install_production(top, HAHOOKS_SYSTEM_DEPS="1", PIP_NO_INDEX="1")
        python = os.path.join(venv, "bin", "python")
        proc = subprocess.run([python, "-c", "import sh, psutil, pythonjsonlogger, hahooks; "
                               "print(sh.__file__, psutil.__file__, hahooks.__file__)"],
                              capture_output=True, text=True, env=clean_env(), cwd="/")
        sh_file, psutil_file, hahooks_file = proc.stdout.split()
        assert sh_file.startswith("/usr/lib/python3/dist-packages/")
        assert psutil_file.startswith("/usr/lib/python3/dist-packages/")
        assert hahooks_file.startswith(venv + "/")
        cfg = tmp_path / "c.toml"
        shutil.copy(os.path.join(ROOT, "examples", "command-stack.toml"), cfg)
        os.chmod(cfg, 0o600)
        hahooks = os.path.join(prefix, "sbin", "hahooks")
        for args in (["check", "-c", str(cfg)], ["plan", "master", "-c", str(cfg)]):
            proc = subprocess.run([hahooks, *args], capture_output=True, text=True,
                                  env=clean_env(), cwd="/", timeout=60)
            assert proc.returncode == 0, (args, proc.stderr)
    finally:
        shutil.rmtree(top, ignore_errors=True)
