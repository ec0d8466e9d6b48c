"""Simulated ggatec and ggated (docs/reference/ggate.md §1; sbin/ggate/ggatec/ggatec.c,
sbin/ggate/ggated/ggated.c, sbin/ggate/shared/ggate.c).

ggated is a real daemon process on the serving node (so `pkill ggated` works), registered
in st["ggated"][node] and alive while it holds nodes/<n>/run/ggated.fifo. A client's
`ggatec create host path` checks the export (address/mask, path, RO/WO/RW) on the node
whose address is `host`, then exposes nodes/<client>/dev/ggateN as a file of the client's
GEOM server (geom.py) over the exported file: the bytes the client sees are the server's
file. It then daemonizes into g_gatec_loop() (ggate_client.py): when the server goes, the
unit's I/O blocks (or, with `-t N`, fails after 5..5+N s) until ggated answers again; the
unit and its mirror component stay. Messages that ggate sends to syslog when not verbose go
to nodes/<n>/run/syslog.log instead.
"""
from __future__ import annotations

import ipaddress
import os
import signal
import sys
import time

from hahooks.lab.sim import checks, daemon, geom, ggate_client
from hahooks.lab.sim.ggate_client import match_export
from hahooks.lab.sim.state import connected, node_state, syslog, unlink_device
from hahooks.lab.sim.util import Usage, getopt, humanize_number

DEFAULT_PORT = 3080
DEFAULT_EXPORTS = "/etc/gg.exports"
HOUSEKEEPING = 0.25

GGATEC_USAGE = (
    "usage: ggatec create [-nv] [-o <ro|wo|rw>] [-p port] [-q queue_size] [-R rcvbuf] "
    "[-S sndbuf] [-s sectorsize] [-t timeout] [-u unit] <host> <path>\n"
    "       ggatec rescue [-nv] [-o <ro|wo|rw>] [-p port] [-R rcvbuf] [-S sndbuf] "
    "<-u unit> <host> <path>\n"
    "       ggatec destroy [-f] <-u unit>\n"
    "       ggatec list [-v] [-u unit]\n")
GGATED_USAGE = "usage: ggated [-nv] [-a address] [-p port] [-R rcvbuf] [-S sndbuf] [exports file]\n"


class XLog(Exception):
    """g_gate_xlog(): "error: MSG" + "error: Exiting." on stdout when verbose, else syslog;
    exit 1."""


def xlog(ctx, verbose: bool, msg: str) -> int:
    if verbose:
        sys.stdout.write(f"error: {msg}\nerror: Exiting.\n")
    else:
        syslog(ctx.store, ctx.node, ctx.tool, msg)
    return 1


def main(ctx, args: list[str]) -> int:
    return ggated(ctx, args) if ctx.tool == "ggated" else ggatec(ctx, args)


# -- ggatec --------------------------------------------------------------------------------
def ggatec(ctx, args: list[str]) -> int:
    if not args or args[0].lower() not in ("create", "destroy", "list", "rescue"):
        sys.stderr.write(GGATEC_USAGE)
        return 1
    action = args[0].lower()
    try:
        opts, rest = getopt(args[1:], "fno:p:q:R:S:s:t:u:v", "ggatec")
    except Usage:
        sys.stderr.write(GGATEC_USAGE)
        return 1
    o = {}
    for k, v in opts:
        if (k == "f" and action != "destroy") or (k == "v" and action == "destroy") or \
                (k in "noRSp" and action not in ("create", "rescue")) or \
                (k in "qst" and action != "create"):
            sys.stderr.write(GGATEC_USAGE)
            return 1
        o[k] = v
    if "o" in o and o["o"].lower() not in ("ro", "wo", "rw"):
        sys.stderr.write("ggatec: Invalid argument for '-o' option.\n")
        return 1
    unit = int(o["u"]) if "u" in o and o["u"].lstrip("-").isdigit() else None
    if action == "list":
        return ggatec_list(ctx, unit, "v" in o)
    if action == "destroy":
        if unit is None:
            sys.stderr.write("Required unit number.\n" + GGATEC_USAGE)
            return 1
        return ggatec_destroy(ctx, unit, "f" in o)
    if len(rest) != 2:
        sys.stderr.write(GGATEC_USAGE)
        return 1
    if action == "rescue":
        return 0 if unit is not None else 1
    return ggatec_create(ctx, rest[0], rest[1], unit, o)


def find_server(st: dict, host: str) -> str | None:
    return next((n for n, rec in st["nodes"].items() if host in (rec["addr"], n)), None)


def ggatec_create(ctx, host: str, path: str, unit: int | None, o: dict) -> int:
    from hahooks.lab.sim import mirror_model

    verbose = "v" in o
    port = int(o.get("p", DEFAULT_PORT))
    mode = o.get("o", "rw").lower()
    with ctx.store.locked(write=True) as st:
        server = find_server(st, host)
        served = st["ggated"].get(server) if server else None
        if server is None or not connected(st, ctx.node, server):
            return xlog(ctx, verbose, "Cannot connect: Operation timed out.")
        if not served or served["port"] != port or not ctx.store.alive(server, "ggated"):
            return xlog(ctx, verbose, "Cannot connect: Connection refused.")
        export = match_export(served["exports"], node_state(st, ctx.node)["addr"], path)
        if export is None or not mode_allowed(export["mode"], mode) or \
                not os.path.exists(export["image"]):
            return xlog(ctx, verbose, "Cannot connect: Operation not permitted.")
        units = st["ggate"].setdefault(ctx.node, {})
        if unit is not None and str(unit) in units:
            return xlog(ctx, verbose, "ggatec: ioctl(/dev/ggctl): File exists.")
        chosen = unit if unit is not None else next(i for i in range(1 << 16)
                                                    if str(i) not in units)
        units[str(chosen)] = {"host": host, "port": port, "path": path, "server": server,
                              "image": export["image"], "mode": mode,
                              "timeout": int(o.get("t", 0)), "queue_size": int(o.get("q", 1024)),
                              "sectorsize": int(o.get("s", 512)), "created": time.time()}
        geom.ensure(ctx.store, st, ctx.node)
        geom.control(ctx.store, ctx.node).expose(f"ggate{chosen}", [export["image"]])
        geom.expose_link(ctx.store, ctx.node, f"ggate{chosen}", ctx.dev(f"ggate{chosen}"))
        mirror_model.taste(ctx, st, f"ggate{chosen}")
        boot = node_state(st, ctx.node).get("boot", 0)
        created = units[str(chosen)]["created"]
    if unit is None:
        sys.stdout.write(f"ggate{chosen}\n")
        sys.stdout.flush()
    ggate_client.start(ctx.store, ctx.node, chosen, boot, created)   # g_gatec_loop(): daemonizes
    return 0


def mode_allowed(exported: str, requested: str) -> bool:
    if requested == "ro":
        return exported != "WO"
    if requested == "wo":
        return exported != "RO"
    return exported == "RW"


def ggatec_destroy(ctx, unit: int, force: bool) -> int:
    from hahooks.lab.sim import mirror_model

    with ctx.store.locked(write=True) as st:
        units = st["ggate"].get(ctx.node, {})
        if str(unit) not in units:
            return xlog(ctx, True, "ggatec: ioctl(/dev/ggctl): Device not configured.")
        device = ctx.dev(f"ggate{unit}")
        used = checks.usage(device, (ctx.store.root,))
        if (used or mirror_model.users(st, ctx.node, f"ggate{unit}")) and not force:
            return xlog(ctx, True, "ggatec: ioctl(/dev/ggctl): Device busy.")
        if used:
            ctx.violation("device_removed_in_use",
                          f"/dev/ggate{unit} destroyed with -f while in use: {', '.join(used)}",
                          device=device)
        mirror_model.provider_gone(ctx, st, f"ggate{unit}")
        del units[str(unit)]
        geom.control(ctx.store, ctx.node).remove(f"ggate{unit}")   # old handles: ENXIO
        unlink_device(device)
    ctx.store.kick(ctx.node, ggate_client.daemon_name(unit))
    return 0


def ggatec_list(ctx, unit: int | None, verbose: bool) -> int:
    with ctx.store.locked() as st:
        units = st["ggate"].get(ctx.node, {})
        mirrored = {c["prov"] for m in st.get("gmirror", {}).get(ctx.node, {}).values()
                    for c in m["components"]}
    out = []
    for n in sorted(units, key=int):
        if unit is not None and int(n) != unit:
            continue
        if not verbose:
            out.append(f"ggate{n}\n")
            continue
        u = units[n]
        size = os.path.getsize(u["image"]) if os.path.exists(u["image"]) else 0
        access = {"ro": "read-only", "wo": "write-only"}.get(u["mode"], "read-write")
        busy = f"ggate{n}" in mirrored or checks.usage(ctx.dev(f"ggate{n}"), (ctx.store.root,))
        out.append(f"       NAME: ggate{n}\n       info: {u['host']}:{u['port']} {u['path']}\n"
                   f"     access: {access}\n    timeout: {u['timeout']}\n"
                   f"queue_count: 0\n queue_size: {u['queue_size']}\n references: 0\n"
                   f"  mediasize: {size} ({humanize_number(size, 5, b=True)})\n"
                   f" sectorsize: {u['sectorsize']}\n"
                   f"       mode: {'r1w1e1' if busy else 'r0w0e0'}\n\n")
    sys.stdout.write("".join(out))
    return 0


# -- ggated --------------------------------------------------------------------------------
def parse_exports(text: str) -> list[dict]:
    """line_parse(): `ip[/mask] RO|WO|RW path`, '#' comments; errors name the line."""
    exports = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip(" \t")
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if len(words) < 3:
            raise XLog(f"Too few arguments at line {lineno}.")
        if len(words) > 3:
            raise XLog(f"Too many arguments at line {lineno}. ")
        ip, _, mask = words[0].partition("/")
        try:
            net = ipaddress.ip_network(f"{ip}/{mask or 32}", strict=False)
        except ValueError:
            raise XLog(f"Invalid IP/host name at line {lineno}.") from None
        flag = words[1].upper()
        if flag not in ("RO", "RD", "WO", "RW"):
            raise XLog(f"Invalid value in flags field at line {lineno}.")
        exports.append({"net": str(net), "mode": "RO" if flag == "RD" else flag,
                        "path": words[2], "image": os.path.realpath(words[2])})
    if not exports:
        raise XLog("There are no objects to export.")
    return exports


def ggated(ctx, args: list[str]) -> int:
    try:
        opts, rest = getopt(args, "a:hnp:R:S:v", "ggated")
    except Usage:
        sys.stderr.write(GGATED_USAGE)
        return 1
    o = dict(opts)
    if "h" in o or len(rest) > 1:
        sys.stderr.write(GGATED_USAGE)
        return 1
    verbose = "v" in o
    exports_file = rest[0] if rest else DEFAULT_EXPORTS
    try:
        with open(exports_file) as f:
            text = f.read()
    except OSError as exc:
        return xlog(ctx, verbose, f"Cannot open exports file ({exports_file}): "
                                  f"{exc.strerror}.")
    try:
        exports = parse_exports(text)
    except XLog as exc:
        return xlog(ctx, verbose, str(exc))
    if ctx.store.alive(ctx.node, "ggated"):
        return xlog(ctx, verbose, "bind(): Address already in use.")
    return 0 if start_daemon(ctx, exports, int(o.get("p", DEFAULT_PORT))) else 1


def start_daemon(ctx, exports: list[dict], port: int) -> bool:
    return daemon.spawn(ctx.store, ctx.node, "ggated",
                        lambda: serve(ctx.store, ctx.node, exports, port))


def serve(store, node: str, exports: list[dict], port: int) -> None:
    fifo = store.fifo(node, "ggated")
    quit_flag = []
    signal.signal(signal.SIGTERM, lambda *_: quit_flag.append(1))
    signal.signal(signal.SIGINT, lambda *_: quit_flag.append(1))
    with store.locked(write=True) as st:
        boot = node_state(st, node).get("boot", 0)
        st["ggated"][node] = {"pid": os.getpid(), "port": port, "exports": exports,
                              "boot": boot}
        st.setdefault("ggated_pids", {})[node] = os.getpid()
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    keep = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    reported: set = set()
    clean = True
    try:
        while not quit_flag:
            with store.locked() as st:
                me = st["nodes"].get(node)
                if not me or not me["up"] or me.get("boot", 0) != boot:
                    clean = False      # the node crashed: World.crash already cleaned up
                    return
            check_local_use(store, node, exports, reported)
            if daemon.asked_to_quit(rfd, HOUSEKEEPING):
                return
    finally:
        os.close(rfd)
        os.close(keep)
        if clean:
            with store.locked(write=True) as st:
                if st["ggated"].get(node, {}).get("pid") == os.getpid():
                    del st["ggated"][node]
                ggate_client.server_lost(store, st, node)


def check_local_use(store, node: str, exports: list[dict], reported: set) -> None:
    """Invariant: ggated never exports an image that is mounted on its own node."""
    for ex in exports:
        ident = checks.identity(ex["image"])
        if ident is None:
            continue
        for mountpoint in checks.mounted_at(ident, (ex["path"], ex["image"])):
            if (ex["path"], mountpoint) not in reported:
                reported.add((ex["path"], mountpoint))
                store.violation("ggated_export_mounted_locally",
                                f"ggated exports {ex['path']} while it is mounted on "
                                f"{mountpoint} on {node}", node=node, path=ex["path"])


def node_down(store, st: dict, node: str) -> None:
    """Crash: the node's ggated and ggate units vanish (its mirrors were dropped first);
    the clients of its ggated see a server gone (ggate_client.py) and their units stall."""
    st["ggated"].pop(node, None)
    ggate_client.server_lost(store, st, node)
    units = st["ggate"].pop(node, {})
    ctl = geom.control(store, node)
    for n in units:
        ctl.remove(f"ggate{n}")
        unlink_device(os.path.join(store.dev_dir(node), f"ggate{n}"))
