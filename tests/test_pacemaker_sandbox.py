"""A real two-node Debian corosync + pacemaker cluster in sandbox nodes (issue 21): the
stack as ocf:hahooks:hahooks on a disk both nodes see, stonith-enabled=true through the
sandbox fence agent. Moves both ways, a ban, a node crash (fenced, taken over), a rejoin;
never mounted on two nodes, polled all along."""
from __future__ import annotations

import time

import pytest

from conftest import require_root, require_tool, run_hahooks


@pytest.mark.pacemaker_lab
def test_pacemaker_moves_bans_survives_a_crash_and_rejoins(tmp_path):
    require_root()
    require_tool("ip", "unshare", "nsenter", "losetup", "mkfs.ext4", "corosync",
                 "pacemakerd", "crm_resource", "cibadmin", "crm_mon")
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


@pytest.mark.pacemaker_lab
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
