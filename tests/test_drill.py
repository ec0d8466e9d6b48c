"""`hahooks drill`: the parts that need no sandbox (argument checks, preflight, fence desk,
timeline, wiring delivery, example overlay) and the drill itself on the two-node sandbox
(root, namespaces, zfs-fuse, MariaDB: a missing component fails in CI)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import LIB, ROOT, hahooks_env, require_root, require_tool, run_hahooks

sys.path.insert(0, LIB)

from hahooks.lab.drill.command import parse_inject  # noqa: E402
from hahooks.lab.drill import events, fence, scenarios, timeline, tomlout  # noqa: E402
from hahooks.errors import ExitCode, UsageError  # noqa: E402


# -- arguments and preflight ---------------------------------------------------------------
def test_list_names_every_scenario_and_its_steps():
    r = run_hahooks("drill", "--list", check=0)
    for sc in scenarios.all_scenarios():
        assert sc.name in r.stdout
        assert ", ".join(sc.resource_names) in r.stdout
    assert f"{scenarios.DEFAULT} " in r.stdout and "(default)" in r.stdout


@pytest.mark.parametrize("text,want", [
    ("zhast:hang", ("zhast", "acquire", "hang")),
    ("hast/release:kill", ("hast", "release", "kill")),
    ("db/acquire:fail", ("db", "acquire", "fail")),
])
def test_inject_parses(text, want):
    assert parse_inject(text) == want


@pytest.mark.parametrize("text", ["zhast", "zhast:explode", "../x:fail", "a;b:hang",
                                  "hast/sideways:fail", ":fail", "hast:fail:fail"])
def test_inject_refuses_malformed(text):
    with pytest.raises(UsageError):
        parse_inject(text)


@pytest.mark.parametrize("args,culprit", [
    (["--inject", "nosuchlayer:fail"], "nosuchlayer"),
    (["--scenario", "seed999"], "seed999"),
    (["--inject", "zhast:melt"], "zhast:melt"),
    (["--nodes", "3"], "only --scenario pacemaker"),
    (["--scenario", "pacemaker", "--nodes", "4"], "4"),
    (["--scenario", "pacemaker", "--warm"], "--warm"),
])
def test_bad_arguments_exit_2_in_one_line_before_anything(args, culprit):
    r = run_hahooks("drill", *args)
    assert r.returncode == ExitCode.ARGS, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and culprit in lines[0]


def test_without_root_exit_4_and_say_so():
    require_root()            # to run the drill as "nobody" we need root first
    # the interpreter lives under /root: start it as root, drop to nobody before hahooks
    code = ("import os, sys, shutil, tomllib\n"
            "from hahooks import cli\n"
            "import hahooks.lab.drill.scenarios, hahooks.lab.drill.preflight\n"
            "cli.build_parser()\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "sys.exit(cli.main(['drill']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=hahooks_env(), cwd="/", timeout=60)
    assert r.returncode == ExitCode.PERM, (r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1
    assert "root" in r.stderr


def test_missing_package_exit_5_naming_the_debian_package(tmp_path):
    """mariadbd hidden (a private mount namespace binds /dev/null over it): the drill names
    the package to install and builds nothing."""
    require_root()
    require_tool("unshare", "mariadbd")
    mariadbd = subprocess.run(["sh", "-c", "command -v mariadbd"], capture_output=True,
                              text=True).stdout.strip()
    before = set(os.listdir("/var/tmp"))
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        f'mount --bind /dev/null {mariadbd} && exec "$@"', "sh",
                        sys.executable, "-m", "hahooks", "drill"],
                       capture_output=True, text=True, env=hahooks_env(), timeout=60)
    assert r.returncode == ExitCode.NOT_INSTALLED, (r.returncode, r.stderr)
    assert "mariadb-server" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not [d for d in set(os.listdir("/var/tmp")) - before if d.startswith("hahooks-drill")]


# -- the fence desk -----------------------------------------------------------------------
def test_fence_desk_powers_off_the_peer_and_answers_after(tmp_path):
    crashed, up = [], {"nodea", "nodeb"}

    def crash(target, why):
        crashed.append(target)
        up.discard(target)

    desk = fence.FenceDesk(str(tmp_path / "desk"), ("nodea", "nodeb"), crash,
                           lambda n: n in up).start()
    try:
        ok, detail = fence.request(desk.desk, "nodeb", "nodea", "test", timeout=10)
        assert ok and crashed == ["nodea"], detail
        # the dead node cannot fence the survivor (a fencing race has one winner)
        ok, detail = fence.request(desk.desk, "nodea", "nodeb", "late", timeout=10)
        assert not ok and "down" in detail and crashed == ["nodea"]
        ok, detail = fence.request(desk.desk, "nodeb", "nodeb", "self", timeout=10)
        assert not ok and "itself" in detail
        ok, detail = fence.request(desk.desk, "nodeb", "nodez", "stranger", timeout=10)
        assert not ok and "unknown" in detail
        desk.refuse = "injected: the power switch does not answer"
        up.add("nodea")
        ok, detail = fence.request(desk.desk, "nodeb", "nodea", "refused", timeout=10)
        assert not ok and "power switch" in detail and crashed == ["nodea"]
    finally:
        desk.stop()


def test_fence_command_exit_codes(tmp_path):
    desk = fence.FenceDesk(str(tmp_path / "desk"), ("nodea", "nodeb"), lambda t, w: None,
                           lambda n: True).start()
    try:
        cmd = [sys.executable, "-m", "hahooks.lab.drill.fence", "--desk", desk.desk]
        r = subprocess.run(cmd + ["--node", "nodeb", "--target", "nodea"],
                           capture_output=True, text=True, env=hahooks_env(), timeout=30)
        assert r.returncode == 0 and "fenced" in r.stdout
        r = subprocess.run(cmd + ["--node", "nodeb", "--target", "nodeb"],
                           capture_output=True, text=True, env=hahooks_env(), timeout=30)
        assert r.returncode == 1 and "NOT fenced" in r.stderr
    finally:
        desk.stop()
    r = subprocess.run([sys.executable, "-m", "hahooks.lab.drill.fence", "--desk",
                        str(tmp_path / "nodesk"), "--node", "a", "--target", "b",
                        "--timeout", "1"], capture_output=True, text=True, env=hahooks_env())
    assert r.returncode == 1 and "no such fence desk" in r.stderr


# -- timeline from real JSON logs ----------------------------------------------------------
def test_timeline_shows_each_step_with_its_duration(write_config, tmp_path):
    cfg = write_config(f"""
        [[resource]]
        name = "first"
        kind = "command"
        state_file = "{tmp_path}/first"
        acquire = ["true"]
        release = ["true"]

        [[resource]]
        name = "second"
        kind = "command"
        state_file = "{tmp_path}/second"
        acquire = ["true"]
        release = ["false"]
        """)
    tl = timeline.Timeline()
    tl.mark("start", event="MASTER")
    tl.logs["nodea"] = str(tmp_path / "hahooks.jsonl")
    run_hahooks("master", "-c", cfg, check=0)
    run_hahooks("slave", "-c", cfg, check=ExitCode.GENERIC)
    text = tl.render()
    assert "transition #1 -> master" in text
    assert "acquire  first (command)" in text and "acquire  second (command)" in text
    assert "release  second (command)" in text and "FAILED" in text
    steps = [e for e in tl.as_json() if e.get("event") == "step"]
    assert [(s["step"], s["resource"], s["ok"]) for s in steps] == [
        ("acquire", "first", True), ("acquire", "second", True), ("release", "second", False)]
    assert all(s["duration"] >= 0 for s in steps)
    trans = tl.transitions()
    assert [t["ok"] for t in trans] == [True, False] and not timeline.overlapping(trans)


def test_overlap_detection():
    a = {"node": "n", "start": 0.0, "end": 2.0}
    b = {"node": "n", "start": 1.0, "end": 3.0}
    c = {"node": "m", "start": 1.0, "end": 3.0}
    assert timeline.overlapping([a, b, c]) == [(a, b)]
    assert timeline.overlapping([a, c]) == []


# -- wiring delivery and example overlay -----------------------------------------------------
def test_devd_delivery_uses_the_rendered_rules(write_config, tmp_path):
    cfg = write_config(f"""
        [wiring]
        vhid = 3
        interface = "eth0"

        [[resource]]
        name = "only"
        kind = "command"
        state_file = "{tmp_path}/s"
        acquire = ["true"]
        release = ["true"]
        """)
    r = run_hahooks("render", "--only", "devd", "--hahooks", "/x/hahooks", "-c", cfg, check=0)
    rules = events.parse_devd(r.stdout)
    assert len(rules) == 3
    for state, role_word in (("MASTER", "MASTER"), ("BACKUP", "BACKUP"), ("INIT", "INIT")):
        action = events.devd_action(rules, events.carp_event(3, "eth0", state))
        assert action.startswith("/x/hahooks devd-event --detach") and action.endswith(
            f"CARP 3@eth0 {role_word}")
    assert events.devd_action(rules, events.carp_event(4, "eth0", "MASTER")) is None
    assert events.devd_action(rules, {"system": "IFNET", "subsystem": "eth0",
                                      "type": "LINK_UP"}) is None


def test_every_scenario_example_overlays_into_a_valid_config(tmp_path):
    """The drill runs examples/: each, moved into a sandbox, passes `hahooks check`."""
    from hahooks.lab.drill import stacks

    class Fake:
        root = str(tmp_path / "root")

    for sc in scenarios.all_scenarios():
        for i, node in enumerate(("nodea", "nodeb")):
            place = scenarios.NodePlace(node, "nodeb" if i == 0 else "nodea", "10.99.40.1",
                                        "10.99.40.2", str(tmp_path / "dev" / node),
                                        Fake.root, str(tmp_path / node), ["/bin/true"],
                                        "/x/hahooks")
            svc = {"kind": "service", "manager": "command", "start": ["true"],
                   "stop": ["true"], "status": ["true"]}
            data = scenarios.overlay(scenarios.load_example(sc.example_path(i)), place, svc,
                                     stacks.tweaks(), sc.add_service)
            path = scenarios.write_config(data, str(tmp_path / f"{sc.name}-{node}.toml"))
            r = run_hahooks("check", "-c", path)
            assert r.returncode == 0, (sc.name, node, r.stderr)
            assert all(v.startswith((str(tmp_path), "/x", "/bin")) or not v.startswith("/")
                       for layer in data["resource"] for v in layer.values()
                       if isinstance(v, str)), (sc.name, data["resource"])


def test_toml_writer_round_trips():
    import tomllib
    from hypothesis import HealthCheck, given, settings, strategies as st

    keys = st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True)
    scalars = st.one_of(st.booleans(), st.integers(-10**6, 10**6),
                        st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
                        st.lists(st.text(max_size=5), max_size=3))

    @given(st.dictionaries(keys, scalars, max_size=5),
           st.lists(st.dictionaries(keys, scalars, min_size=1, max_size=4), min_size=1,
                    max_size=3))
    # generation speed depends on the machine's load (CI shares 2 cores): not what is tested
    @settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
    def check(node, resources):
        data = {"node": node, "resource": resources}
        assert tomllib.loads(tomlout.dumps(data)) == data

    check()


# -- a flip during a long wait (found by the flap storm) -------------------------------------
def test_a_flip_ends_a_waiting_transition_without_fencing(tmp_path):
    """nodeb is told master while nodea is primary: its hast layer waits (up to 30 s) for
    nodea to leave primary and would then fence nodea. CARP flips back before that: the
    wait must end at once and the stale transition must never power off the peer."""
    from hahooks.lab.sim import World
    from replication_helpers import SimCluster, unique

    world = World(str(tmp_path / "world"))
    try:
        r = unique("dr")
        world.add_hast(r, size_mb=8, primary="nodea")
        c = SimCluster(tmp_path, world)
        marker = tmp_path / "fenced"
        c.write("nodeb", f"""
[[resource]]
name = "disks"
kind = "hast"
resources = ["{r}"]
secondary_wait = "30s"
""", f'fence = ["touch", "{marker}"]\n')
        c.hh("nodeb", "master", "--detach", check=0)
        log = tmp_path / "nodeb.jsonl"

        def waiting():
            return log.exists() and any('"event": "decision"' in line and '"disks"' in line
                                        for line in log.read_text().splitlines())
        from hahooks import waits
        waits.wait_for(waiting, 30, "nodeb's hast layer to start waiting")
        p = c.hh("nodeb", "slave")            # the flip: waits for the lock, then converges
        assert p.returncode == 0, p.stderr
        text = log.read_text()
        assert "superseded" in text
        assert not marker.exists(), "a stale transition fenced the peer"
        assert world.hast_role(r, "nodea") == "primary"
        assert world.hast_role(r, "nodeb") == "secondary"
        assert not any(a[1:3] == ["role", "primary"] for a in c.commands("nodeb", "hastctl"))
        c.assert_no_violations()
    finally:
        world.close()


# -- the drill itself on the sandbox ---------------------------------------------------------
def _require_sandbox():
    require_root()
    require_tool("ip", "unshare", "nsenter", "zfs-fuse", "zpool", "mariadbd", "mkfs.ext4",
                 "nginx")


def _leftovers(report: dict) -> list[str]:
    """What a finished drill must not leave: namespaces, processes, loop devices, files."""
    from hahooks.lab.sandbox import list_loops, list_netns

    workdir, prefix = report["workdir"], report["prefix"]
    out = [f"netns {ns}" for ns in list_netns() if ns.startswith(prefix + "-")]
    out += [f"loop {dev} ({path})" for dev, path in list_loops() if path.startswith(workdir)]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if workdir.encode() in fh.read():
                    out.append(f"process {pid}")
        except OSError:
            pass
    if os.path.exists(workdir):
        out.append(f"workdir {workdir}")
    return out


def test_default_drill_passes_with_a_timeline_and_leaves_nothing():
    _require_sandbox()
    r = run_hahooks("drill", "--json", timeout=900)
    report = json.loads(r.stdout)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert r.returncode == 0 and report["passed"], failed
    assert report["scenario"] == scenarios.DEFAULT
    names = " | ".join(c["name"] for c in report["checks"])
    for what in ("holds the stack", "every acknowledged write is on", "fenced",
                 "simulator invariant log empty", "no pool imported", "scrub"):
        assert what in names, what
    steps = [e for e in report["timeline"] if e.get("event") == "step"]
    assert {(e["node"], e["step"]) for e in steps} >= {("nodea", "acquire"), ("nodea", "release"),
                                                      ("nodeb", "acquire"), ("nodeb", "release")}
    assert all(e["ok"] for e in steps)
    texts = [e["text"] for e in report["timeline"]]
    assert any("crash" in t for t in texts) and any("fence:" in t for t in texts)
    assert any(t.startswith("devd MASTER: ") and "devd-event --detach" in t for t in texts)
    # the partition (issue 16): link cut with both nodes up; the survivor's takeover meets
    # no secondary worker, is not `complete`, rolls back, fences the cut-off holder, and
    # then its storage layer waits out the HAST I/O stall (sbin/hastd/primary.c)
    assert "fenced the cut-off" in names, names
    assert any(t.startswith("link cut") for t in texts), texts
    assert any("not complete" in t and "rolling back" in t for t in texts), texts
    assert any("in HAST I/O stalled" in t for t in texts), texts
    assert report["figures"]
    assert not _leftovers(report), _leftovers(report)


@pytest.mark.parametrize("name", [s.name for s in scenarios.all_scenarios()
                                  if s.name != scenarios.DEFAULT])
def test_every_scenario_drill_passes(name):
    _require_sandbox()
    r = run_hahooks("drill", "--scenario", name, "--json", timeout=900)
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["passed"], [c for c in report["checks"] if not c["ok"]]
    sc = scenarios.get(name)
    texts = [e["text"] for e in report["timeline"]]
    assert any(t.startswith(f"{sc.wiring} MASTER: ") for t in texts), texts[:20]
    assert not _leftovers(report), _leftovers(report)


def test_injected_kill_mid_step_is_safe_and_converges():
    _require_sandbox()
    r = run_hahooks("drill", "--inject", "zhast:kill", "--json", timeout=900)
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["passed"], [c for c in report["checks"] if not c["ok"]]
    trial = [c["name"] for c in report["checks"] if c["name"].startswith("zhast/acquire:kill")]
    assert any("a re-run converges" in n for n in trial), trial
    assert any("the hook was killed mid-step" in n for n in trial), trial
    texts = [e["text"] for e in report["timeline"]]
    assert any("SIGKILL of the hook's transition (pid " in t and ": worker)" in t
               for t in texts), texts
    assert not _leftovers(report)


def test_warm_drill_kill_of_the_agents_converger_is_safe_and_converges():
    """Issue 22: the same drill and fault with `hahooks agent` in both nodes (restarted
    after each boot): the transition killed mid-step is the agent's converger, the
    re-run converges, and every check of the drill (crash, fencing, partition,
    switchover) still holds on the warm path."""
    _require_sandbox()
    r = run_hahooks("drill", "--warm", "--inject", "zhast:kill", "--json", timeout=900)
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["passed"], [c for c in report["checks"] if not c["ok"]]
    assert report["warm"] is True
    trial = [c["name"] for c in report["checks"] if c["name"].startswith("zhast/acquire:kill")]
    assert any("a re-run converges" in n for n in trial), trial
    texts = [e["text"] for e in report["timeline"]]
    assert any("SIGKILL of the hook's transition (pid " in t and "the agent's converger" in t
               for t in texts), texts
    # an agent in each node at the start and again after each node's boot
    started = [e["node"] for e in report["timeline"] if e["text"] == "warm agent started"]
    booted = [e["node"] for e in report["timeline"] if e["text"] == "booted"]
    assert sorted(started) == sorted(["nodea", "nodeb"] + booted), report["timeline"]
    assert not _leftovers(report)


def test_ctrl_c_tears_everything_down(tmp_path):
    """SIGINT while both nodes run: namespaces, processes, mounts, loop devices and files
    all go, and the exit code says the drill did not finish."""
    _require_sandbox()
    from hahooks.lab.sandbox import list_loops, list_netns

    workdir = str(tmp_path / "w")
    p = subprocess.Popen([sys.executable, "-m", "hahooks", "drill", "--workdir", workdir],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=hahooks_env())
    prefix = f"hhd{40 + p.pid % 200}x{p.pid % 10000}"     # cluster.py's naming
    for line in p.stderr:
        if "CARP elects" in line:          # the sandbox is up, the nodes run
            break
    assert [ns for ns in list_netns() if ns.startswith(prefix + "-")], "no sandbox seen"
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=300)
    assert p.returncode != 0
    assert not [ns for ns in list_netns() if ns.startswith(prefix + "-")]
    assert not [d for d, path in list_loops() if path.startswith(workdir)]
    with open("/proc/self/mountinfo") as fh:
        assert workdir not in fh.read()
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if workdir.encode() in fh.read():
                    left.append(pid)
        except OSError:
            pass
    assert not left
    assert not os.path.exists(workdir) or not os.listdir(workdir), os.listdir(workdir)
