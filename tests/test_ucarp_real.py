"""The real ucarp (1.5.2) as a two-node cluster in network namespaces, calling the shipped
hooks/ucarp-up and hooks/ucarp-down (which add/remove the VIP and record master/slave).

Stack on each node: lease on shared storage (a kernel-held flock: gone when its node dies,
held while it lives; acquire waits up to 10 s for the peer) -> ext4 on a loop device of a
shared image -> data (ownership marker + timestamped hold log on shared storage).

Crash the master node -> ucarp on the backup runs the upscript -> the stack moves. Restart
it with --preempt -> ucarp makes *both* nodes master for ~0.75 s (docs/reference/lab.md §3); the
lease layer must keep the hold intervals apart, which the hold log proves.
"""
from __future__ import annotations

from conftest import ROOT, require_root, require_tool
import pair_support as ps
from pair_lab import PairLab

SUBNET = "10.99.33.0/24"
VIP = "10.99.33.100"
NODES = {"nodea": ("10.99.33.1", 0, "nodea"), "nodeb": ("10.99.33.2", 100, None)}


def ucarp_argv(ip: str, skew: int, xparam: str | None) -> list[str]:
    return ["ucarp", "--interface=eth0", f"--srcip={ip}", "--vhid=42", "--pass=hhuc",
            f"--addr={VIP}", "--advbase=1", f"--advskew={skew}", "--preempt", "--shutdown",
            f"--upscript={ROOT}/hooks/ucarp-up", f"--downscript={ROOT}/hooks/ucarp-down",
            *([f"--xparam={xparam}"] if xparam else [])]


def test_ucarp_pair_crash_failover_and_preemption(tmp_path):
    require_root()
    require_tool("ucarp", "ip", "losetup", "mkfs.ext4")
    with PairLab("hhuc", SUBNET, shared_fs=True) as lab:
        wiring = f'[wiring]\ninterface = "eth0"\nvip = "{VIP}/24"\n'
        for name, (ip, skew, xparam) in NODES.items():
            lab.add_node(name, ip, wiring=wiring, lease=True)

        def start(name):
            ip, skew, xparam = NODES[name]
            lab.start_daemon(name, ucarp_argv(ip, skew, xparam), log="ucarp")

        fig = ps.Figures("ucarp 1.5.2, advbase 1, deadratio 3, advskew 0/100, --preempt")
        lab.bring_up(start)
        assert lab.vips(VIP) == {"nodea"}
        # crash of the master node: everything on it is SIGKILLed at once
        lab.crash_over(fig, "ucarp-up", "ucarp-up")
        assert "nodeb" in lab.vips(VIP)
        # the preferred node returns and preempts
        t_back = lab.come_back(start, fig, "preemption")
        up_a = lab.first_call("nodea", "ucarp-up", after=t_back)
        down_b = lab.first_call("nodeb", "ucarp-down", after=t_back)
        fig.add("both ucarp masters (ucarp-up on a .. ucarp-down on b)", down_b - up_a)

        evs = ps.events(lab.shared)
        # ucarp really had two masters at once: the guard was needed, and it held
        assert up_a < down_b, "ucarp did not make both nodes master: the window was not tested"
        assert any(e.node == "nodea" and e.what == "lease-wait" and e.t >= t_back for e in evs)
        assert ps.overlaps(evs, "data") == [], ps.overlaps(evs, "data")
        assert ps.overlaps(evs, "lease") == []
        assert lab.vips(VIP) == {"nodea"}   # b's downscript removed the VIP it had added

        # -- the exact argv ucarp passed ------------------------------------------------
        calls = {n: [(c["caller"], c["argv"]) for c in ps.hook_calls(lab.workdir(n))]
                 for n in NODES}
        expect = {"nodea": ["eth0", VIP, "nodea"],     # --xparam=nodea
                  "nodeb": ["eth0", VIP]}              # no --xparam
        for n, seen in calls.items():
            assert {argv == expect[n] for _, argv in seen} == {True}, seen
            assert seen[0][0] == "ucarp-down"          # the downscript runs at start-up
        # a: up; crash; (rebooted) down at start-up, up; b: up after the crash, then down
        assert [c for c, _ in calls["nodea"]][-3:] == ["ucarp-up", "ucarp-down", "ucarp-up"]
        assert [c for c, _ in calls["nodeb"]][-2:] == ["ucarp-up", "ucarp-down"]
        fig.report([f"argv {n}: {c}" for n, c in calls.items()])
