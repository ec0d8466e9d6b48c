"""The real keepalived (2.2.7) as a two-node VRRP cluster in network namespaces, calling
`hahooks keepalived-notify -c CONFIG` through the generic `notify` line of the vrrp_instance
`hahooks render` prints for each node's config.

Stack on each node: lease on shared storage (kernel-held flock: gone with its node, held
while it lives; acquire waits up to 10 s for the peer) -> ext4 on a loop device of a shared
image -> data (ownership marker + timestamped hold log on shared storage).

Crash the master node (every process SIGKILLed: `kill -9` of keepalived's parent alone is a
graceful stop) -> the backup's notify MASTER moves the stack. Restart it (preemption): the
returning node's MASTER and the other's BACKUP race; the hold log proves no overlap. Then a
graceful stop (SIGTERM: notify STOP, not BACKUP) hands the stack over again.
"""
from __future__ import annotations

import os
import signal

from conftest import require_root, require_tool, run_hahooks
import pair_support as ps
from pair_lab import PairLab

SUBNET = "10.99.32.0/24"
VIP = "10.99.32.100"
NODES = {"nodea": ("10.99.32.1", 200), "nodeb": ("10.99.32.2", 100)}


def keepalived_conf(path: str, name: str, config: str, hahooks: str) -> str:
    """global_defs plus the vrrp_instance `hahooks render --only keepalived` prints for the
    node's config (its [wiring]: instance, interface, vhid, priority, vip)."""
    out = run_hahooks("render", "--only", "keepalived", "-c", config, "--hahooks", hahooks,
                      check=0).stdout
    assert f'notify "{hahooks} keepalived-notify -c {config}"' in out, out
    with open(path, "w") as fh:
        fh.write(f"""global_defs {{
    router_id {name}
    script_user root
    enable_script_security
}}
""" + out)
    return path


def wiring(prio: int) -> str:
    return f"""[wiring]
instance = "VI_1"
interface = "eth0"
vhid = 52
priority = {prio}
vip = "{VIP}/24"
"""


def test_keepalived_pair_crash_failover_preemption_and_graceful_stop(tmp_path):
    require_root()
    require_tool("keepalived", "ip", "losetup", "mkfs.ext4")
    with PairLab("hhka", SUBNET, shared_fs=True) as lab:
        for name, (ip, prio) in NODES.items():
            lab.add_node(name, ip, wiring=wiring(prio), lease=True)

        def start(name):
            d = lab.workdir(name)
            conf = keepalived_conf(os.path.join(d, "keepalived.conf"), name,
                                   lab.nodes[name]["config"], lab.hahooks)
            # -n: stay in the foreground; pid files in the node's own /run (a stale one
            # surviving a crash would make keepalived say "daemon is already running")
            return lab.start_daemon(name, ["keepalived", "-n", "-l", "-D", "-P", "-f", conf,
                                           "-p", "/run/ka.pid", "-r", "/run/ka-vrrp.pid"],
                                    log="keepalived")

        fig = ps.Figures("keepalived 2.2.7, advert_int 1, priority 200/100, preempt")
        lab.bring_up(start)
        # crash: SIGKILL of everything on nodea (keepalived, workers, lease holder)
        lab.crash_over(fig, "keepalived", "notify MASTER", state="MASTER")
        # nodea returns and preempts (priority 200 > 100)
        t_back = lab.come_back(start, fig, "preemption")
        fig.add("both VRRP masters (notify MASTER on a .. notify BACKUP on b)",
                lab.first_call("nodeb", "keepalived", after=t_back, state="BACKUP")
                - lab.first_call("nodea", "keepalived", after=t_back, state="MASTER"))

        # graceful stop of nodea's keepalived: notify STOP (not BACKUP) releases
        t_stop = lab.hand_over(fig, "SIGTERM nodea's keepalived",
                      lambda: lab.signal_pidfile("nodea", "/run/ka.pid", signal.SIGTERM))

        evs = ps.events(lab.shared)
        assert ps.overlaps(evs, "data") == [], ps.overlaps(evs, "data")
        assert ps.overlaps(evs, "lease") == []

        # -- the exact argv keepalived passed (generic notify appends 4 words) ------------
        calls = {n: [c["argv"] for c in ps.hook_calls(lab.workdir(n))] for n in NODES}
        assert calls["nodea"][:2] == [["INSTANCE", "VI_1", "BACKUP", "200"],
                                      ["INSTANCE", "VI_1", "MASTER", "200"]]
        assert [c["argv"] for c in ps.hook_calls(lab.workdir("nodea"))
                if ps.record_time(c) > t_stop] == [["INSTANCE", "VI_1", "STOP", "200"]]
        assert ["INSTANCE", "VI_1", "MASTER", "100"] in calls["nodeb"]
        after_back = [c["argv"] for c in ps.hook_calls(lab.workdir("nodeb"))
                      if ps.record_time(c) > t_back]
        assert ["INSTANCE", "VI_1", "BACKUP", "100"] in after_back
        fig.report([f"argv {n}: {c}" for n, c in calls.items()])
