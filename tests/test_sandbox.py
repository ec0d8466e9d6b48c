"""The sandbox (hahooks.lab.sandbox) with real namespaces, real zfs-fuse and real loop devices:
nodes reach each other and nothing else, are isolated from each other and from the host,
zfs-fuse per node refuses a pool by hostid exactly as docs/reference/lab.md §5 shows, the stubs
keep heartbeat's reboot/pkill inside a node, and nothing is left behind, even when the
with-block raises or the Lab's process is SIGKILLed."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from hahooks import waits
from hahooks.errors import WaitTimeout
from conftest import LIB, require_root, require_tool

PREFIXES = []        # every prefix used here, to check no remnant is left


def lab_for(prefix: str, tmp_path, **kw):
    from hahooks.lab.sandbox import Lab

    PREFIXES.append(prefix)
    return Lab(prefix=prefix, workdir=str(tmp_path / "lab"), **kw)


def host_state(prefix: str, workdir: str) -> dict:
    """Everything of a lab that could be left on the host."""
    from hahooks.lab.sandbox import list_loops, list_netns

    with open("/proc/mounts") as fh:
        mounts = [line for line in fh if workdir in line or f"/{prefix}-" in line]
    return {"netns": [n for n in list_netns() if n.startswith(prefix + "-")],
            "loops": [d for d, f in list_loops() if f.startswith(workdir)],
            "mounts": mounts}


@pytest.fixture
def need_ns():
    require_root()
    require_tool("ip", "unshare", "nsenter", "ping")


def test_two_nodes_talk_over_the_bridge_and_reach_nothing_else(need_ns, tmp_path):
    host_name = socket.gethostname()
    host_addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                                capture_output=True, text=True, check=True).stdout
    host_ips = [line.split()[3].split("/")[0] for line in host_addrs.splitlines()]
    with lab_for("sbxnet", tmp_path) as lab:
        net = lab.network("10.99.241.0/24")
        a = lab.node("nodea", ip="10.99.241.1", net=net)
        b = lab.node("nodeb", ip="10.99.241.2", net=net)
        assert a.run(["ping", "-c", "1", "-W", "5", "10.99.241.2"], check=False).returncode == 0
        assert b.run(["ping", "-c", "1", "-W", "5", "10.99.241.1"], check=False).returncode == 0
        # eth0 with the broadcast address (heartbeat's bcast needs `brd +`), nothing else
        addrs = a.run(["ip", "-4", "-o", "addr", "show"]).stdout
        assert "10.99.241.1/24 brd 10.99.241.255" in addrs
        assert [line.split()[1] for line in addrs.splitlines()] == ["lo", "eth0"]
        for ip in host_ips:
            assert a.run(["ping", "-c", "1", "-W", "1", ip], check=False).returncode != 0, ip
        assert "default" not in a.run(["ip", "route"]).stdout
        # the switch port down: only nodea loses its carrier
        net.set_link("nodea", False)
        assert "NO-CARRIER" in a.run(["ip", "link", "show", "eth0"]).stdout
        assert "NO-CARRIER" not in b.run(["ip", "link", "show", "eth0"]).stdout
        net.set_link("nodea", True)
        # hostnames are per node, the host's is untouched
        assert a.run(["hostname"]).stdout.strip() == "nodea"
        assert b.run(["uname", "-n"]).stdout.strip() == "nodeb"
        assert socket.gethostname() == host_name


def test_processes_are_private_to_their_node(need_ns, tmp_path):
    with lab_for("sbxpid", tmp_path) as lab:
        net = lab.network("10.99.242.0/24")
        a = lab.node("nodea", ip="10.99.242.1", net=net)
        b = lab.node("nodeb", ip="10.99.242.2", net=net)
        p = a.popen(["sleep", "300"])
        inner = p.inner_pid
        assert inner in a.pids() and inner not in b.pids()
        ns_pid = int(a.run(["sh", "-c", "pgrep -x sleep || ps -eo pid=,comm= | "
                                        "awk '$2==\"sleep\"{print $1}'"]).stdout.split()[0])
        assert a.global_pid(ns_pid) == inner            # pid files hold namespace PIDs
        assert "sleep" not in b.run(["ps", "-eo", "comm="]).stdout
        assert a.run(["cat", "/proc/1/cmdline"]).stdout.count("holder.py") == 1
        p.terminate()                                    # reaches sleep, not just nsenter
        assert p.wait(timeout=10) == -signal.SIGTERM
        assert inner not in a.pids()
        # a command that overruns its timeout is killed inside the node too
        with pytest.raises(subprocess.TimeoutExpired):
            a.run(["sleep", "300"], timeout=0.5)
        waits.wait_for(lambda: not a.pids_named("sleep"), 5, "the timed-out sleep to go")
        # pid files inside a node hold namespace PIDs
        d = a.popen(["sh", "-c", "echo $$ > /run/sbx.pid; exec sleep 300"])
        waits.wait_for(lambda: a.pidfile_pid("/run/sbx.pid"), 5, "the pid file")
        assert a.pidfile_pid("/run/sbx.pid") == d.inner_pid != \
            int(a.run(["cat", "/run/sbx.pid"]).stdout)
        assert b.pidfile_pid("/run/sbx.pid") is None       # /run is per node
        # /etc is private: a node writes it, the host's stays as it was
        a.write_file("/etc/sbx-private.conf", "only in nodea\n", 0o600)
        assert a.run(["stat", "-c", "%a", "/etc/sbx-private.conf"]).stdout.strip() == "600"
        assert not os.path.exists("/etc/sbx-private.conf")
        assert b.run(["test", "-e", "/etc/sbx-private.conf"], check=False).returncode == 1
        # a node without its own netns (storage tests): mount/UTS/PID only
        s = lab.node("stor")
        assert s.run(["hostname"]).stdout.strip() == "stor"
        assert s.run(["ps", "-eo", "pid="]).stdout.split()[0] == "1"
        # hahooks itself runs inside a node
        r = a.run(lab.hahooks_argv("--version"), env=lab.node_env(a), check=False)
        assert r.returncode == 0, r.stderr


def test_zfs_fuse_per_node_refuses_a_crashed_nodes_pool_by_hostid(need_ns, tmp_path):
    require_tool("zfs-fuse", "zpool")
    with lab_for("sbxzfs", tmp_path) as lab:
        a = lab.node("nodea", hostid=0x0A0A0001, zfs=True)
        b = lab.node("nodeb", hostid=0x0B0B0002, zfs=True)
        assert a.run(["hostid"]).stdout.strip() == "0a0a0001"
        assert b.run(["hostid"]).stdout.strip() == "0b0b0002"
        a.start_zfs()
        b.start_zfs()
        vdev = lab.file_vdev("d0", 128)
        vdir = os.path.dirname(vdev)
        mnt = os.path.join(lab.workdir, "mnt", "sbxzfspool")
        a.run(["zpool", "create", "-m", mnt, "sbxzfspool", vdev])
        a.run(["dd", "of=" + os.path.join(mnt, "durable.txt"), "conv=fsync", "status=none"],
              input="written with fsync by nodea\n")
        a.crash()
        assert not a.alive and a.pids() == []
        listing = b.run(["zpool", "import", "-d", vdir])
        assert "last accessed by another system" in listing.stdout
        plain = b.run(["zpool", "import", "-d", vdir, "sbxzfspool"], check=False)
        assert plain.returncode == 1
        assert "pool may be in use from other system" in plain.stderr
        assert "last accessed by nodea (hostid: 0xa0a0001)" in plain.stderr
        b.run(["zpool", "import", "-f", "-d", vdir, "sbxzfspool"])
        assert b.run(["cat", os.path.join(mnt, "durable.txt")]).stdout == \
            "written with fsync by nodea\n"
        # the host never sees the node's FUSE mount
        with open("/proc/mounts") as fh:
            assert mnt not in fh.read()
        # a killed zfs-fuse leaves a stale mount; stop_zfs unmounts it, start_zfs works again
        [zfs_fuse] = b.pids_named("zfs-fuse")
        os.kill(zfs_fuse, signal.SIGKILL)
        waits.wait_for(lambda: not b.pids_named("zfs-fuse"), 10, "zfs-fuse to die")
        stale = b.run(["ls", mnt], check=False)
        assert stale.returncode == 2 and "Transport endpoint is not connected" in stale.stderr
        assert b.stale_fuse_mounts() == [mnt]
        b.stop_zfs(graceful=False)
        assert b.stale_fuse_mounts() == []
        b.start_zfs()
        assert b.run(["zpool", "list", "-H", "-o", "name"]).returncode == 0
        # nodea boots again: same hostid (its /etc survives, as a disk would), and its
        # stale zpool.cache does not import the pool nodeb may hold
        a = lab.node("nodea", zfs=True)
        assert a.run(["hostid"]).stdout.strip() == "0a0a0001"
        a.start_zfs()
        assert "sbxzfspool" not in a.run(["zpool", "list", "-H", "-o", "name"],
                                         check=False).stdout


def test_stubs_keep_reboot_and_pkill_inside_the_node(need_ns, tmp_path):
    decoy = tmp_path / "heartbeat"          # a process named heartbeat on the host...
    decoy.write_bytes(open("/bin/sleep", "rb").read())
    decoy.chmod(0o755)
    host_decoy = subprocess.Popen([str(decoy), "300"])
    try:
        with lab_for("sbxstub", tmp_path) as lab:
            net = lab.network("10.99.243.0/24")
            a = lab.node("nodea", ip="10.99.243.1", net=net, stubs=True, heartbeat=True)
            inner = a.popen([str(decoy), "300"])         # ...and one inside the node
            inner_pid = inner.inner_pid
            assert a.run(["/sbin/reboot", "-nf"], check=False).returncode == 1
            assert a.run(["pkill", "-9", "heartbeat"], check=False).returncode == 1
            assert a.run(["systemctl", "reboot"], check=False).returncode == 1
            calls = a.stub_calls()
            said = [(c.split()[1], os.path.basename(c.split()[2]), *c.split()[3:])
                    for c in calls]                       # "<epoch> <host> <argv0> args"
            assert said == [("nodea", "reboot", "-nf"), ("nodea", "pkill", "-9", "heartbeat"),
                            ("nodea", "systemctl", "reboot")]
            assert a.alive and inner_pid in a.pids() and inner.poll() is None
            assert host_decoy.poll() is None
            # /run/heartbeat as heartbeat wants it, private to the node
            st = a.run(["stat", "-c", "%U:%G %a", "/run/heartbeat"]).stdout.split()
            assert st == ["hacluster:haclient", "750"]
            assert not os.path.exists("/run/heartbeat/rsctmp") or \
                a.run(["stat", "-c", "%i", "/run/heartbeat"]).stdout.strip() != \
                str(os.stat("/run/heartbeat").st_ino)
        with open("/proc/mounts") as fh:
            assert "/usr/bin/systemctl" not in fh.read()
        assert host_decoy.poll() is None
    finally:
        host_decoy.kill()
        host_decoy.wait()


def test_cleanup_leaves_nothing_even_when_the_block_raises(need_ns, tmp_path):
    require_tool("zfs-fuse", "zpool", "mkfs.ext4", "losetup")
    workdir = str(tmp_path / "lab")
    seen = {}
    with pytest.raises(RuntimeError, match="boom"):
        with lab_for("sbxclean", tmp_path) as lab:
            net = lab.network("10.99.244.0/24")
            a = lab.node("nodea", ip="10.99.244.1", net=net, zfs=True, stubs=True,
                         binds={"/etc/sbx-test": str(tmp_path)})
            b = lab.node("nodeb", ip="10.99.244.2", net=net)
            a.start_zfs()
            a.run(["zpool", "create", "-m", workdir + "/mnt/sbxcleanpool", "sbxcleanpool",
                   lab.file_vdev("d0", 64)])
            dev = lab.loop_image("img", 64, fs="ext4")
            os.makedirs(workdir + "/mnt/ext")
            b.run(["mount", dev, workdir + "/mnt/ext"])    # busy loop inside a node
            b.popen(["sleep", "300"])
            seen = {"pids": a.pids() + b.pids(), "dev": dev}
            assert host_state("sbxclean", workdir)["netns"] == \
                ["sbxclean-nodea", "sbxclean-nodeb", "sbxclean-sw"]
            assert host_state("sbxclean", workdir)["loops"] == [dev]
            raise RuntimeError("boom")
    assert host_state("sbxclean", workdir) == {"netns": [], "loops": [], "mounts": []}
    left = [(p, open(f"/proc/{p}/stat").read()) for p in seen["pids"] if os.path.exists(f"/proc/{p}")]
    assert not left
    assert not os.path.exists(workdir)
    lab.cleanup()                            # idempotent


def test_a_crashed_node_leaves_no_filesystem_behind_for_its_peer(need_ns, tmp_path):
    """A node crashed with a dirty ext4 mounted and in use: when crash() returns, the shared
    kernel has finished unmounting it (it flushes the journal first, asynchronously), as a
    machine that lost power writes nothing more. CI once saw the peer find it "still active
    with no mount anywhere" 0.8 s after the crash."""
    require_tool("losetup", "mkfs.ext4", "dd")
    from hahooks import usage

    with lab_for("sbxdirty", tmp_path) as lab:
        a = lab.node("nodea")
        dev = lab.loop_image("img", 64, fs="ext4")
        mnt = str(tmp_path / "lab" / "mnt")
        os.makedirs(mnt)
        a.run(["mount", dev, mnt])
        a.run(["dd", "if=/dev/zero", f"of={mnt}/dirty", "bs=1M", "count=24"])
        a.popen(["sh", "-c", f"cd {mnt} && exec sleep 300"])
        devs = usage.device_numbers(dev)
        assert usage.elsewhere(devs), "the node's mount should show from the host"
        a.crash()
        assert usage.elsewhere(devs) == []
        subprocess.run(["mount", dev, mnt], check=True)     # the peer can have it at once
        subprocess.run(["umount", mnt], check=True)


def test_owner_killed_nodes_power_off_and_next_lab_purges(need_ns, tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(f"""\
        import sys, time
        sys.path.insert(0, {LIB!r})
        from hahooks.lab.sandbox import Lab
        lab = Lab(prefix="sbxorph", workdir={str(tmp_path / 'lab')!r}).start()
        net = lab.network("10.99.245.0/24")
        a = lab.node("nodea", ip="10.99.245.1", net=net)
        print(a.holder_pid, flush=True)
        time.sleep(600)
        """))
    PREFIXES.append("sbxorph")
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    holder = int(owner.stdout.readline())
    from hahooks.lab.sandbox import Lab, SandboxError

    with pytest.raises(SandboxError, match="in use by another live lab"):
        Lab(prefix="sbxorph", workdir=str(tmp_path / "other")).start()
    owner.kill()
    owner.wait()
    waits.wait_for(lambda: not os.path.exists(f"/proc/{holder}"), 10, "the node to power off")
    assert host_state("sbxorph", str(tmp_path / "lab"))["netns"]   # left until the next lab
    with Lab(prefix="sbxorph", workdir=str(tmp_path / "lab")):
        assert host_state("sbxorph", str(tmp_path / "lab"))["netns"] == []
    assert host_state("sbxorph", str(tmp_path / "lab"))["netns"] == []


@pytest.mark.parametrize("kwargs, message", [
    ({"prefix": "bad-prefix"}, "bad lab prefix"),
    ({"prefix": "a" * 17}, "bad lab prefix"),
    ({"prefix": "ok", "workdir": "/"}, "bad lab workdir"),
    ({"prefix": "ok", "workdir": "/var/tmp/x y"}, "bad lab workdir"),
])
def test_bad_lab_arguments_are_refused(kwargs, message):
    from hahooks.lab.sandbox import Lab, SandboxError

    with pytest.raises(SandboxError, match=message):
        Lab(**kwargs)


def test_bad_node_arguments_are_refused(need_ns, tmp_path):
    from hahooks.lab.sandbox import SandboxError

    with lab_for("sbxbad", tmp_path) as lab:
        net = lab.network("10.99.246.0/24")
        for kwargs, message in [
                ({"name": "averylongnodename"}, "bad node name"),
                ({"name": "a;b"}, "bad node name"),
                ({"name": "nodea", "ip": "10.99.1.1", "net": net}, "not a host address"),
                ({"name": "nodea", "ip": "10.99.246.1"}, "ip= without net="),
                ({"name": "sw"}, "is a network"),
                ({"name": "nodea", "binds": {"/nonexistent/x": str(tmp_path)}},
                 "does not exist")]:
            with pytest.raises(SandboxError, match=message):
                lab.node(**kwargs)
        with pytest.raises(SandboxError, match="private IPv4"):
            lab.network("8.8.8.0/24", name="pub")
        with pytest.raises(SandboxError, match="bad vdev name"):
            lab.file_vdev("../x", 1)
    assert host_state("sbxbad", str(tmp_path / "lab")) == {"netns": [], "loops": [],
                                                           "mounts": []}


OWNER = """\
import signal, sys, time
sys.path.insert(0, {lib!r})
from hahooks.lab.sandbox import Lab
lab = Lab(prefix={prefix!r}, workdir={workdir!r}).start()
net = lab.network("10.99.247.0/24")
a = lab.node("nodea", ip="10.99.247.1", net=net, zfs=True)
s = lab.node("stor")
a.popen(["sleep", "300"])
dev = lab.loop_image("img", 16)
{action}
print(a.holder_pid, s.holder_pid, dev, flush=True)
time.sleep(600)
"""


def start_owner(tmp_path, prefix: str, action: str = ""):
    PREFIXES.append(prefix)
    workdir = str(tmp_path / "lab")
    script = tmp_path / "owner.py"
    script.write_text(OWNER.format(lib=LIB, prefix=prefix, workdir=workdir, action=action))
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    line = owner.stdout.readline().split()
    assert line, owner.communicate()[1]
    return owner, workdir, [int(line[0]), int(line[1])], line[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_lab_process_tears_everything_down(need_ns, tmp_path, sig):
    prefix = "sbxsig" + str(int(sig))
    owner, workdir, holders, dev = start_owner(tmp_path, prefix)
    assert host_state(prefix, workdir)["loops"] == [dev]
    owner.send_signal(sig)
    owner.communicate(timeout=60)
    assert owner.returncode != 0
    assert host_state(prefix, workdir) == {"netns": [], "loops": [], "mounts": []}
    assert not [h for h in holders if os.path.exists(f"/proc/{h}")]
    assert not os.path.exists(workdir)


def test_released_lab_outlives_its_process_until_cleanup_cli(need_ns, tmp_path):
    owner, workdir, holders, dev = start_owner(tmp_path, "sbxkeep", "lab.release()")
    owner.kill()                      # even a SIGKILL: released nodes keep running
    owner.wait()
    with pytest.raises(WaitTimeout):         # an unreleased node powers off within 0.5 s
        waits.wait_for(lambda: [h for h in holders if nsproc_zombie(h)], 2, "a node to end")
    assert host_state("sbxkeep", workdir)["netns"] == ["sbxkeep-nodea", "sbxkeep-sw"]
    manifest = open(os.path.join(workdir, "lab.json")).read()
    r = subprocess.run([sys.executable, "-m", "hahooks.lab.sandbox", "cleanup",
                        str(tmp_path)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": LIB})
    assert r.returncode == 0, r.stderr
    assert "removed node stor" in r.stdout, (manifest, holders)
    assert f"removed loop {dev}" in r.stdout
    assert host_state("sbxkeep", workdir) == {"netns": [], "loops": [], "mounts": []}
    waits.wait_for(lambda: not [h for h in holders if not nsproc_zombie(h)], 10,
                   "the kept nodes to end")
    assert not os.path.exists(workdir)


def nsproc_zombie(pid: int) -> bool:
    from hahooks.lab.sandbox import nsproc

    return nsproc.zombie(pid)
