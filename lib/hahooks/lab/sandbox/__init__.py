"""Simulated cluster nodes on this machine, out of Linux namespaces (tests, lab, drill).

Why it is built this way: the project's tests run the real daemons (zfs-fuse, heartbeat,
keepalived, ucarp) as two-node clusters on one machine, as root, beside other helpers'
tests. A Lab is the one registry that creates every namespace, loop device and process and
tears all of it down, even on failure or Ctrl-C (docs/reference/lab.md §1 shows the construction
and its pitfalls). This is test infrastructure, not the failover path: it calls subprocess
directly (argv lists, timeouts) instead of going through hahooks.runner.

    from hahooks.lab.sandbox import Lab
    with Lab(prefix="t1") as lab:
        net = lab.network("10.99.7.0/24")
        a = lab.node("nodea", ip="10.99.7.1", net=net, hostid=0x0a0a0001, zfs=True)
        a.start_zfs(); a.run(["zpool", "list"])
"""
from hahooks.lab.sandbox.hoststate import list_loops, list_netns
from hahooks.lab.sandbox.lab import Lab
from hahooks.lab.sandbox.net import Network
from hahooks.lab.sandbox.node import Node
from hahooks.lab.sandbox.nsproc import NodeCommandError, NodeProcess
from hahooks.lab.sandbox.nsproc import SandboxError

__all__ = ["Lab", "Network", "Node", "NodeCommandError", "NodeProcess", "SandboxError",
           "list_loops", "list_netns"]
