"""The OCF agent's promotable mode (mode=promotable, wiring/ocf_promotable.py): promotion
scores from the data state (pure), monitor codes 7/0/8/9, start/stop/promote/demote/notify
on the simulated DRBD and HAST, and Debian's ocf-tester on the installed agent."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import hahooks_env
from hahooks.kinds.base import broken, held, released
from hahooks.wiring.ocf_promotable import (NO_SCORE, SCORE_BEST, SCORE_GOOD, SCORE_LOW,
                                           monitor_code, promotion_score)
from replication_helpers import SimCluster, layer, unique, world  # noqa: F401
from test_ocf import AGENT, exit_reasons, installed_agent, ocf_tester  # noqa: F401


def drbd(role, disk="UpToDate", peer_disk="UpToDate", cstate="Connected", peer_role=None):
    return dict(role=role, peer_role=peer_role, disk=disk, peer_disk=peer_disk, cstate=cstate)


@pytest.mark.parametrize("obs,score", [
    (held("p", **drbd("Primary")), SCORE_BEST),
    (held("p", **drbd("Primary", peer_disk="DUnknown", cstate="WFConnection")), SCORE_BEST),
    (released("s", **drbd("Secondary")), SCORE_BEST),               # peer known, in sync
    (released("s", **drbd("Secondary", cstate="Established")), SCORE_BEST),   # DRBD 9
    (released("s", **drbd("Secondary", peer_disk="DUnknown", cstate="WFConnection")),
     SCORE_GOOD),                                                    # peer unknown
    (released("s", **drbd("Secondary", disk="Inconsistent", cstate="SyncTarget")),
     SCORE_LOW),                                                     # good data via the peer
    # stale or unprovable data: never promoted
    (released("s", **drbd("Secondary", disk="Consistent", peer_disk="DUnknown",
                          cstate="StandAlone")), NO_SCORE),
    (released("s", **drbd("Secondary", disk="Outdated", peer_disk="DUnknown",
                          cstate="WFConnection")), NO_SCORE),
    (released("s", **drbd("Secondary", disk="Outdated", peer_disk="Outdated")), NO_SCORE),
    (released("down", **drbd("Unconfigured", "Unconfigured", None, "Unconfigured")),
     NO_SCORE),
    (broken("split brain", **drbd("Primary", peer_role="Primary")), NO_SCORE),
])
def test_drbd_promotion_score(obs, score):
    assert promotion_score("drbd", obs) == score


def hast(*states):
    return {f"r{i}": {"role": role, "status": status, "dirty": dirty}
            for i, (role, status, dirty) in enumerate(states)}


@pytest.mark.parametrize("obs,score", [
    (held("p", **hast(("primary", "complete", 0))), SCORE_BEST),
    (held("p", **hast(("primary", "degraded", 4 << 20))), SCORE_BEST),  # newest data anyway
    (released("s", **hast(("secondary", "complete", 0), ("secondary", "complete", 0))),
     SCORE_GOOD),                                 # a primary replicates to it: in sync
    (released("s", **hast(("secondary", "complete", 0), ("secondary", None, 0))),
     SCORE_LOW),                                  # as of the last connection
    (released("s", **hast(("secondary", None, 0))), SCORE_LOW),
    (broken("init", **hast(("init", None, 0))), NO_SCORE),
    (broken("mixed", **hast(("primary", "complete", 0), ("init", None, 0))), NO_SCORE),
    (broken("hastd unreachable"), NO_SCORE),
])
def test_hast_promotion_score(obs, score):
    assert promotion_score("hast", obs) == score


@pytest.mark.parametrize("kind,obs,code", [
    ("drbd", released("down", **drbd("Unconfigured")), 7),
    ("drbd", released("s", **drbd("Secondary")), 0),
    ("drbd", held("p", **drbd("Primary")), 8),
    ("drbd", broken("split brain", **drbd("Primary", peer_role="Primary")), 9),
    ("drbd", broken("cannot tell the role", **drbd("Diskless?")), 1),
    ("drbd", broken("drbdadm failed"), 1),
    ("hast", broken("init", **hast(("init", None, 0))), 7),
    ("hast", released("s", **hast(("secondary", None, 0))), 0),
    ("hast", held("p", **hast(("primary", "complete", 0))), 8),
    ("hast", broken("primary, no device", **hast(("primary", "complete", 0))), 9),
    ("hast", broken("mixed", **hast(("primary", None, 0), ("init", None, 0))), 9),
    ("hast", broken("hastd unreachable"), 1),
])
def test_monitor_codes(kind, obs, code):
    assert monitor_code(kind, obs) == code


# -- the agent on the simulator -------------------------------------------------------------
def sim_agent(c, node, action, **env):
    environ = c.env(node)
    for key in list(environ):
        if key.startswith("OCF_"):
            del environ[key]
    environ.update({"OCF_RESKEY_config": c.configs[node], "OCF_RESKEY_resource": "repl",
                    "OCF_RESKEY_mode": "promotable", "OCF_RESOURCE_INSTANCE": "repl",
                    "OCF_RESKEY_CRM_meta_interval": "20000"})
    environ.update({k: str(v) for k, v in env.items()})
    return subprocess.run([sys.executable, AGENT, action], capture_output=True, text=True,
                          env=environ, timeout=120)


def score_calls(c, node) -> list[list[str]]:
    """The crm_attribute commands the agent ran (the runner's log: argv of each command)."""
    path = c.tmp / f"{node}.jsonl"
    calls = []
    for line in path.read_text().splitlines() if path.exists() else ():
        rec = json.loads(line)
        argv = rec.get("argv")
        if argv and os.path.basename(argv[0]) == "crm_attribute" and \
                rec.get("event") == "command":
            calls.append(argv[1:])
    return calls


def drbd_cluster(tmp_path, world):  # noqa: F811
    r = unique("pr")
    world.add_drbd(r, size_mb=8, up=False)
    c = SimCluster(tmp_path, world)
    minor = world.state()["drbd"][r]["minor"]
    for n in c.nodes:
        c.write(n, layer("repl", "drbd", resource=r, minor=minor, promote_wait="2s",
                         demote_wait="2s"))
    return c, r


def test_drbd_clone_start_promote_demote_stop(tmp_path, world):  # noqa: F811
    c, r = drbd_cluster(tmp_path, world)
    assert sim_agent(c, "nodea", "monitor", OCF_RESKEY_CRM_meta_interval="0").returncode == 7
    assert score_calls(c, "nodea") == []                        # a probe changes nothing
    for n in c.nodes:
        assert sim_agent(c, n, "start").returncode == 0
        assert world.state()["drbd"][r]["role"][n] == "Secondary"
        assert sim_agent(c, n, "monitor").returncode == 0
    # nodea's first score: its peer down (unknown); now connected to an UpToDate peer
    assert score_calls(c, "nodea")[0] == ["--promotion", "--lifetime", "reboot", "--update",
                                          str(SCORE_GOOD)]
    assert sim_agent(c, "nodea", "monitor").returncode == 0
    assert score_calls(c, "nodea")[-1][-1] == str(SCORE_BEST)
    p = sim_agent(c, "nodea", "promote")
    assert p.returncode == 0, p.stderr
    assert world.state()["drbd"][r]["role"]["nodea"] == "Primary"
    assert sim_agent(c, "nodea", "monitor").returncode == 8
    assert sim_agent(c, "nodea", "notify", OCF_RESKEY_CRM_meta_notify_type="post",
                     OCF_RESKEY_CRM_meta_notify_operation="promote").returncode == 0
    # the peer cannot be promoted beside a Primary: refused, not a second Primary
    p = sim_agent(c, "nodeb", "promote")
    assert p.returncode == 1 and len(exit_reasons(p)) == 1, p.stderr
    assert world.state()["drbd"][r]["role"]["nodeb"] == "Secondary"
    assert sim_agent(c, "nodea", "demote").returncode == 0
    assert sim_agent(c, "nodea", "monitor").returncode == 0
    assert sim_agent(c, "nodea", "stop").returncode == 0
    assert sim_agent(c, "nodea", "monitor").returncode == 7
    assert score_calls(c, "nodea")[-1] == ["--promotion", "--lifetime", "reboot", "--delete"]
    # with nodea down, nodeb's data is UpToDate but its peer unknown: a lower score
    assert sim_agent(c, "nodeb", "monitor").returncode == 0
    assert score_calls(c, "nodeb")[-1][-1] == str(SCORE_GOOD)
    c.assert_no_violations()


def test_outdated_data_gets_no_score(tmp_path, world):  # noqa: F811
    c, r = drbd_cluster(tmp_path, world)
    assert sim_agent(c, "nodeb", "start").returncode == 0       # nodea stays down
    world.set_drbd(r, "nodeb", disk="Outdated")
    assert sim_agent(c, "nodeb", "monitor").returncode == 0
    assert score_calls(c, "nodeb")[-1][-1] == "--delete"
    p = sim_agent(c, "nodeb", "promote")
    assert p.returncode == 1 and "UpToDate" in p.stderr, p.stderr
    assert world.state()["drbd"][r]["role"]["nodeb"] == "Secondary"


def test_notify_never_fails(tmp_path):
    env = hahooks_env(OCF_RESKEY_config=str(tmp_path / "absent.toml"),
                      OCF_RESKEY_resource="repl", OCF_RESKEY_mode="promotable",
                      OCF_RESKEY_CRM_meta_notify_type="pre",
                      OCF_RESKEY_CRM_meta_notify_operation="demote")
    proc = subprocess.run([sys.executable, AGENT, "notify"], env=env, capture_output=True)
    assert proc.returncode == 0


def test_mode_parameter_checks(tmp_path, world):  # noqa: F811
    c, _ = drbd_cluster(tmp_path, world)
    p = sim_agent(c, "nodea", "validate-all", OCF_RESKEY_mode="bogus")
    assert p.returncode == 6 and len(exit_reasons(p)) == 1          # the CIB's, everywhere
    p = sim_agent(c, "nodea", "validate-all", OCF_RESKEY_resource="")
    assert p.returncode == 6
    c.write("nodea", layer("repl", "drbd", resource="r", minor=0) +
            layer("fs", "filesystem", device="/dev/null", mountpoint=str(tmp_path / "m"),
                  fstype="ufs"))
    p = sim_agent(c, "nodea", "validate-all", OCF_RESKEY_resource="fs")
    assert p.returncode == 5 and "replication layer" in p.stderr, p.stderr   # this node's
    assert sim_agent(c, "nodea", "validate-all").returncode == 0


# -- ocf-tester on the installed agent --------------------------------------------------------
def env_for_tester(c, node) -> dict:
    env = {k: v for k, v in c.env(node).items() if not k.startswith("OCF_")}
    env.pop("PYTHONPATH", None)      # the installed copy runs its own library
    return env


def test_ocf_tester_promotable_drbd(installed_agent, tmp_path, world):  # noqa: F811
    c, r = drbd_cluster(tmp_path, world)
    assert sim_agent(c, "nodeb", "start").returncode == 0       # a peer to replicate to
    proc = ocf_tester(installed_agent, c.configs["nodea"], "resource=repl", "mode=promotable",
                      env=env_for_tester(c, "nodea"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed all tests" in proc.stdout
    drbdadm = [a[1] for a in c.commands("nodea", "drbdadm") if a[1] in
               ("up", "down", "primary", "secondary")]
    assert drbdadm.count("primary") >= 2 and drbdadm.count("down") >= 2, drbdadm
    c.assert_no_violations()


def test_ocf_tester_promotable_hast(installed_agent, tmp_path, world):  # noqa: F811
    name = unique("ph")
    world.add_hast(name, size_mb=8)
    c = SimCluster(tmp_path, world)
    for n in c.nodes:
        c.write(n, layer("repl", "hast", resources=[name], complete_wait="3s",
                         secondary_wait="3s"))
    proc = ocf_tester(installed_agent, c.configs["nodea"], "resource=repl", "mode=promotable",
                      env=env_for_tester(c, "nodea"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed all tests" in proc.stdout
    roles = [a[2] for a in c.commands("nodea", "hastctl") if a[1] == "role"]
    assert {"init", "secondary", "primary"} <= set(roles), roles
    assert world.hast_role(name, "nodea") == "init"             # ocf-tester ends stopped
    c.assert_no_violations()
