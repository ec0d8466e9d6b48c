"""A real two- and three-node Debian corosync + pacemaker cluster in sandbox nodes (issue
21): the stack as ocf:hahooks:hahooks on a disk all nodes see, stonith-enabled=true through
the sandbox fence agent. Moves both ways, a ban, a node crash (fenced, taken over), a
rejoin; never mounted on two nodes, polled all along."""
from __future__ import annotations

import json
import sys
import threading
import time

from conftest import require_root, require_tool, run_hahooks

PCMK_TOOLS = ("ip", "unshare", "nsenter", "losetup", "mkfs.ext4", "corosync", "pacemakerd",
              "crm_resource", "cibadmin", "crm_mon")
ELSEWHERE = ("import json, sys; from hahooks import usage; "
             "print(json.dumps(usage.elsewhere(usage.device_numbers(sys.argv[1]))))")


def test_a_shared_disk_reaches_each_node_through_its_own_device(tmp_path):
    """Why a rejoined node was fenced again: sandbox nodes share one kernel, so through one
    loop device they shared one ext4 superblock, and the rejoined node's probe saw its
    peer's mount in /sys/fs/ext4/<dev> ("lazily unmounted"), answered OCF error, failed its
    stop and was fenced. Each node's own loop device on the shared image is what a second
    machine sees: nothing of the peer's mount."""
    require_root()
    require_tool("ip", "unshare", "nsenter", "losetup", "mkfs.ext4")
    from hahooks.lab.sandbox import Lab, hoststate

    with Lab(prefix="pml21d", workdir=str(tmp_path / "lab")) as lab:
        first = lab.loop_image("shared", 16, fs="ext4")
        second = lab.loop_attach(hoststate.loop_backing(first))
        assert second != first
        a, b = lab.node("nodea"), lab.node("nodeb")

        def seen_from_a(dev: str) -> list[str]:
            out = a.run([sys.executable, "-c", ELSEWHERE, dev], env=lab.node_env(a)).stdout
            return json.loads(out)
        b.enter(["mkdir", "-p", "/run/shared"])
        for on_b, looks_mounted_from_a in ((first, True), (second, False)):
            b.enter(["mount", on_b, "/run/shared"])
            try:
                assert bool(seen_from_a(first)) is looks_mounted_from_a, on_b
            finally:
                b.enter(["umount", "/run/shared"])


def test_a_node_powered_on_while_the_fence_desk_powers_it_off(tmp_path):
    """The fence desk powers a node off in its own thread; the drill saw the node down
    (its processes killed) and booted it again while that power-off was still deleting the
    node's network namespace: "ip netns del: No such file" (the cut node of a partition won
    the race, the loser rejoined at once). A power-off and a power-on of one node are one
    after the other, never interleaved."""
    require_root()
    require_tool("ip", "unshare", "nsenter")
    from hahooks.lab.sandbox import Lab

    errors: list[BaseException] = []

    def power_off(node) -> None:
        try:
            node.crash()
        except BaseException as exc:      # reported by the assertion below
            errors.append(exc)
    with Lab(prefix="pml21r", workdir=str(tmp_path / "lab")) as lab:
        net = lab.network("10.99.0.0/24")
        for _ in range(6):
            node = lab.node("nodea", ip="10.99.0.31", net=net)
            desk = threading.Thread(target=power_off, args=(node,))
            desk.start()
            while node.alive:
                time.sleep(0.001)
            try:
                lab.node("nodea", ip="10.99.0.31", net=net)
            except BaseException as exc:
                errors.append(exc)
            desk.join()
            assert errors == []
            lab.nodes["nodea"].crash()


def test_pacemaker_moves_bans_survives_a_crash_and_rejoins(tmp_path):
    require_root()
    require_tool(*PCMK_TOOLS)
    from hahooks.lab.drill.pacemaker import PacemakerRun

    run = PacemakerRun(str(tmp_path / "lab"), prefix="pcmkt", subnet="10.99.0")
    try:
        run.start()
        assert run.verify_output == ""            # crm_verify -L on the rendered config
        run.wait_on("nodea", "start", time.monotonic())
        assert run.move("nodeb").on == "nodeb"
        assert run.move("nodea").on == "nodea"
        assert run.ban("nodea").on == "nodeb"
        run.move("nodea")
        assert run.fenced() == []
        assert run.crash("nodea").on == "nodeb"
        fenced, = run.fenced()                    # nodeb fenced nodea through the agent
        assert fenced["request"]["from"] == "nodeb" and fenced["request"]["target"] == "nodea"
        run.rejoin("nodea")
        assert run.holders() == ["nodeb"]         # the stack stays where it is
        assert len(run.fenced()) == 1             # and the rejoined node is not fenced again
        failed = run.run("nodeb", "crm_mon", "-1", "--include=failures").stdout
        assert "Failed" not in failed, failed     # its probe found the stack stopped there
        assert run.move("nodea").on == "nodea"    # and the rejoined node can take it again
        # each device is registered where it may run: off the node it fences
        for node, device in (("nodeb", "hahooks-fence-nodea"), ("nodea", "hahooks-fence-nodeb")):
            listed = run.run(node, "stonith_admin", "--list-registered").stdout.split()
            assert device in listed and f"hahooks-fence-{node}" not in listed, (node, listed)
        survivor, _ = run.partition("nodea")       # both race to fence: one survives
        assert run.holders() == [survivor] and len(run.fenced()) == 2
        run.rejoin("nodeb" if survivor == "nodea" else "nodea")
        assert run.holders() == [survivor]
        assert run.violations == []
    finally:
        run.stop()
    assert not any(n.alive for n in run.lab.nodes.values())


def test_drill_scenario_pacemaker(tmp_path):
    require_root()
    require_tool("corosync", "pacemakerd", "crm_resource", "cibadmin", "mkfs.ext4")
    listed = run_hahooks("drill", "--list", check=0)
    assert "pacemaker " in listed.stdout
    workdir = tmp_path / "drill"
    r = run_hahooks("drill", "--scenario", "pacemaker", "--workdir", str(workdir),
                    timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "invariant log: empty" in r.stdout and r.stdout.rstrip().endswith("PASS")
    assert "crash of nodea -> fenced -> answering on nodeb" in r.stdout
    assert "fence: nodeb powers off nodea" in r.stdout
    assert not workdir.exists()


def test_pacemaker_three_nodes_move_and_survive_a_crash(tmp_path):
    """Three nodes (no two_node: quorum is 2 of 3): a move there and back, the active node
    crashed, one of the two others fences it and the stack lands on one of them; the
    crashed node rejoins without being fenced again and takes the stack back."""
    require_root()
    require_tool(*PCMK_TOOLS, "stonith_admin")
    from hahooks.lab.drill.pacemaker import PacemakerRun

    run = PacemakerRun(str(tmp_path / "lab"), prefix="pml21c", subnet="10.99.0", nodes=3)
    try:
        run.start()
        assert run.verify_output == ""
        run.wait_on("nodea", "start", time.monotonic())
        assert run.move("nodec").on == "nodec"
        assert run.move("nodea").on == "nodea"
        for node in run.names:                    # every device, off the node it fences
            listed = run.run(node, "stonith_admin", "--list-registered").stdout.split()
            want = {f"hahooks-fence-{n}" for n in run.names if n != node}
            assert want <= set(listed) and f"hahooks-fence-{node}" not in listed, (node, listed)
        landed = run.crash("nodea").on
        assert landed in ("nodeb", "nodec")
        fenced, = run.fenced()
        assert fenced["request"]["target"] == "nodea"
        assert fenced["request"]["from"] in ("nodeb", "nodec")
        run.rejoin("nodea")
        assert run.holders() == [landed] and len(run.fenced()) == 1
        assert run.move("nodea").on == "nodea"
        assert run.violations == []
    finally:
        run.stop()
    assert not any(n.alive for n in run.lab.nodes.values())
