"""The warm path in the sandbox cluster (issue 22): `hahooks agent` in each node that is up
(docs/operations.md "The warm agent"), so each `--detach` event hands its desire to a
converger forked from a warm process instead of starting a worker. Started after the
cluster is up and after each boot; a crash ends it with the node's other processes, the
teardown with the node. The drill's `--warm`, and bench/reliability.py's, run every
figure this way: the protocol must stay as safe warm as cold.

Also: which of a node's processes are the transition under way (the fault matrix SIGKILLs
it mid-step), cold (the detached worker) or warm (the agent's converger)."""
from __future__ import annotations

import os
import subprocess

import psutil

from hahooks import agent, waits
from hahooks.state import StateDir

AGENT_START_TIMEOUT = 60.0
TRANSITION_WORDS = ("worker", "master", "slave")


def start_agent(cluster, node: str) -> None:
    """`hahooks agent -q -c CONFIG` in `node`, its output in the node's private dir;
    returns once it holds agent.lock (it then takes the next desire)."""
    place = cluster.places[node]
    with open(os.path.join(place.private, "agent.log"), "ab") as out:
        cluster.popen(node, [place.hahooks, "agent", "-q", "-c", place.config_path],
                      stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    state = StateDir(place.state_dir)
    waits.wait_for(lambda: agent.alive(state), AGENT_START_TIMEOUT, f"the agent in {node}")
    cluster.mark("warm agent started", node)


def transition_pids(config_path: str) -> dict[int, str]:
    """Global PIDs of the hahooks processes running a transition for `config_path`, each
    with what it is: "worker", a hook converging itself ("master"/"slave"/...), or "the
    agent's converger" (a fork of the agent: the same command line, the agent its parent).
    The agent itself is not one: killing it does not stop a transition (agent.py)."""
    ours = {}
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        words = proc.info["cmdline"] or []
        if "hahooks" in words and config_path in words:
            ours[proc.info["pid"]] = (proc.info["ppid"], words)
    found = {}
    for pid, (ppid, words) in ours.items():
        role = next((w for w in words if w in TRANSITION_WORDS), "")
        if role:
            found[pid] = role
        elif "agent" in words and "agent" in ours.get(ppid, (0, []))[1]:
            found[pid] = "the agent's converger"
    return found
