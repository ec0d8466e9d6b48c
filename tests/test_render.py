"""`hahooks render`: each rendered snippet is read the way its daemon reads it and then run
the way that daemon runs it, against a real command stack: devd rules through the devd
matcher and sh -c, the freevrrpd section through freevrrpd's grammar and sh -c, keepalived's
notify split into words without a shell, the haresources line through the Heartbeat resource
script, the Pacemaker parameters through the OCF agent."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, hahooks_env, run_hahooks
from devd_matcher import Devd
from hahooks.wiring import freevrrpd
from wiring_support import (MINIMAL_ENV, commands_log, hahooks_command, stack_config,
                            wait_converged)

WIRING = """[wiring]
vhid = 1
interface = "em0"
legacy_interface = "carp0"
vip = "10.99.0.100/24"
priority = 200
instance = "VI_1"
"""


@pytest.fixture
def setup(write_config, tmp_path):
    cfg = stack_config(write_config, tmp_path, wiring=WIRING)
    return cfg, hahooks_command(tmp_path / "bin")


def render(cfg, hahooks, *args) -> str:
    proc = run_hahooks("render", "-c", cfg, "--hahooks", hahooks, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def held(tmp_path) -> tuple[bool, bool]:
    return ((tmp_path / "replication.held").exists(), (tmp_path / "filesystem.held").exists())


def test_all_sections(setup):
    cfg, hahooks = setup
    out = render(cfg, hahooks)
    for name in ("devd", "freevrrpd", "heartbeat", "keepalived", "ucarp", "pacemaker"):
        assert f"# ==== {name} ====" in out
    assert "not rendered" not in out
    assert f"-c {cfg}" in out


def test_devd_rules_parse_route_and_run(setup, tmp_path):
    cfg, hahooks = setup
    rules = Devd().parse(render(cfg, hahooks, "--only", "devd"))
    assert len(rules.rules) == 5
    cases = [("!system=CARP subsystem=1@em0 type=MASTER", "CARP 1@em0 MASTER", "master"),
             ("!system=CARP subsystem=1@em0 type=INIT", "CARP 1@em0 INIT", "slave"),
             ("!system=IFNET subsystem=carp0 type=LINK_UP", "IFNET carp0 LINK_UP", "master"),
             ("!system=CARP subsystem=1@em0 type=BACKUP", "CARP 1@em0 BACKUP", "slave")]
    for event, fields, role in cases:
        rule, commands = rules.route(event)
        assert commands == [f"{hahooks} devd-event --detach -c {cfg} {fields}"]
        proc = subprocess.run(["/bin/sh", "-c", commands[0]], env=MINIMAL_ENV,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc
        wait_converged(cfg, role)
        assert held(tmp_path) == ((role == "master"),) * 2
    for event in ("!system=CARP subsystem=2@em0 type=MASTER",
                  "!system=IFNET subsystem=em0 type=LINK_UP"):
        assert rules.route(event) == (None, [])


def test_freevrrpd_section_parses_and_runs(setup, tmp_path):
    cfg, hahooks = setup
    section, = freevrrpd.parse_conf(render(cfg, hahooks, "--only", "freevrrpd"))
    assert (section["serverid"], section["interface"], section["priority"], section["addr"]) \
        == ("1", "em0", "200", "10.99.0.100/24")
    for script, role in (("masterscript", "master"), ("backupscript", "slave")):
        proc = subprocess.run(["/bin/sh", "-c", section[script]], env=MINIMAL_ENV,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc
        wait_converged(cfg, role)
        assert held(tmp_path) == ((role == "master"),) * 2


def test_keepalived_notify_as_keepalived_calls_it(setup, tmp_path):
    cfg, hahooks = setup
    out = render(cfg, hahooks, "--only", "keepalived")
    assert re.search(r"^vrrp_instance VI_1 \{$", out, re.M)
    assert "virtual_router_id 1" in out and "10.99.0.100/24 dev em0" in out
    notify, = re.findall(r'^\s*notify "([^"]+)"$', out, re.M)
    # keepalived splits the string into words (quotes honoured), no shell, and appends 4
    for state, role in (("MASTER", "master"), ("STOP", "slave")):
        argv = shlex.split(notify) + ["INSTANCE", "VI_1", state, "200"]
        proc = subprocess.run(argv, env=MINIMAL_ENV, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc
        wait_converged(cfg, role)
        assert held(tmp_path) == ((role == "master"),) * 2


def resource_manager_call(line: str) -> tuple[str, list[str]]:
    """haresources `node res::a::b` -> (script, args), as ResourceManager splits it."""
    node, resource = line.split()
    script, _, rest = resource.partition("::")
    return script, rest.split("::") if rest else []


def test_haresources_line_runs_the_heartbeat_script(setup, tmp_path):
    cfg, hahooks = setup
    out = render(cfg, hahooks, "--only", "heartbeat")
    line, = [ln for ln in out.splitlines() if ln and not ln.startswith("#")]
    assert line == f"nodea hahooks::{cfg}"
    script, args = resource_manager_call(line)
    path = os.path.join(ROOT, "heartbeat-resource.d", script)
    env = {"PATH": f"{os.path.dirname(hahooks)}:{MINIMAL_ENV['PATH']}"}

    def call(action):
        return subprocess.run([path, *args, action], env=env, capture_output=True,
                              text=True, timeout=60)
    assert call("status").stdout.strip() == "stopped"
    assert call("start").returncode == 0
    assert held(tmp_path) == (True, True)
    assert call("status").stdout.strip() == "running"
    assert call("stop").returncode == 0
    assert held(tmp_path) == (False, False)


def test_pacemaker_parameters_drive_the_agent(setup, tmp_path):
    cfg, hahooks = setup
    out = render(cfg, hahooks, "--only", "pacemaker")
    whole, = [ln for ln in out.splitlines() if ln.startswith("pcs resource create")]
    words = shlex.split(whole)
    assert words[3:5] == ["hahooks", "ocf:hahooks:hahooks"]
    params = dict(w.split("=", 1) for w in words[5:] if "=" in w and w.startswith("config"))
    assert params == {"config": cfg}
    per_layer = [shlex.split(ln[2:]) for ln in out.splitlines()
                 if ln.startswith("# pcs resource create hahooks-")]
    layers = [dict(w.split("=", 1) for w in ws if w.startswith(("config=", "resource=")))
              for ws in per_layer]
    assert [p["resource"] for p in layers] == ["replication", "filesystem"]  # config order
    assert re.search(r"^# crm configure group hahooks-stack hahooks-replication "
                     r"hahooks-filesystem$", out, re.M)
    agent = os.path.join(ROOT, "ocf", "hahooks")

    def ocf(action, p):
        env = {**hahooks_env(), **{f"OCF_RESKEY_{k}": v for k, v in p.items()}}
        # this interpreter: `env python3` may find one without hahooks' dependencies
        return subprocess.run([sys.executable, agent, action], env=env, capture_output=True,
                              text=True, timeout=120).returncode
    for p in layers:                                   # the group starts in order
        assert ocf("start", p) == 0
    assert ocf("monitor", params) == 0
    for p in reversed(layers):                         # and stops in reverse
        assert ocf("stop", p) == 0
    assert ocf("monitor", params) == 7
    assert commands_log(tmp_path) == ["acquire replication", "acquire filesystem",
                                      "release filesystem", "release replication"]


def test_ucarp_command(setup):
    cfg, hahooks = setup
    hooks = os.path.join(ROOT, "hooks")
    out = render(cfg, hahooks, "--only", "ucarp", "--hooks-dir", hooks)
    command = " ".join(ln.rstrip("\\").strip() for ln in out.splitlines()
                       if ln and not ln.startswith("#"))
    words = command.split()
    assert words[0] == f"HAHOOKS_CONFIG={cfg}" and words[1] == "ucarp"
    opts = dict(w[2:].split("=", 1) for w in words if w.startswith("--") and "=" in w)
    assert opts["interface"] == "em0" and opts["vhid"] == "1"
    assert opts["addr"] == "10.99.0.100"                     # ucarp takes no prefix
    for script in ("upscript", "downscript"):
        assert os.access(opts[script], os.X_OK), opts[script]
    assert {"--preempt", "--shutdown"} <= set(words)


def test_render_errors(write_config, tmp_path):
    cfg = stack_config(write_config, tmp_path)                 # no [wiring]
    proc = run_hahooks("render", "-c", cfg, "--only", "devd")
    assert proc.returncode == 6
    assert len(proc.stderr.splitlines()) == 1 and "[wiring] vhid and interface" in proc.stderr
    out = run_hahooks("render", "-c", cfg, check=0).stdout     # the rest still renders
    assert "# not rendered:" in out and "pcs resource create" in out
    proc = run_hahooks("render", "-c", cfg, "--hahooks", "bin/hahooks")
    assert proc.returncode == 2 and "must be an absolute path" in proc.stderr
    proc = run_hahooks("render", "-c", cfg, "--only", "heartbeat",
                       "--config-path", "/etc/ha hooks.toml")
    assert proc.returncode == 6 and "blanks" in proc.stderr


def verify_cib(configuration: str, tmp_path) -> subprocess.CompletedProcess:
    """crm_verify on a CIB made of the rendered <configuration> (what cibadmin --replace
    --scope configuration would load), as `crm_verify -L` checks the live one."""
    from conftest import require_tool
    require_tool("crm_verify")
    cib = tmp_path / "cib.xml"
    cib.write_text('<cib validate-with="pacemaker-3.9" admin_epoch="0" epoch="1" '
                   f'num_updates="0" crm_feature_set="3.16.2">{configuration}<status/></cib>')
    return subprocess.run(["crm_verify", "--xml-file", str(cib), "-V"], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("mode", ["whole", "per-layer"])
def test_pacemaker_cib_is_valid_and_fenced(write_config, tmp_path, mode):
    """--only pacemaker-cib: raw CIB XML (no crmsh/pcs needed), stonith-enabled=true with
    the [node] fence agent as a stonith device (its password never rendered), the stack
    whole or as a group of layer primitives in config order; crm_verify has nothing to say."""
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    os.chmod(pw, 0o600)
    node = ('peer = "nodeb"\nfence = ["/usr/sbin/fence_ipmilan"]\n[node.fence_options]\n'
            f'ip = "10.99.0.50"\nusername = "admin"\npassword_file = "{pw}"\n')
    from wiring_support import layer
    cfg = write_config(layer(tmp_path, "replication") + layer(tmp_path, "filesystem"), node)
    args = ["--only", "pacemaker-cib"] + (["--per-layer"] if mode == "per-layer" else [])
    proc = run_hahooks("render", "-c", cfg, *args)
    assert proc.returncode == 0, proc.stderr
    xml = proc.stdout
    assert xml.startswith("<configuration>") and "s3cret" not in xml
    assert '<nvpair id="hahooks-stonith-enabled" name="stonith-enabled" value="true"/>' in xml
    assert 'type="fence_ipmilan"' in xml and 'name="pcmk_host_list" value="nodeb"' in xml
    if mode == "per-layer":
        assert re.search(r'<group id="hahooks-stack"><primitive id="hahooks-replication".*'
                         r'<primitive id="hahooks-filesystem"', xml)
    else:
        assert '<primitive id="hahooks" class="ocf" provider="hahooks" type="hahooks">' in xml
    check = verify_cib(xml, tmp_path)
    assert check.returncode == 0 and check.stdout + check.stderr == "", \
        check.stdout + check.stderr


def drbd_stack(write_config, tmp_path, bottom="drbd") -> str:
    from replication_helpers import layer as kind_layer
    repl = (kind_layer("r0", "drbd", resource="r0", minor=0) if bottom == "drbd" else
            kind_layer("r0", "filesystem", device="/dev/null", mountpoint=str(tmp_path / "m0"),
                       fstype="ufs"))
    fenced = 'peer = "nodeb"\nfence = ["/usr/sbin/fence_ipmilan"]\n[node.fence_options]\n' \
             'ip = "10.99.0.50"\nusername = "admin"\n'    # crm_verify wants a stonith device
    return write_config(repl + kind_layer("fs", "filesystem", device="/dev/drbd0",
                                          mountpoint=str(tmp_path / "m"), fstype="ufs")
                        + kind_layer("web", "service", start=["true"], stop=["true"],
                                     status=["true"]), fenced)


def test_pacemaker_cib_promotable_clone(write_config, tmp_path):
    """--promotable: the drbd layer a promotable clone (mode=promotable, one promoted of
    two, notify), the layers above a group colocated with the Promoted role and ordered
    after promote; crm_verify has nothing to say."""
    cfg = drbd_stack(write_config, tmp_path)
    proc = run_hahooks("render", "-c", cfg, "--only", "pacemaker-cib", "--promotable")
    assert proc.returncode == 0, proc.stderr
    xml = proc.stdout
    clone = re.search(r'<clone id="hahooks-r0-clone">(.*?)</clone>', xml).group(1)
    for name, value in (("promotable", "true"), ("promoted-max", "1"), ("clone-max", "2"),
                        ("notify", "true")):
        assert f'name="{name}" value="{value}"' in clone
    assert 'name="mode" value="promotable"' in clone and 'name="resource" value="r0"' in clone
    assert 'name="promote"' in clone and 'name="demote"' in clone
    assert re.search(r'<group id="hahooks-stack"><primitive id="hahooks-fs".*'
                     r'<primitive id="hahooks-web"', xml)
    assert 'name="mode"' not in xml.split("</clone>")[1]
    assert ('<rsc_colocation id="hahooks-stack-with-promoted" score="INFINITY" '
            'rsc="hahooks-stack" with-rsc="hahooks-r0-clone" with-rsc-role="Promoted"/>') in xml
    assert re.search(r'<rsc_order [^>]*first="hahooks-r0-clone" first-action="promote" '
                     r'then="hahooks-stack" then-action="start"/>', xml)
    check = verify_cib(xml, tmp_path)
    assert check.returncode == 0 and check.stdout + check.stderr == "", \
        check.stdout + check.stderr
    text = run_hahooks("render", "-c", cfg, "--only", "pacemaker").stdout
    assert re.search(r"^# pcs resource create hahooks-r0 ocf:hahooks:hahooks .*mode=promotable"
                     r".* promotable promoted-max=1 .*notify=true$", text, re.M)
    assert "# pcs constraint order promote hahooks-r0-clone then start hahooks-stack" in text


def test_promotable_needs_a_replication_layer_at_the_bottom(write_config, tmp_path):
    cfg = drbd_stack(write_config, tmp_path, bottom="filesystem")
    proc = run_hahooks("render", "-c", cfg, "--only", "pacemaker-cib", "--promotable")
    assert proc.returncode == 6 and "drbd or hast" in proc.stderr, proc.stderr
    text = run_hahooks("render", "-c", cfg, "--only", "pacemaker").stdout
    assert "mode=promotable" not in text
