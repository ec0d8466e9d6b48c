"""The simulator's machinery: fault injection, latencies, crash, concurrency between nodes,
launchers, sysctl (docs/reference/carp-devd.md §4), and the HAST safety semantics that need them."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import require_root, require_tool
from hahooks import waits
from test_sim_support import make_world, titles


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    yield w
    w.close()



def unique(world, base: str) -> str:
    # process titles are machine-wide: keep ours apart from other tests running now
    return f"{base}{abs(hash(world.root)) % 100000}"


# -- fault injection ---------------------------------------------------------------------
def test_inject_fail_exits_with_code_and_stderr_without_acting(world):
    world.add_hast("r0")
    rule = world.inject("hastctl role primary*", fail=71, node="nodea", times=1,
                        stderr="[ERROR] Unable to connect to hastd via uds:///var/run/hastctl: "
                               "Connection refused.\n")
    r = world.run("nodea", "hastctl", "role", "primary", "r0")
    assert (r.returncode, r.stderr) == (71, "[ERROR] Unable to connect to hastd via "
                                            "uds:///var/run/hastctl: Connection refused.\n")
    assert world.hast_role("r0", "nodea") == "secondary"          # nothing happened
    assert world.fault_hits(rule) == 1
    assert world.run("nodeb", "hastctl", "role", "primary", "r0").returncode == 0  # other node
    world.run("nodeb", "hastctl", "role", "secondary", "r0")
    r = world.run("nodea", "hastctl", "role", "primary", "r0")      # times=1: used up
    assert r.returncode == 0 and world.hast_role("r0", "nodea") == "primary"
    log = [c for c in world.commands("nodea") if c["argv"][:2] == ["hastctl", "role"]]
    assert [c["rc"] for c in log] == [71, 0] and log[0]["fault"] == rule


def test_inject_fail_after_acting(world):
    """apply=True: the command takes effect, then reports failure (the worst case a hook
    must survive: did it or did it not happen?)."""
    world.add_hast("r0")
    world.inject("hastctl role primary r0", fail=1, apply=True, stderr="boom\n")
    r = world.run("nodea", "hastctl", "role", "primary", "r0")
    assert (r.returncode, r.stderr) == (1, "boom\n")
    assert world.hast_role("r0", "nodea") == "primary"


def test_inject_hang_until_killed(world):
    world.add_hast("r0")
    rule = world.inject("hastctl role secondary*", hang=True)
    world.run("nodea", "hastctl", "role", "primary", "r0")
    proc = subprocess.Popen(["hastctl", "role", "secondary", "r0"], env=world.node_env("nodea"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        waits.wait_for(lambda: any(c.get("hang") for c in world.commands("nodea")), 10,
                       "the hang to start")      # logged right before it blocks
        assert world.fault_hits(rule) == 1
        assert proc.poll() is None
        assert world.hast_role("r0", "nodea") == "primary"
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9
    assert world.hast_role("r0", "nodea") == "primary"
    (rec,) = [c for c in world.commands("nodea") if c["argv"][:3] == ["hastctl", "role",
                                                                      "secondary"]]
    assert rec["hang"] is True and rec["fault"] == rule


def test_faults_before_applies_rules_for_shims(world):
    """faults.before() is what the drill's shims over real tools call: it exits with the
    injected failure itself, or returns when the command may run."""
    world.add_node("nodea")
    world.inject("zpool import*", fail=1, stderr="cannot import 'tank': no such pool\n",
                 node="nodea")
    code = ("import sys; from hahooks.lab.sim import faults; "
            "faults.before(sys.argv[1], sys.argv[2], 'nodea'); print('ran')")
    lib = os.path.dirname(os.path.dirname(__import__("hahooks").__file__))
    env = {**os.environ, "PYTHONPATH": lib}
    r = subprocess.run([sys.executable, "-c", code, world.root, "zpool import -f tank"],
                       env=env, capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "cannot import 'tank': no such pool\n")
    r = subprocess.run([sys.executable, "-c", code, world.root, "zpool export tank"],
                       env=env, capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "ran\n")


def test_latency_fixed_per_command(world):
    """set_latency(): every matching command sleeps first; the command log records it
    (benchmarks add these up for the critical path)."""
    world.add_hast("r0")
    world.set_latency("hastctl role*", 0.05)
    world.set_latency("hastctl*", 0.01)
    world.inject("hastctl status*", latency=0.02, times=1)
    world.run("nodea", "hastctl", "role", "primary", "r0")
    world.run("nodea", "hastctl", "status")
    world.run("nodea", "hastctl", "status")
    lat = [c["latency"] for c in world.commands("nodea") if c["argv"][0] == "hastctl"]
    assert lat == [0.05, pytest.approx(0.03), 0.01]


def test_hast_primary_worker_hangs_device_never_appears(world):
    """A primary worker that never finishes: hastctl exited 0, the worker exists, the
    device does not (the kind's bounded wait must time out and roll back)."""
    name = unique(world, "hang")
    world.add_hast(name, device_delay=0.0)
    world.inject(f"hastd: {name} (primary)", hang=True)
    assert world.run("nodea", "hastctl", "role", "primary", name).returncode == 0
    waits.wait_for(lambda: f"hastd: {name} (primary)" in titles(), 10, "primary worker")
    assert not os.path.exists(os.path.join(world.dev_dir("nodea"), "hast", name))
    assert "primary" in world.run("nodea", "hastctl", "status", name).stdout


def test_hast_primary_worker_fails_role_back_to_init(world):
    """docs/reference/hast.md §5: a primary worker exiting with anything but EX_TEMPFAIL: `Changing resource role
    back to init.` — silently, the device never appears."""
    world.add_hast("r0", device_delay=0.0)
    world.inject("hastd: r0 (primary)", fail=1, times=1)
    assert world.run("nodea", "hastctl", "role", "primary", "r0").returncode == 0
    waits.wait_for(lambda: world.hast_role("r0", "nodea") == "init", 10, "role init")
    assert not os.path.exists(os.path.join(world.dev_dir("nodea"), "hast", "r0"))


# -- crash, two nodes, concurrency --------------------------------------------------------
def test_crash_drops_roles_and_ends_workers(world):
    name = unique(world, "cr")
    world.configure(hast_secondary_timeout=0.5)    # the peer's worker lingers that long
    world.add_hast(name, primary="nodea")
    waits.wait_for(lambda: f"hastd: {name} (secondary)" in titles(), 10, "secondary worker")
    world.crash("nodea")
    waits.wait_for(lambda: not any(t.startswith(f"hastd: {name} ") for t in titles()), 10,
                   "every worker of the resource to end")
    assert not os.path.exists(os.path.join(world.dev_dir("nodea"), "hast", name))
    assert world.run("nodea", "hastctl", "status").returncode == 71     # node is down
    st = world.run("nodeb", "hastctl", "status", name).stdout.splitlines()[1]
    assert st.split("\t")[1].startswith("-        secondary")           # no worker, no peer
    assert world.run("nodeb", "hastctl", "role", "primary", name).returncode == 0
    waits.wait_for_path(os.path.join(world.dev_dir("nodeb"), "hast", name), 10)
    assert world.violations() == []
    world.restart("nodea")
    assert world.hast_role(name, "nodea") == "init"                     # docs/reference/hast.md §3: boots in init


def test_two_nodes_see_one_world_under_concurrent_commands(world):
    """Many role changes from both nodes at once (each a process): no update is lost and
    both nodes' hastctl views agree."""
    names = [f"c{i}" for i in range(12)]
    for n in names:
        world.add_hast(n, size_mb=1)
    procs = []
    for i, n in enumerate(names):
        node = "nodea" if i % 2 == 0 else "nodeb"
        procs.append(subprocess.Popen(["hastctl", "role", "primary", n],
                                      env=world.node_env(node)))
        procs.append(subprocess.Popen(["hastctl", "status"], env=world.node_env(node),
                                      stdout=subprocess.DEVNULL))
    assert [p.wait(60) for p in procs] == [0] * len(procs)
    views = {node: world.run(node, "hastctl", "status").stdout.splitlines()[1:]
             for node in ("nodea", "nodeb")}
    for i, n in enumerate(names):
        owner = "nodea" if i % 2 == 0 else "nodeb"
        for node in ("nodea", "nodeb"):
            line = next(x for x in views[node] if x.startswith(n + "\t"))
            assert ("primary" if node == owner else "secondary") in line, (node, line)
    assert world.violations() == []


def test_secondary_destroys_device_under_mount_violation_reference_7_8(world, tmp_path):
    """docs/reference/hast.md §3: `hastctl role secondary` destroys /dev/hast/X even while it is mounted —
    the command succeeds and the simulator records the violation."""
    require_root()
    require_tool("mkfs.ext4")
    world.add_hast("r0", size_mb=16, primary="nodea")
    device = os.path.join(world.dev_dir("nodea"), "hast", "r0")
    subprocess.run(["mkfs.ext4", "-q", "-F", device], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", device, str(mnt)], check=True)
    try:
        r = world.run("nodea", "hastctl", "role", "secondary", "r0")
        assert r.returncode == 0
        assert not os.path.exists(device)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    (v,) = world.violations()
    assert v["kind"] == "device_removed_in_use" and f"mounted on {mnt}" in v["detail"]


def test_open_device_removed_is_a_violation(world):
    """An imported pool keeps its vdev files open: removing such a device is recorded too."""
    world.add_hast("r0", primary="nodea")
    with open(os.path.join(world.dev_dir("nodea"), "hast", "r0"), "rb"):
        assert world.run("nodea", "hastctl", "role", "init", "r0").returncode == 0
    (v,) = world.violations()
    assert v["kind"] == "device_removed_in_use" and f"open by pid {os.getpid()}" in v["detail"]


def test_record_violation_for_the_drill(world):
    world.record_violation("pool_imported_twice", "zhast imported on nodea and nodeb")
    assert [v["kind"] for v in world.violations()] == ["pool_imported_twice"]


# -- launchers ----------------------------------------------------------------------------
def test_launchers_work_without_pythonpath(world):
    """The bin dir launchers carry the interpreter and the package path themselves."""
    world.add_hast("r0")
    env = {"PATH": world.bin_dir + ":/usr/bin:/bin", "HAHOOKS_SIM_ROOT": world.root,
           "HAHOOKS_SIM_NODE": "nodea"}
    r = subprocess.run(["hastctl", "status", "r0"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("Name\tStatus")
    r = subprocess.run([sys.executable, "-m", "hahooks.lab.sim", "mdconfig", "-l"],
                       env={**world.node_env("nodea"),
                            "PYTHONPATH": os.path.dirname(os.path.dirname(
                                __import__("hahooks").__file__))},
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "")


def test_missing_identity_is_a_clear_error(world):
    r = subprocess.run([os.path.join(world.bin_dir, "hastctl"), "status"],
                       env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert r.returncode == 78 and "HAHOOKS_SIM_ROOT" in r.stderr


# -- sysctl --------------------------------------------------------------------------------
def test_sysctl_carp_reference_6(world):
    """docs/reference/carp-devd.md §4: the CARP sysctls with their defaults; a write to demotion ADDS (`0 -> 240`);
    any other oid is unknown (exit 1)."""
    world.add_node("nodea")
    s = lambda *a: world.run("nodea", "sysctl", *a)   # noqa: E731
    assert s("net.inet.carp.preempt").stdout == "net.inet.carp.preempt: 0\n"
    assert s("-n", "net.inet.carp.ifdown_demotion_factor").stdout == "240\n"
    assert s("net.inet.carp.preempt=1").stdout == "net.inet.carp.preempt: 0 -> 1\n"
    assert s("net.inet.carp.demotion=240").stdout == "net.inet.carp.demotion: 0 -> 240\n"
    assert s("net.inet.carp.demotion=240").stdout == "net.inet.carp.demotion: 240 -> 480\n"
    assert s("net.inet.carp.demotion=-480").stdout == "net.inet.carp.demotion: 480 -> 0\n"
    assert s("net.inet.carp").stdout == textwrap.dedent("""\
        net.inet.carp.allow: 1
        net.inet.carp.preempt: 1
        net.inet.carp.log: 1
        net.inet.carp.demotion: 0
        net.inet.carp.ifdown_demotion_factor: 240
        net.inet.carp.senderr_demotion_factor: 240
        """)
    r = s("kern.hostname")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "sysctl: unknown oid 'kern.hostname'\n")
    r = s("net.inet.carp.nosuch=1")
    assert (r.returncode, r.stderr) == (1, "sysctl: unknown oid 'net.inet.carp.nosuch'\n")
    assert world.run("nodeb", "sysctl", "-n", "net.inet.carp.preempt").stdout == "0\n"


# -- namespaces (the drill's nodes) --------------------------------------------------------
def test_worker_lives_in_the_node_pid_namespace(tmp_path):
    """The drill runs each node's hastd inside that node's PID namespace: the secondary
    worker must appear there (where the node's hooks look), not where the peer's command ran."""
    require_root()
    require_tool("unshare")
    w = make_world(tmp_path)
    w.autostart = False
    name = unique(w, "ns")
    w.add_hast(name, roles={"nodea": "secondary", "nodeb": "secondary"})
    node = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
                             "sh", "-c", "hastd && exec sleep 600"], env=w.node_env("nodea"))
    try:
        waits.wait_for(lambda: w.store.alive("nodea", "hastd"), 10, "hastd in the namespace")
        assert w.run("nodeb", "hastctl", "role", "primary", name).returncode == 0
        title = f"hastd: {name} (secondary)"
        waits.wait_for(lambda: title in titles(), 10, "secondary worker")
        pid = next(p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) == title)
        assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    finally:
        node.kill()            # --kill-child: the namespace's init dies, so does the node
        node.wait()
        w.close()
    waits.wait_for(lambda: f"hastd: {name} (secondary)" not in titles(), 10, "node gone")


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().rstrip(b"\0").replace(b"\0", b" ").decode()
    except OSError:
        return ""
