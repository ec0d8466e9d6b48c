"""The OCF resource agent ocf/hahooks: Debian's ocf-tester on the whole stack and on single
layers, meta-data valid against ra-api-1.dtd, and the OCF exit codes and exit reasons."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import ROOT, hahooks_env, require_root, require_tool
from wiring_support import commands_log, layer, stack_config

AGENT = os.path.join(ROOT, "ocf", "hahooks")
DTD_DIR = "/usr/share/resource-agents"


def agent(action: str, config: str | None, *extra: str, **env) -> subprocess.CompletedProcess:
    environ = hahooks_env()
    for key in list(environ):
        if key.startswith("OCF_"):
            del environ[key]
    if config:
        environ["OCF_RESKEY_config"] = config
    environ.update({k: str(v) for k, v in env.items()})
    # this interpreter: `env python3` may find one without hahooks' dependencies
    return subprocess.run([sys.executable, AGENT, action, *extra], capture_output=True,
                          text=True, env=environ, timeout=120)


def exit_reasons(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("ocf-exit-reason:")]


@pytest.fixture(scope="module")
def installed_agent():
    """The agent and its library copied to a world-readable tree, as an install puts them
    (/usr/lib/ocf/resource.d/..., site-packages, the agent's #! naming the interpreter):
    ocf-tester runs meta-data as nobody, who cannot enter a checkout in a private directory
    (mktemp -d makes it 0700)."""
    top = tempfile.mkdtemp(prefix="hahooks-ocf-")
    try:
        os.chmod(top, 0o755)
        shutil.copytree(os.path.join(ROOT, "lib", "hahooks"), os.path.join(top, "lib", "hahooks"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        os.makedirs(os.path.join(top, "ocf"))
        # with its interpreter as the #! line, as `hahooks install-wiring` writes it
        # (`env python3` finds whichever python3 PATH has, often one without hahooks' deps)
        from hahooks.commands.install_wiring import python_script
        with open(AGENT) as src, open(os.path.join(top, "ocf", "hahooks"), "wb") as dst:
            dst.write(python_script(src.read(), sys.executable))
        for base, dirs, files in os.walk(top):
            for name in dirs:
                os.chmod(os.path.join(base, name), 0o755)
            for name in files:
                os.chmod(os.path.join(base, name), 0o755 if base.endswith("ocf") else 0o644)
        yield os.path.join(top, "ocf", "hahooks")
    finally:
        shutil.rmtree(top, ignore_errors=True)


def ocf_tester(agent_path: str, config: str, *options: str,
               env: dict | None = None) -> subprocess.CompletedProcess:
    require_tool("ocf-tester", "xmllint")
    require_root()   # ocf-tester runs meta-data as nobody only when root: we want that check
    args = ["ocf-tester", "-n", "hahooks_test", "-o", f"config={config}"]
    for opt in options:
        args += ["-o", opt]
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCF_")}
        env.pop("PYTHONPATH", None)      # the installed copy runs its own library
    return subprocess.run([*args, agent_path], capture_output=True, text=True, timeout=600,
                          env=env)


def test_agent_is_executable_for_everyone():
    assert os.stat(AGENT).st_mode & 0o755 == 0o755


def test_meta_data_is_valid_ra_api_xml():
    require_tool("xmllint")
    proc = agent("meta-data", None)
    assert proc.returncode == 0 and proc.stderr == ""
    assert '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">' in proc.stdout
    assert "<version>1.1</version>" in proc.stdout
    lint = subprocess.run(["xmllint", "--noout", "--valid", "-"], input=proc.stdout,
                          cwd=DTD_DIR, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stderr
    for name in ("config", "resource"):
        assert f'<parameter name="{name}"' in proc.stdout
    for action in ("start", "stop", "monitor", "validate-all", "meta-data", "promote",
                   "demote", "notify"):
        assert f'<action name="{action}"' in proc.stdout


def test_ocf_tester_whole_stack(installed_agent, write_config, tmp_path):
    cfg = stack_config(write_config, tmp_path)
    proc = ocf_tester(installed_agent, cfg)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed all tests" in proc.stdout
    # It really started and stopped the stack, in order, several times.
    log = commands_log(tmp_path)
    assert log[:4] == ["acquire replication", "acquire filesystem",
                       "release filesystem", "release replication"]
    assert log.count("acquire filesystem") == log.count("release filesystem") >= 2


def test_ocf_tester_one_layer_at_a_time(installed_agent, write_config, tmp_path):
    cfg = stack_config(write_config, tmp_path)
    proc = ocf_tester(installed_agent, cfg, "resource=replication")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "filesystem" not in " ".join(commands_log(tmp_path))
    # the upper layer needs the lower one held, as a Pacemaker group in config order has it
    assert agent("start", cfg, OCF_RESKEY_resource="replication").returncode == 0
    proc = ocf_tester(installed_agent, cfg, "resource=filesystem")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "replication.held").exists()
    assert not (tmp_path / "filesystem.held").exists()


def test_monitor_codes(write_config, tmp_path):
    cfg = stack_config(write_config, tmp_path)
    assert agent("monitor", cfg).returncode == 7                 # nothing held
    assert agent("start", cfg).returncode == 0
    assert agent("monitor", cfg, OCF_RESKEY_CRM_meta_interval=20000).returncode == 0
    for name in ("replication", "filesystem"):
        assert agent("monitor", cfg, OCF_RESKEY_resource=name).returncode == 0
    (tmp_path / "filesystem.held").unlink()                     # half a stack: failed
    proc = agent("monitor", cfg, OCF_RESKEY_CRM_meta_interval=20000)
    assert proc.returncode == 1
    assert exit_reasons(proc) == [
        "ocf-exit-reason:half a stack held: replication=held (test exited 0), "
        "filesystem=released (test exited 1)"]
    assert agent("monitor", cfg, OCF_RESKEY_resource="filesystem").returncode == 7
    assert agent("stop", cfg).returncode == 0
    assert agent("stop", cfg).returncode == 0                   # stop of a stopped stack
    assert agent("monitor", cfg).returncode == 7


def test_broken_layer_is_a_failure(write_config, tmp_path):
    body = layer(tmp_path, "replication") + f"""
[[resource]]
name = "service"
kind = "command"
acquire = ["true"]
release = ["true"]
status = ["sh", "-c", "echo 'pid file stale' >&2; exit 3"]
"""
    cfg = write_config(body)
    proc = agent("monitor", cfg, OCF_RESKEY_resource="service")
    assert proc.returncode == 1
    assert exit_reasons(proc) == ["ocf-exit-reason:broken: service=broken (sh exited 3: "
                                  "pid file stale)"]


def test_failed_start_rolls_back_and_gives_a_reason(write_config, tmp_path):
    body = layer(tmp_path, "replication") + """
[[resource]]
name = "filesystem"
kind = "command"
acquire = ["sh", "-c", "echo 'mount: /dev/hast/r0: no such device' >&2; exit 32"]
release = ["true"]
status = ["false"]
"""
    cfg = write_config(body)
    proc = agent("start", cfg)
    assert proc.returncode == 1
    reason, = exit_reasons(proc)
    assert "acquire filesystem failed" in reason and "no such device" in reason
    assert "rolled back" in reason
    assert commands_log(tmp_path) == ["acquire replication", "release replication"]
    assert agent("monitor", cfg).returncode == 7


def test_layer_order_is_guarded(write_config, tmp_path):
    cfg = stack_config(write_config, tmp_path)
    proc = agent("start", cfg, OCF_RESKEY_resource="filesystem")
    assert proc.returncode == 1
    assert exit_reasons(proc) == [
        "ocf-exit-reason:acquire filesystem refused: layer replication below it is released "
        "(test exited 1); order the layers as in the config"]
    assert commands_log(tmp_path) == []
    assert agent("start", cfg).returncode == 0
    proc = agent("stop", cfg, OCF_RESKEY_resource="replication")
    assert proc.returncode == 1
    assert "layer filesystem above it is held" in exit_reasons(proc)[0]
    assert (tmp_path / "replication.held").exists()            # nothing pulled from under it
    # stopping what is already stopped succeeds without looking at the others
    assert agent("stop", cfg, OCF_RESKEY_resource="filesystem").returncode == 0
    assert agent("stop", cfg, OCF_RESKEY_resource="filesystem").returncode == 0


@pytest.mark.parametrize("action, env, code", [
    ("validate-all", {}, 5),
    ("start", {}, 5),
    ("monitor", {"OCF_RESKEY_CRM_meta_interval": "0"}, 7),     # probe where it is not set up
    ("monitor", {"OCF_RESKEY_CRM_meta_interval": "20000"}, 5),
    ("stop", {}, 0),                                            # nothing of ours can run
])
def test_missing_config(tmp_path, action, env, code):
    """A config is per node: its absence is this node's problem (5 bans this node only;
    6 would stop the resource on every node)."""
    proc = agent(action, str(tmp_path / "absent.toml"), **env)
    assert proc.returncode == code, proc
    if code not in (0, 7):
        assert exit_reasons(proc) == [
            f"ocf-exit-reason:{tmp_path / 'absent.toml'}: config file not found"]


def test_bad_config_and_parameters(write_config, tmp_path):
    cfg = stack_config(write_config, tmp_path)
    proc = agent("validate-all", cfg, OCF_RESKEY_resource="nope")
    assert proc.returncode == 5
    assert "no [[resource]] named 'nope'" in exit_reasons(proc)[0]
    os.chmod(cfg, 0o664)
    proc = agent("validate-all", cfg)
    assert proc.returncode == 4 and "writable by group or others" in exit_reasons(proc)[0]
    os.chmod(cfg, 0o600)
    assert agent("validate-all", cfg).returncode == 0
    with open(cfg, "a") as fh:
        fh.write("[node\n")                                      # a TOML syntax error
    assert agent("validate-all", cfg).returncode == 5


@pytest.mark.parametrize("breakage", ["group-writable", "syntax", "directory"])
def test_node_local_problem_on_the_passive_node(write_config, tmp_path, breakage):
    """The issue's outage: B's config broken while B holds nothing. The probe says 'not
    running here' and stop succeeds (as Filesystem does for a missing device); start,
    validate-all and a recurring monitor return 4/5, never 6."""
    cfg = stack_config(write_config, tmp_path)
    if breakage == "group-writable":
        os.chmod(cfg, 0o664)
    elif breakage == "syntax":
        with open(cfg, "a") as fh:
            fh.write("[node\n")
    else:
        os.unlink(cfg)
        os.mkdir(cfg)
    code = 4 if breakage == "group-writable" else 5
    assert agent("monitor", cfg, OCF_RESKEY_CRM_meta_interval="0").returncode == 7
    assert agent("stop", cfg).returncode == 0
    for action, env in (("start", {}), ("validate-all", {}),
                        ("monitor", {"OCF_RESKEY_CRM_meta_interval": "20000"})):
        proc = agent(action, cfg, **env)
        assert proc.returncode == code, (action, proc)
        assert len(exit_reasons(proc)) == 1
    assert commands_log(tmp_path) == []


def test_node_local_problem_where_the_stack_was_taken(write_config, tmp_path):
    """Where this node last took the stack, an unsafe config must not let a probe say 'not
    running' nor a stop say 'stopped' without releasing: Pacemaker would start the stack on
    the peer while this node may still hold it. The failed stop gets this node fenced."""
    cfg = stack_config(write_config, tmp_path)
    assert agent("start", cfg).returncode == 0
    os.chmod(cfg, 0o664)
    probe = agent("monitor", cfg, OCF_RESKEY_CRM_meta_interval="0")
    assert probe.returncode == 4
    assert "last took the stack" in exit_reasons(probe)[0]
    assert agent("stop", cfg).returncode == 4
    assert (tmp_path / "filesystem.held").exists()             # nothing run from that config
    os.chmod(cfg, 0o600)
    assert agent("stop", cfg).returncode == 0
    os.chmod(cfg, 0o664)
    assert agent("monitor", cfg, OCF_RESKEY_CRM_meta_interval="0").returncode == 7
    assert agent("stop", cfg).returncode == 0


def test_methods_lists_the_actions():
    proc = agent("methods", None)
    assert proc.returncode == 0
    assert proc.stdout.split() == ["start", "stop", "monitor", "validate-all", "meta-data",
                                   "usage", "methods", "reload-agent", "promote", "demote",
                                   "notify"]


def test_reload_agent_revalidates(write_config, tmp_path):
    cfg = stack_config(write_config, tmp_path)
    assert agent("reload-agent", cfg).returncode == 0
    assert agent("reload-agent", str(tmp_path / "absent.toml")).returncode == 5


def test_meta_data_timeouts_are_renders(write_config, tmp_path):
    """meta-data advertises the same start/stop timeouts `render --only pacemaker` puts in
    the ops (one computation), for the whole stack and for one layer."""
    from hahooks import config
    from hahooks.wiring.render import pacemaker_timeouts

    cfg = stack_config(write_config, tmp_path)
    loaded = config.load(cfg)
    for layer_name, env in ((None, {}), ("filesystem", {"OCF_RESKEY_resource": "filesystem"})):
        start, stop = pacemaker_timeouts(loaded.resources, layer_name)
        meta = agent("meta-data", cfg, **env).stdout
        assert f'<action name="start" timeout="{start}"/>' in meta
        assert f'<action name="stop" timeout="{stop}"/>' in meta
    whole = pacemaker_timeouts(loaded.resources)
    assert whole != pacemaker_timeouts(loaded.resources, "filesystem")


def test_actions_and_arguments(write_config, tmp_path):
    cfg = stack_config(write_config, tmp_path)
    for action in ("promote", "demote", "notify", "reload", "migrate_to", "bogus", ""):
        proc = agent(action, cfg)
        assert proc.returncode == 3 and len(exit_reasons(proc)) == 1, action
    # the action is the sole argument: anything after it is ignored
    assert agent("monitor", cfg, "extra", "args").returncode == 7
    assert agent("usage", None).returncode == 0


def test_interpreter_without_hahooks_is_not_installed(tmp_path):
    """An agent whose interpreter cannot import hahooks (or its dependencies) is
    OCF_ERR_INSTALLED (5) with a reason, never a traceback and 1: Pacemaker then stops
    trying the node instead of counting failures (newcomer review F12)."""
    copy = tmp_path / "hahooks"
    shutil.copy2(AGENT, copy)            # outside the checkout: no lib/ beside it
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OCF_") and k != "PYTHONPATH"}
    for action in ("meta-data", "start", "monitor"):
        # -S: no site-packages, so neither hahooks nor sh/psutil can be imported
        proc = subprocess.run(["/usr/bin/python3", "-S", str(copy), action],
                              capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 5, (action, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        reason, = exit_reasons(proc)
        assert "cannot import hahooks" in reason


def test_missing_dependency_is_not_installed(tmp_path):
    """hahooks importable but one of its dependencies missing: also 5, naming it."""
    copy = tmp_path / "hahooks"
    shutil.copy2(AGENT, copy)
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nsys.modules['psutil'] = None  # as if psutil were not installed\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCF_")}
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), os.path.join(ROOT, "lib")])
    proc = subprocess.run([sys.executable, str(copy), "monitor"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 5, (proc.stdout, proc.stderr)
    reason, = exit_reasons(proc)
    assert "psutil" in reason


def test_monitor_check_levels_read_and_write_the_filesystem(write_config, tmp_path):
    """OCF_CHECK_LEVEL as resource-agents' Filesystem: 10 reads a block of the device with
    O_DIRECT, 20 writes a status file on the mounted filesystem and reads it back; a check
    that cannot be done fails the monitor (1), depth 0 never touches the device."""
    require_root()
    require_tool("losetup", "mkfs.ext4", "dd")
    from storage_helpers import fs_resource, is_mounted

    img = tmp_path / "fs.img"
    with open(img, "wb") as fh:
        fh.truncate(32 * 1024 * 1024)
    dev = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True,
                         text=True, check=True).stdout.strip()
    mp = tmp_path / "mnt"
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True)
        cfg = write_config(fs_resource("data", dev, str(mp), fstype="ext4"))
        mon = {"OCF_RESKEY_CRM_meta_interval": "20000"}
        assert agent("monitor", cfg, OCF_CHECK_LEVEL="20", **mon).returncode == 7
        assert agent("start", cfg).returncode == 0
        for level in ("0", "10", "20"):
            proc = agent("monitor", cfg, OCF_CHECK_LEVEL=level, **mon)
            assert proc.returncode == 0, (level, proc.stderr)
        status = list((mp / ".hahooks_status").iterdir())
        assert [p.name for p in status] == ["nodea"]
        subprocess.run(["mount", "-o", "remount,ro", str(mp)], check=True)
        proc = agent("monitor", cfg, OCF_CHECK_LEVEL="20", **mon)
        assert proc.returncode == 1 and "write check" in exit_reasons(proc)[0]
        assert agent("monitor", cfg, OCF_CHECK_LEVEL="10", **mon).returncode == 0
        subprocess.run(["mount", "-o", "remount,rw", str(mp)], check=True)
        assert agent("stop", cfg).returncode == 0
    finally:
        if is_mounted(str(mp)):
            subprocess.run(["umount", str(mp)], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)


def test_probes_change_nothing(write_config, tmp_path):
    """A probe (monitor, interval 0) only looks: in every state it runs no acquire or
    release and records no request in the state dir (guards the rule; passes on the old
    agent too)."""
    cfg = stack_config(write_config, tmp_path)
    state = tmp_path / "state"

    def snapshot():
        files = sorted(p.name for p in state.iterdir()) if state.exists() else []
        return commands_log(tmp_path), files, (tmp_path / "replication.held").exists(), \
            (tmp_path / "filesystem.held").exists()

    probe = {"OCF_RESKEY_CRM_meta_interval": "0"}
    for prepare in (lambda: None, lambda: agent("start", cfg),
                    lambda: (tmp_path / "filesystem.held").unlink()):
        prepare()
        before = snapshot()
        for layer_env in ({}, {"OCF_RESKEY_resource": "filesystem"}):
            agent("monitor", cfg, **probe, **layer_env)
        assert snapshot() == before
