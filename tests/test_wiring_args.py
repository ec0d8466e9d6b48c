"""Argument conventions of the Heartbeat v1, keepalived and ucarp wiring: what each daemon
passes (docs/reference/lab.md §2–4, docs/reference/heartbeat.md §1, docs/reference/keepalived.md §1, docs/reference/ucarp.md §1), the decision it leads to, the exact
status text Heartbeat reads, and strict rejection of bad input (exit 2, nothing recorded)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import uuid

import pytest

from conftest import (ROOT, hahooks_env, install_hahooks_command, require_root, require_tool,
                      run_hahooks)
from hahooks.wiring import heartbeat, keepalived, ucarp
from hahooks.kinds import vip as vip_kind

RESOURCE_MANAGER = "/usr/share/heartbeat/ResourceManager"


def two_layers(tmp_path, release_a=None, names=("lower", "upper")) -> str:
    body = ""
    for name in names:
        marker = tmp_path / name
        release = release_a if (release_a and name == names[0]) else ["rm", "-f", str(marker)]
        body += f"""
[[resource]]
name = "{name}"
kind = "command"
acquire = ["touch", "{marker}"]
release = {json.dumps(release)}
status = ["test", "-e", "{marker}"]
"""
    return body


def desire(tmp_path):
    path = tmp_path / "state" / "desire.json"
    return json.loads(path.read_text()) if path.exists() else None


def hook_records(tmp_path) -> list[dict]:
    path = tmp_path / "hahooks.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("event") == "hook"]


# --------------------------------------------------------------------- keepalived --
@pytest.mark.parametrize("state,role", [("MASTER", "master"), ("BACKUP", "slave"),
                                        ("FAULT", "slave"), ("STOP", "slave"),
                                        ("DELETED", "slave")])
def test_keepalived_state_mapping(state, role):
    assert keepalived.role_for(state) == role


@pytest.mark.parametrize("argv,role", [
    # generic `notify "hahooks keepalived-notify"`: keepalived appends 4 words
    (["INSTANCE", "VI_1", "MASTER", "200"], "master"),
    (["GROUP", "VG_1", "BACKUP", "100"], "slave"),
    (["INSTANCE", "VI_1", "STOP", "0"], "slave"),
    # notify_master "hahooks keepalived-notify INSTANCE VI_1 MASTER": only configured words
    (["INSTANCE", "VI_1", "MASTER"], "master"),
    (["INSTANCE", "VI_1", "FAULT"], "slave"),
])
def test_keepalived_notify_records_desire(tmp_path, write_config, argv, role):
    cfg = write_config(two_layers(tmp_path))
    run_hahooks("keepalived-notify", "--wait", "-c", cfg, *argv, check=0)
    assert desire(tmp_path)["role"] == role
    assert desire(tmp_path)["source"] == "keepalived " + " ".join(argv)
    assert [r["argv"] for r in hook_records(tmp_path)] == [argv]
    held = (tmp_path / "lower").exists() and (tmp_path / "upper").exists()
    assert held is (role == "master")


@pytest.mark.parametrize("argv,culprit", [
    (["INSTANCE", "VI_1"], "STATE"),                      # too few
    (["INSTANCE", "VI_1", "MASTER", "200", "x"], "unrecognized"),   # too many
    (["instance", "VI_1", "MASTER"], "TYPE"),             # keepalived always writes upper case
    (["INSTANCE", "VI_1", "master"], "STATE"),
    (["INSTANCE", "VI_1", "PRIMARY"], "STATE"),
    (["INSTANCE", "VI 1", "MASTER"], "NAME"),
    (["INSTANCE", "$(reboot)", "MASTER"], "NAME"),
    (["INSTANCE", "VI_1", "MASTER", "256"], "PRIORITY"),
    (["INSTANCE", "VI_1", "MASTER", "-1"], "PRIORITY"),
    (["INSTANCE", "VI_1", "MASTER", "1e2"], "PRIORITY"),
])
def test_keepalived_notify_rejects_bad_arguments(tmp_path, write_config, argv, culprit):
    cfg = write_config(two_layers(tmp_path))
    proc = run_hahooks("keepalived-notify", "-c", cfg, *argv, check=2)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert culprit in proc.stderr
    assert desire(tmp_path) is None and not (tmp_path / "state").exists()


def test_keepalived_notify_detach_returns_before_the_stack_moves(tmp_path, write_config):
    """--detach (the default): the worker converges after the hook returned."""
    slow = tmp_path / "slow"
    cfg = write_config(f"""
[[resource]]
name = "slow"
kind = "command"
acquire = ["sh", "-c", "sleep 1; touch {slow}"]
release = ["rm", "-f", "{slow}"]
status = ["test", "-e", "{slow}"]
""")
    run_hahooks("keepalived-notify", "-c", cfg, "INSTANCE", "VI_1", "MASTER", "200", check=0)
    assert not slow.exists()          # the hook did not wait for the acquire
    run_hahooks("master", "--wait", "-c", cfg, check=0)   # joins the worker's transition
    assert slow.exists()


# -------------------------------------------------------------------------- ucarp --
@pytest.mark.parametrize("script,argv,role", [
    ("up", ["eth0", "10.99.33.100", "extra_a"], "master"),   # with --xparam=extra_a
    ("up", ["eth0", "10.99.33.100"], "master"),              # without --xparam
    ("down", ["eth0", "10.99.33.100"], "slave"),
    ("down", ["vtnet0.42", "192.0.2.7", "x y"], "slave"),
])
def test_ucarp_scripts_record_desire(tmp_path, write_config, script, argv, role):
    cfg = write_config(two_layers(tmp_path))
    run_hahooks(f"ucarp-{script}", "--wait", "-c", cfg, *argv, check=0)
    assert desire(tmp_path)["role"] == role
    assert [r["argv"] for r in hook_records(tmp_path)] == [argv]


@pytest.mark.parametrize("argv,culprit", [
    (["eth0"], "VIP"),
    (["eth0", "10.99.33.100", "x", "y"], "unrecognized"),
    (["eth/0", "10.99.33.100"], "IFACE"),
    (["averyveryverylongif0", "10.99.33.100"], "IFACE"),
    (["..", "10.99.33.100"], "IFACE"),
    (["eth0", "10.99.33.256"], "VIP"),
    (["eth0", "10.99.33.1/24"], "VIP"),
    (["eth0", "010.99.33.1"], "VIP"),
    (["eth0", "0.0.0.0"], "VIP"),
    (["eth0", "224.0.0.18"], "VIP"),
    (["eth0", "127.0.0.1"], "VIP"),
    (["eth0", "fe80::1"], "VIP"),
    (["eth0", "10.99.33.100", "bad\nxparam"], "xparam"),
    (["--prefix", "33", "eth0", "10.99.33.100"], "prefix"),
])
@pytest.mark.parametrize("script", ["up", "down"])
def test_ucarp_scripts_reject_bad_arguments(tmp_path, write_config, script, argv, culprit):
    cfg = write_config(two_layers(tmp_path))
    proc = run_hahooks(f"ucarp-{script}", "--vip", "-c", cfg, *argv, check=2)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert culprit in proc.stderr
    assert not (tmp_path / "state").exists()


def test_parse_ip_addr_and_ifconfig():
    ip_out = ("2: eth0    inet 10.99.33.1/24 brd 10.99.33.255 scope global eth0\\       "
              "valid_lft forever preferred_lft forever\n"
              "2: eth0    inet 10.99.33.100/32 scope global eth0\\       valid_lft forever\n")
    assert vip_kind.parse_ip_addr(ip_out) == {"10.99.33.1": 24, "10.99.33.100": 32}
    ifconfig_out = ("em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n"
                    "\tinet 192.0.2.10 netmask 0xffffff00 broadcast 192.0.2.255\n"
                    "\tinet 192.0.2.100 netmask 0xffffffff broadcast 192.0.2.100\n")
    assert vip_kind.parse_ifconfig(ifconfig_out) == {"192.0.2.10": 24, "192.0.2.100": 32}


@pytest.fixture
def netns():
    """A private network namespace with an interface dum0 (10.99.33.1/24): one end of a
    veth pair (this kernel has no dummy driver)."""
    require_root()
    require_tool("ip")
    name = f"hhw-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for argv in (["link", "add", "dum0", "type", "veth", "peer", "name", "dum0p"],
                     ["addr", "add", "10.99.33.1/24", "brd", "+", "dev", "dum0"],
                     ["link", "set", "dum0p", "up"], ["link", "set", "dum0", "up"]):
            subprocess.run(["ip", "-n", name, *argv], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def addresses(ns: str) -> dict[str, int]:
    out = subprocess.run(["ip", "-n", ns, "-o", "-4", "addr", "show", "dev", "dum0"],
                         capture_output=True, text=True, check=True).stdout
    return vip_kind.parse_ip_addr(out)


def test_ucarp_vip_step_adds_and_removes_idempotently(tmp_path, write_config, netns):
    cfg = write_config(two_layers(tmp_path))

    def hook(script, *extra):
        return subprocess.run(["ip", "netns", "exec", netns, os.path.join(ROOT, "hooks",
                               f"ucarp-{script}"), "dum0", "10.99.33.100", *extra],
                              capture_output=True, text=True, timeout=60,
                              env=hahooks_env(HAHOOKS_CONFIG=cfg, PATH=f"{tmp_path}/bin:"
                                              + os.environ["PATH"]))
    install_hahooks_command(tmp_path / "bin")
    for _ in range(2):            # the second call finds the address and changes nothing
        proc = hook("up")
        assert proc.returncode == 0, proc.stderr
        assert addresses(netns) == {"10.99.33.1": 24, "10.99.33.100": 32}
    assert desire(tmp_path)["role"] == "master"
    # an address added by someone else with another prefix is removed with that prefix
    subprocess.run(["ip", "-n", netns, "addr", "del", "10.99.33.100/32", "dev", "dum0"],
                   check=True)
    subprocess.run(["ip", "-n", netns, "addr", "add", "10.99.33.100/24", "dev", "dum0"],
                   check=True)
    for _ in range(2):
        proc = hook("down", "extra")
        assert proc.returncode == 0, proc.stderr
        assert addresses(netns) == {"10.99.33.1": 24}
    assert desire(tmp_path)["role"] == "slave"


def test_ucarp_vip_failure_still_records_the_desire(tmp_path, write_config, netns):
    """ucarp decided: the stack follows even if the address cannot be added (no such
    interface here); the failure is reported with exit 1."""
    cfg = write_config(two_layers(tmp_path))
    proc = subprocess.run(["ip", "netns", "exec", netns, "python3", "-m", "hahooks",
                           "ucarp-up", "--vip", "--wait", "-c", cfg, "nosuch0", "10.99.33.100"],
                          capture_output=True, text=True, env=hahooks_env(), timeout=60)
    assert proc.returncode == 1
    assert "VIP step failed" in proc.stderr
    assert desire(tmp_path)["role"] == "master"
    assert (tmp_path / "upper").exists()


# ---------------------------------------------------------------------- heartbeat --
@pytest.mark.parametrize("words,expected", [
    (["start"], (None, "start")),
    (["status"], (None, "status")),
    (["/etc/hahooks.toml", "stop"], ("/etc/hahooks.toml", "stop")),
])
def test_heartbeat_words(words, expected):
    assert heartbeat.parse_words(words, None) == expected


@pytest.mark.parametrize("words", [["monitor"], ["start", "/etc/x.toml"], ["a", "b", "start"],
                                   ["relative.toml", "start"], ["/etc/x y.toml", "start"]])
def test_heartbeat_bad_words(tmp_path, write_config, words):
    cfg = write_config(two_layers(tmp_path))
    proc = run_hahooks("heartbeat", *words, env=hahooks_env(HAHOOKS_CONFIG=cfg), check=2)
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""
    assert not (tmp_path / "state").exists()


def heartbeat_reads(text: str) -> str:
    """What Heartbeat's own we_own_resource() (from the installed ResourceManager) makes of
    a status output: "running" (owned, start skipped) or "not running"."""
    require_tool("sh")
    from conftest import require
    require(os.path.exists(RESOURCE_MANAGER), "heartbeat's ResourceManager")
    source = open(RESOURCE_MANAGER).read()
    func = re.search(r"^we_own_resource\(\) \{.*?^\}", source, re.S | re.M).group(0)
    script = ("resource2arg() { :; }\nscriptpath() { echo fake_status; }\n"
              "fake_status() { printf '%s' \"$STATUS_TEXT\"; }\n" + func +
              "\nif we_own_resource res; then echo running; else echo 'not running'; fi\n")
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                          env={"STATUS_TEXT": text, "PATH": "/usr/bin:/bin"},
                          check=True).stdout.strip()


@pytest.mark.parametrize("states,unfinished,word", [
    (["held", "held"], False, "running"),
    (["held", "held"], True, "running"),
    (["released", "released"], False, "stopped"),
    (["released", "released"], True, "stopped"),
    (["held", "released"], False, "stopped"),       # start completes it
    (["held", "released"], True, "running"),        # failed stop: Heartbeat must not hand over
    (["broken", "released"], False, "stopped"),
    (["broken", "released"], True, "running"),
    (["held", "broken"], False, "stopped"),
])
def test_heartbeat_status_word(states, unfinished, word):
    got, why = heartbeat.status_word(states, unfinished)
    assert got == word
    assert heartbeat_reads(got) == ("running" if word == "running" else "not running")


def test_heartbeat_resource_script_start_status_stop(tmp_path, write_config):
    """The shipped script, called the way ResourceManager calls it, with a layer whose
    name would read as running if it were ever printed."""
    cfg = write_config(two_layers(tmp_path, names=("lower", "running-OK")))
    bindir = tmp_path / "bin"
    install_hahooks_command(bindir)
    script = os.path.join(ROOT, "heartbeat-resource.d", "hahooks")

    def call(*words):
        return subprocess.run([script, *words], capture_output=True, text=True, timeout=60,
                              env=hahooks_env(PATH=f"{bindir}:/usr/bin:/bin"))

    # stop of a stack never started succeeds (a failed stop makes Heartbeat reboot)
    assert call(cfg, "stop").returncode == 0
    proc = call(cfg, "status")
    assert proc.stdout == "stopped\n" and heartbeat_reads(proc.stdout) == "not running"
    assert proc.returncode == 7
    assert call(cfg, "start").returncode == 0
    assert (tmp_path / "lower").exists() and (tmp_path / "running-OK").exists()
    proc = call(cfg, "status")
    assert proc.stdout == "running\n" and proc.returncode == 0
    assert call(cfg, "stop").returncode == 0
    assert not (tmp_path / "lower").exists()
    proc = call(cfg, "status")
    assert proc.stdout == "stopped\n"
    calls = [(r["argv"], r["decision"].split()[0]) for r in hook_records(tmp_path)]
    assert calls == [([cfg, "stop"], "slave"), ([cfg, "status"], "stopped"),
                     ([cfg, "start"], "master"), ([cfg, "status"], "running"),
                     ([cfg, "stop"], "slave"), ([cfg, "status"], "stopped")]


def test_heartbeat_default_config_and_partial_stack(tmp_path, write_config):
    """Without hahooks::CONFIG the default config is used; a half-held stack reads
    "stopped" so that start completes it."""
    cfg = write_config(two_layers(tmp_path))
    env = hahooks_env(HAHOOKS_CONFIG=cfg)
    (tmp_path / "lower").touch()
    proc = run_hahooks("heartbeat", "status", env=env)
    assert proc.stdout == "stopped\n" and "partly held" in proc.stderr
    run_hahooks("heartbeat", "start", env=env, check=0)
    assert (tmp_path / "upper").exists()
    assert run_hahooks("heartbeat", "status", env=env).stdout == "running\n"


def test_heartbeat_failed_stop_reads_running(tmp_path, write_config):
    """A stop that cannot release a layer fails (Heartbeat retries it) and status then says
    running, so Heartbeat's failed-stop path fences this node instead of handing over."""
    cfg = write_config(two_layers(tmp_path, release_a=["false"]))
    env = hahooks_env(HAHOOKS_CONFIG=cfg)
    run_hahooks("heartbeat", "start", env=env, check=0)
    proc = run_hahooks("heartbeat", "stop", env=env)
    assert proc.returncode == 1
    assert not (tmp_path / "upper").exists() and (tmp_path / "lower").exists()
    proc = run_hahooks("heartbeat", "status", env=env)
    assert proc.stdout == "running\n" and "release incomplete" in proc.stderr


def test_heartbeat_status_with_broken_config_is_not_running(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\n")
    os.chmod(bad, 0o600)
    proc = run_hahooks("heartbeat", str(bad), "status")
    assert proc.returncode == 6
    assert proc.stdout == "stopped\n"
    assert f"{bad}:1" in proc.stderr


# ------------------------------------------------------------- [wiring] filters --
WIRING = """
[wiring]
interface = "eth0"
vip = "10.99.33.100/24"
instance = "VI_1"
"""


@pytest.mark.parametrize("command,argv,acted", [
    ("keepalived-notify", ["INSTANCE", "VI_1", "MASTER", "200"], True),
    ("keepalived-notify", ["INSTANCE", "VI_2", "MASTER", "200"], False),
    ("keepalived-notify", ["GROUP", "VG_1", "MASTER", "200"], False),
    ("ucarp-up", ["eth0", "10.99.33.100"], True),
    ("ucarp-up", ["eth1", "10.99.33.100"], False),
    ("ucarp-up", ["eth0", "10.99.33.101"], False),
])
def test_calls_for_another_instance_or_address_are_ignored(tmp_path, write_config, command,
                                                          argv, acted):
    cfg = write_config(WIRING + two_layers(tmp_path))
    run_hahooks(command, "--wait", "-c", cfg, *argv, check=0)
    assert (desire(tmp_path) is not None) is acted
    decision = hook_records(tmp_path)[0]["decision"]
    assert decision.startswith("ignored") is (not acted)


def test_ucarp_vip_prefix_comes_from_wiring(tmp_path, write_config, netns):
    cfg = write_config(WIRING.replace("eth0", "dum0") + two_layers(tmp_path))
    proc = subprocess.run(["ip", "netns", "exec", netns, "python3", "-m", "hahooks",
                           "ucarp-up", "--vip", "-c", cfg, "dum0", "10.99.33.100"],
                          capture_output=True, text=True, env=hahooks_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert addresses(netns) == {"10.99.33.1": 24, "10.99.33.100": 24}
