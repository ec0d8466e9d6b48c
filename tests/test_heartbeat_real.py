"""The real Heartbeat 3.0.6 (v1, `crm off`) as a two-node cluster: each node in its own
network, mount, UTS **and PID** namespace, with stubs over systemctl (= /sbin/reboot) and
pgrep (= pkill): Heartbeat's failed-stop path runs `pkill -9 heartbeat` and `reboot -nf`
(docs/reference/lab.md §4), which must never reach this machine.

haresources: `nodea hahooks::/etc/ha.d/hahooks.toml`, as `hahooks render` prints it, then
`hahooks-mount::/dev/loopN::MNT2::ext4`: the shipped heartbeat-resource.d scripts, which
find `hahooks` through the PATH they extend (/usr/local/sbin is this checkout's command
inside the nodes). Stack on each node: lease on
shared storage (kernel-held flock) -> ext4 on a loop device of a shared image -> data
(ownership marker + timestamped hold log on shared storage).

Node death (kill -9 of the master control process, then the rest of the node) -> the peer
runs our start. The node returns -> auto_failback: the peer's stop, then our status and
start. Graceful stop -> handover. Assertions on the mounts and the hold log, on the calls
Heartbeat made (from our JSON logs) and on the stubs never being called. Last, a stop that
cannot finish (the lease's release fails): Heartbeat retries it 10 times, our status then
says running (half a stack after an unfinished stop) and Heartbeat's failed-stop path fences
the node (the stubs record its pkill/reboot).
"""
from __future__ import annotations

import os
import shutil
import signal

from conftest import ROOT, require, require_root, require_tool, run_hahooks
from hahooks import waits
import pair_support as ps
from pair_lab import PairLab

SUBNET = "10.99.31.0/24"
NODES = {"nodea": "10.99.31.1", "nodeb": "10.99.31.2"}
HEARTBEAT = "/usr/libexec/heartbeat/heartbeat"
CONFIG_IN_NODE = "/etc/ha.d/hahooks.toml"
HA_CF = """logfile {work}/ha-log
debugfile {work}/ha-debug
logfacility none
use_logd no
udpport 694
keepalive 500ms
warntime 1
deadtime 2
initdead 6
bcast eth0
auto_failback on
node nodea
node nodeb
crm off
"""


def ha_dirs(lab: "PairLab", name: str) -> dict[str, str]:
    """The node's copies of /etc/ha.d (with our config and scripts) and /var/lib/heartbeat."""
    work = lab.workdir(name)
    had, varlib = os.path.join(work, "ha.d"), os.path.join(work, "varlib")
    shutil.copytree("/etc/ha.d", had, symlinks=True)
    shutil.copytree("/var/lib/heartbeat", varlib, symlinks=True)
    for item in ("/etc/ha.d", "/var/lib/heartbeat"):
        st = os.stat(item)
        os.chown(had if item == "/etc/ha.d" else varlib, st.st_uid, st.st_gid)
    with open(os.path.join(had, "ha.cf"), "w") as fh:
        fh.write(HA_CF.format(work=work))
    with open(os.path.join(had, "authkeys"), "w") as fh:
        fh.write("auth 1\n1 sha1 hahooks-lab\n")
    os.chmod(os.path.join(had, "authkeys"), 0o600)
    for script in ("hahooks", "hahooks-mount", "hahooks-import-pool"):
        shutil.copy2(os.path.join(ROOT, "heartbeat-resource.d", script),
                     os.path.join(had, "resource.d", script))
    return {"/etc/ha.d": had, "/var/lib/heartbeat": varlib}


def haresources_line(config: str) -> str:
    out = run_hahooks("render", "--only", "heartbeat", "-c", config, "--config-path",
                      CONFIG_IN_NODE, check=0).stdout
    lines = [x for x in out.splitlines() if x.strip() and not x.startswith("#")]
    assert len(lines) == 1, out
    return lines[0]


def start_heartbeat(lab: "PairLab", name: str) -> None:
    # the sandbox made /run/heartbeat/* (heartbeat=True); heartbeat daemonizes, its
    # processes stay in the node's PID namespace
    lab.start_daemon(name, ["sh", "-c", f"ulimit -l unlimited; exec {HEARTBEAT}"],
                     log="heartbeat")


def master_control(lab: "PairLab", name: str) -> int:
    """The master control process (its children briefly carry the same title after fork)."""
    pids = lab.node_pids_matching(name, "master control process")

    def parent(pid):
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    roots = [p for p in pids if parent(p) not in pids]
    assert len(roots) == 1, pids
    return roots[0]


def calls(lab, name: str, after: float = 0.0) -> list[list[str]]:
    return [c["argv"] for c in ps.hook_calls(lab.workdir(name)) if ps.record_time(c) > after]


def test_heartbeat_pair_takeover_failback_and_graceful_handover():
    require_root()
    require_tool("losetup", "mkfs.ext4")
    require(os.access(HEARTBEAT, os.X_OK), "heartbeat (Debian package heartbeat)")
    with PairLab("hhhb", SUBNET, shared_fs=True) as lab:
        for name, ip in NODES.items():
            work = lab.workdir(name)
            os.makedirs(work, exist_ok=True)
            binds = ha_dirs(lab, name)
            lab.add_node(name, ip, lease=True, binds=binds, heartbeat=True,
                         config_path=os.path.join(binds["/etc/ha.d"], "hahooks.toml"))
        # haresources, identical on both nodes: what `hahooks render` prints for nodea (the
        # whole stack), then one more filesystem through heartbeat-resource.d/hahooks-mount
        line = haresources_line(lab.nodes["nodea"]["config"])
        assert line == f"nodea hahooks::{CONFIG_IN_NODE}"
        single = lab.lab.loop_image("single", 32, fs="ext4")
        mnt2 = os.path.join(lab.root, "mnt2")
        line += f" hahooks-mount::{single}::{mnt2}::ext4"
        for name in NODES:
            with open(os.path.join(lab.workdir(name), "ha.d", "haresources"), "w") as fh:
                fh.write(line + "\n")

        def on(name):         # the hahooks-mount resource is mounted on `name` alone
            other = "nodeb" if name == "nodea" else "nodea"
            return lab.mounted(name, mnt2) and not (lab.node(other).alive and
                                                    lab.mounted(other, mnt2))
        # the safety net is in place: what Heartbeat's failed-stop path runs hits the stubs
        for argv in (["/sbin/reboot", "-nf"], ["pkill", "-9", "heartbeat"]):
            assert lab.run("nodea", argv).returncode == 1
        assert [c.split()[2:] for c in lab.stub_calls()] == [
            ["/sbin/reboot", "-nf"], ["/usr/bin/pkill", "-9", "heartbeat"]]
        lab.clear_stub_calls()
        fig = ps.Figures("Heartbeat 3.0.6 v1, bcast, keepalive 500ms, deadtime 2")

        def start(name):
            start_heartbeat(lab, name)
        fig.add("both nodes started -> stack held on nodea (initial acquisition)",
                lab.bring_up(start, timeout=60))
        cfg = CONFIG_IN_NODE
        # ResourceManager: status twice (we_own_resource), then start
        assert calls(lab, "nodea") == [[cfg, "status"], [cfg, "status"], [cfg, "start"]]
        assert calls(lab, "nodeb") == []
        waits.wait_for(lambda: on("nodea"), 30, "hahooks-mount started on nodea")

        # -- node death: kill -9 the master control process, then the rest of the node ----
        mcp = master_control(lab, "nodea")
        t_crash = lab.crash_over(fig, "heartbeat", "our start", last_word="start",
                                 kill_first=lambda: os.kill(mcp, signal.SIGKILL))
        assert calls(lab, "nodeb", t_crash) == [[cfg, "status"], [cfg, "start"]]
        waits.wait_for(lambda: on("nodeb"), 30, "hahooks-mount started on nodeb")

        # -- nodea comes back: auto_failback = stop on b, then status + start on a --------
        t_back = lab.come_back(start, fig, "auto_failback", timeout=60)
        assert calls(lab, "nodeb", t_back) == [[cfg, "stop"]]
        assert calls(lab, "nodea", t_back)[-1] == [cfg, "start"]
        assert [cfg, "status"] in calls(lab, "nodea", t_back)
        waits.wait_for(lambda: on("nodea"), 30, "hahooks-mount back on nodea")

        # -- graceful: SIGTERM nodea's heartbeat -> our stop on a, then start on b -------
        t_term = lab.hand_over(fig, "SIGTERM nodea's heartbeat",
                               lambda: os.kill(master_control(lab, "nodea"), signal.SIGTERM))
        assert calls(lab, "nodea", t_term) == [[cfg, "stop"]]
        waits.wait_for(lambda: on("nodeb"), 30, "hahooks-mount handed to nodeb")

        evs = ps.events(lab.shared)
        assert ps.overlaps(evs, "data") == [], ps.overlaps(evs, "data")
        # our status and stop never made Heartbeat reach for reboot or pkill
        assert lab.stub_calls() == [], lab.stub_calls()
        argv_seen = [f"argv {n}: {calls(lab, n)}" for n in NODES]

        # -- a stop that cannot finish: Heartbeat retries it, our status then says running
        #    and Heartbeat fences its own node (the stubs record the reboot it attempted) --
        open(os.path.join(lab.shared, "fail-lease-release.nodeb"), "w").close()
        t_fail = ps.note(lab.shared, "nodeb", "sigterm-heartbeat-failing-stop")
        os.kill(master_control(lab, "nodeb"), signal.SIGTERM)
        waits.wait_for(lambda: any("/sbin/reboot -nf" in c for c in lab.stub_calls()), 60,
                       "Heartbeat's failed-stop path on nodeb")
        seen = calls(lab, "nodeb", t_fail)
        assert seen[:-1] == [[cfg, "stop"]] * (1 + 10)      # HA_STOPRETRYMAX = 10 retries
        assert seen[-1] == [cfg, "status"]
        last = ps.hook_calls(lab.workdir("nodeb"))[-1]
        # data and fs were released, the lease was not: half a stack after a stop that did
        # not finish reads "running", so Heartbeat fences instead of handing it over
        assert last["decision"].startswith("running (release incomplete"), last
        assert not lab.mounted("nodeb") and lab.holder() == ""
        assert not lab.mounted("nodeb", mnt2)    # stopped first: right to left
        fig.add("SIGTERM with a failing stop -> Heartbeat's reboot attempt",
                ps.record_time(last) - t_fail)
        fig.report(argv_seen + [f"stubs: {[c.split(None, 2)[2] for c in lab.stub_calls()]}"])
