"""Debian's corosync + pacemaker in sandbox nodes (docs/reference/pacemaker.md,
docs/reference/lab.md): a real two- or three-node cluster over the lab's 10.99.0.0/24
network.

Per node, private (so two nodes on one host never share a file): /run (the sandbox's
tmpfs), /dev/shm (libqb's IPC rings are named by PID, and PIDs repeat across the nodes' PID
namespaces), /var/lib/pacemaker, /var/lib/corosync and /var/log (bound from the node's dir),
/etc/corosync (the node's /etc overlay), /usr/lib/ocf/resource.d (an overlay that adds
ocf:hahooks:hahooks, an agent running this checkout with this interpreter, as
pacemaker-execd runs it: its own environment, no PYTHONPATH). The stubs over
systemctl/reboot/pkill stay, so nothing in a node reaches the host.

Started and stopped here, ended by PID: stop() TERMs pacemakerd (which stops its children)
and then corosync; a crash is Node.crash() (the node's PID namespace killed).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

from hahooks import waits
from hahooks.lab.sandbox.nsproc import SandboxError

LIB = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
PCMK_SUBDIRS = ("cib", "pengine", "blackbox", "cores")
OCF_DIR = "/usr/lib/ocf/resource.d"
STONITH_DIR = "/usr/sbin"          # where pacemaker-fenced looks for fence_* agents
FENCE_AGENT = "fence_hahooks_sandbox"


def corosync_conf(cluster: str, members: list[tuple[int, str, str]]) -> str:
    nodes = "".join(f"  node {{\n    ring0_addr: {ip}\n    name: {name}\n    nodeid: {nid}\n"
                    "  }\n" for nid, name, ip in members)
    # two_node lets one survivor of two keep quorum; votequorum then waits for all nodes at
    # start (wait_for_all defaults to 1 with two_node: votequorum(5), corosync
    # exec/votequorum.c), so a node booting after its crash is not quorate alone and cannot
    # fence the peer that holds the stack before it has even seen it
    # (docs/reference/pacemaker.md §9). Three nodes need no such rule: one has no majority.
    two = "  two_node: 1\n  wait_for_all: 1\n" if len(members) == 2 else ""
    return (f"totem {{\n  version: 2\n  cluster_name: {cluster}\n  transport: knet\n"
            "  crypto_cipher: none\n  crypto_hash: none\n  token: 1000\n}\n"
            f"nodelist {{\n{nodes}}}\n"
            f"quorum {{\n  provider: corosync_votequorum\n{two}}}\n"
            "logging {\n  to_logfile: yes\n  logfile: /var/log/corosync/corosync.log\n"
            "  to_syslog: no\n  to_stderr: no\n  timestamp: hires\n}\n")


def agent_wrapper() -> str:
    """ocf:hahooks:hahooks as installed with this checkout and interpreter (the install
    issue gives the real agent its interpreter; here the wrapper pins it)."""
    return (f"#!/bin/sh\nexec {sys.executable} -c 'import sys; sys.path.insert(0, "
            f"\"{LIB}\"); from hahooks.wiring.ocf import main; sys.exit(main(sys.argv[1:]))' "
            "\"$@\"\n")


def fence_wrapper() -> str:
    """drill/fence_agent.py as /usr/sbin/fence_hahooks_sandbox (no arguments: it reads its
    options on stdin, as fence-agents do)."""
    return (f"#!/bin/sh\nPYTHONPATH={LIB} exec {sys.executable} -m hahooks.lab.drill.fence_agent "
            "\"$@\"\n")


def binds(node_dir: str) -> dict[str, str]:
    """The per-node trees to pass as Lab.node(binds=...), created with the owners the
    daemons expect (hacluster:haclient)."""
    import grp
    import pwd

    uid, gid = pwd.getpwnam("hacluster").pw_uid, grp.getgrnam("haclient").gr_gid
    base = os.path.join(node_dir, "pcmk")
    pcmk, cs, logs = (os.path.join(base, d) for d in ("var-lib-pacemaker", "var-lib-corosync",
                                                       "var-log"))
    for d in (*(os.path.join(pcmk, s) for s in PCMK_SUBDIRS), cs,
              os.path.join(logs, "pacemaker"), os.path.join(logs, "corosync")):
        os.makedirs(d, exist_ok=True)
    for d in (pcmk, *(os.path.join(pcmk, s) for s in PCMK_SUBDIRS),
              os.path.join(logs, "pacemaker")):
        os.chown(d, uid, gid)
        os.chmod(d, 0o770 if d.endswith("pacemaker") and "var-log" in d else 0o750)
    return {"/var/lib/pacemaker": pcmk, "/var/lib/corosync": cs, "/var/log": logs}


class PacemakerNode:
    """corosync and pacemakerd of one booted sandbox node (booted with binds())."""

    def __init__(self, node, conf: str):
        self.node, self.conf = node, conf
        self.corosync = None
        self.pacemakerd = None

    def prepare(self) -> None:
        n = self.node
        n.enter(["mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev,size=64m", "tmpfs",
                 "/dev/shm"])
        self._overlay(OCF_DIR, "ocf", {"hahooks/hahooks": agent_wrapper()})
        self._overlay(STONITH_DIR, "sbin", {FENCE_AGENT: fence_wrapper()})
        n.enter(["mkdir", "-p", "/etc/corosync", "/run/pacemaker", "/run/crm"])
        n.write_file("/etc/corosync/corosync.conf", self.conf, 0o644)

    def _overlay(self, target: str, name: str, files: dict[str, str]) -> None:
        """Add executables to a host directory as this node alone sees it."""
        upper = os.path.join(self.node.dir, "pcmk", f"{name}-upper")
        work = os.path.join(self.node.dir, "pcmk", f"{name}-work")
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work, exist_ok=True)
        for rel, text in files.items():
            path = os.path.join(upper, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                fh.write(text)
            os.chmod(path, 0o755)
        self.node.enter(["mount", "-t", "overlay", "overlay", "-o",
                         f"lowerdir={target},upperdir={upper},workdir={work}", target])

    def start(self) -> None:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        log = open(os.path.join(self.node.dir, "log", "pcmk-daemons.log"), "ab")
        try:
            self.corosync = self.node.popen(["corosync", "-f"], env=env, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
            waits.wait_for(lambda: self.node.run(["corosync-cfgtool", "-s"], check=False,
                                                 timeout=10).returncode == 0,
                           30, f"corosync on {self.node.name}")
            self.pacemakerd = self.node.popen(["pacemakerd"], env=env, stdout=log,
                                              stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def stop(self, timeout: float = 60) -> None:
        """Orderly: pacemakerd stops its children and the resources; then corosync."""
        for proc in (self.pacemakerd, self.corosync):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise SandboxError(f"{self.node.name}: {proc.args[-1]} did not stop") from None
        self.pacemakerd = self.corosync = None

    def forget(self) -> None:
        """After a crash: the processes died with the node's PID namespace."""
        for proc in (self.pacemakerd, self.corosync):
            if proc is not None:
                proc.poll()
        self.pacemakerd = self.corosync = None
