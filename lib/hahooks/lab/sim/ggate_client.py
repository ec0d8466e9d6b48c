"""What `ggatec create` becomes once it daemonized: g_gatec_loop() of one unit
(docs/reference/ggate.md §4; sbin/ggate/ggatec/ggatec.c g_gatec_loop(), g_gatec_create()).

The daemon (`ggatec<N>` in nodes/<n>/run) watches its server: while ggated answers on the
server node across a working link, the unit's gate is open. When the server goes (ggated
stopped, node down, link cut) it logs "Disconnected [%s %s]. Connecting..." to syslog and
retries every 2 s ("Connecting [%s %s]..."); meanwhile the kernel keeps the requests queued:
the unit's gate stalls, so a read or write on /dev/ggateN blocks. Only a unit created with
`-t N` fails them: sys/geom/gate/g_gate.c g_gate_create() arms g_gate_guard() when
sc_timeout > 0, which every N s fails with EIO each request queued for 5 s or more. Once
ggated answers again, the loop reconnects and G_GATE_CMD_CANCEL sends the queued requests
again: the gate opens and the blocked I/O completes.
It exits when its unit is destroyed or its node crashes.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import signal
import time

from hahooks.lab.sim import blockio, daemon, geom
from hahooks.lab.sim.state import connected, syslog

HOUSEKEEPING = 0.1
RETRY = 2.0          # g_gatec_loop(): sleep(2) between connection attempts
GUARD_AGE = 5        # g_gate_guard(): requests queued this long fail (when timeout > 0)


def match_export(exports: list[dict], client: str, path: str) -> dict | None:
    """exports_find(): the first export whose network holds the client and whose path is
    the requested path, byte for byte."""
    for ex in exports:
        if ipaddress.ip_address(client) in ipaddress.ip_network(ex["net"], strict=False) \
                and ex["path"] == path:
            return ex
    return None

def daemon_name(unit: int | str) -> str:
    return f"ggatec{unit}"


def start(store, node: str, unit: int, boot: int, created: float) -> bool:
    return daemon.spawn(store, node, daemon_name(unit),
                        lambda: loop(store, node, unit, boot, created))


def server_lost(store, st: dict, server: str, client: str | None = None) -> None:
    """The server stops answering (ggated gone, node down, link cut): its clients' queued
    and new requests wait from this moment on (those already sent are never answered), the
    ggatec loops notice and log it on their next look."""
    for node, units in st["ggate"].items():
        for n, u in units.items():
            if u["server"] == server and client in (None, node) and node != server:
                stall(store, node, n, u)


def server_answers(store, st: dict, node: str, u: dict) -> bool:
    """g_gatec_connect(): the server node is reachable and its ggated still exports path."""
    served = st["ggated"].get(u["server"])
    if not served or served["port"] != u["port"] or not connected(st, node, u["server"]):
        return False
    if not store.alive(u["server"], "ggated"):
        return False
    return match_export(served["exports"], st["nodes"][node]["addr"], u["path"]) is not None


def stalled_gate(timeout: int, anchor: float) -> dict:
    """The queue while disconnected; `anchor`: when g_gate_create() armed the guard."""
    gate = blockio.stall()
    if timeout > 0:
        gate["expire"] = {"age": GUARD_AGE, "every": timeout, "anchor": anchor,
                          "errno": errno.EIO}
    return gate


def stall(store, node: str, unit: str, u: dict) -> None:
    """The unit's requests queue from now on (the server stopped answering)."""
    geom.control(store, node).set_gate(f"ggate{unit}",
                                       stalled_gate(u["timeout"], u.get("created", 0.0)))


def loop(store, node: str, unit: int, boot: int, created: float) -> None:
    fifo = store.fifo(node, daemon_name(unit))
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    keep = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    ctl = geom.control(store, node)
    up, last_try, recorded = True, 0.0, False
    try:
        while os.path.isdir(store.root):
            with store.locked(write=not recorded) as st:
                me = st["nodes"].get(node)
                u = st["ggate"].get(node, {}).get(str(unit))
                if not me or not me["up"] or me.get("boot", 0) != boot or u is None \
                        or u.get("created") != created:
                    return          # destroyed (maybe made again: that one has its own loop)
                if not recorded:
                    u["pid"], recorded = os.getpid(), True
                answers = server_answers(store, st, node, u)
            now = time.time()
            where = f"[{u['host']} {u['path']}]"
            gate_open = (ctl.gate(f"ggate{unit}") or {}).get("state") == "open"
            if up and not answers:
                syslog(store, node, "ggatec", f"Disconnected {where}. Connecting...")
                up, last_try = False, now
            elif not up and not answers and now - last_try >= RETRY:
                syslog(store, node, "ggatec", f"Connecting {where}...")
                last_try = now
            if not answers and gate_open:
                stall(store, node, str(unit), u)
            elif answers and not gate_open:       # G_GATE_CMD_CANCEL: queued I/O goes out
                ctl.set_gate(f"ggate{unit}", blockio.OPEN)
            up = up or answers
            if daemon.asked_to_quit(rfd, HOUSEKEEPING):
                return
    finally:
        os.close(rfd)
        os.close(keep)
