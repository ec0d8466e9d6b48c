"""What the simulated drbdadm/drbdsetup print, per DRBD version (docs/reference/drbd.md).

8.4 kernel driven by drbd-utils 9 (`drbdsetup-84`, LINBIT/drbd-utils user/v84/drbdsetup.c):
  role_scmd() prints "Local/Peer", dstate "Local/Peer", cstate the 8.4 connection state
  (WFConnection, Connected, SyncSource, ...); status_cmd() prints 8.4 states in DRBD 9 words
  with the connection always called "peer" (connection_status()), "replication:Established"
  shown while connected (C_CONNECTED > C_WF_REPORT_PARAMS in peer_device_status()), and no
  connection entry at all when StandAlone (no net config).
9 kernel (`drbdsetup`, user/v9/drbdsetup.c):
  role_cmd() prints the local role only; peer-role/cstate_cmd() one connection's role/state
  (Connected, Connecting, StandAlone; a resync is a replication state, never a cstate);
  dstate_cmd() "Local/Peer"; status_cmd() names each connection after the peer's host
  (user/v9/drbdadm_postparse.c create_implicit_net_options() sets `_name`), prints
  "replication:" only above Established and "connection:" only when not Connected
  (peer_device_status(), connection_status()), and "open:" on kernels that report it.
Both wrap at 80 columns when stdout is not a terminal (user/shared/wrap_printf.c).
"""
from __future__ import annotations


class Wrap:
    """user/shared/wrap_printf.c wrap_printf(): a piece that would pass column 80 starts a
    new line indented by `indent` (leading blanks dropped). Upstream leaves `col` at -1 after
    indenting (`while (indent--)`), so a continuation line counts one column short of its
    indentation; kept as is."""

    def __init__(self, columns: int = 80):
        self.columns, self.col, self.out = columns, 0, []

    def __call__(self, indent: int, text: str) -> None:
        while text.startswith("\n"):
            self.out.append("\n")
            self.col, text = 0, text[1:]
        if not text:
            return
        if self.col > 0 and self.col + len(text) > self.columns:
            self.out.append("\n")
            self.col = 0
        if self.col == 0:
            text = text.lstrip(" ")
            self.out.append(" " * indent)
            self.col = -1
        self.out.append(text)
        self.col = 0 if text.endswith("\n") else self.col + len(text)

    def text(self) -> str:
        return "".join(self.out)


def status_84(v: dict) -> str:
    """drbdsetup-84 status_cmd() for one resource of one volume; `v` is view() below."""
    w = Wrap()
    w(0, v["name"])
    w(4, f" role:{v['role']}")
    w(0, "\n")
    w(2, f" disk:{v['disk']}")
    w(6, "\n")
    if v["cstate"] != "StandAlone":
        w(2, "peer")
        if v["cstate"] == "WFConnection":
            w(6, " connection:Connecting")
        else:
            w(6, f" role:{v['peer_role']}")
        w(0, "\n")
        if v["cstate"] != "WFConnection":
            repl = "Established" if v["cstate"] == "Connected" else v["cstate"]
            w(4, f" replication:{repl}")
            w(8, f" peer-disk:{v['peer_disk']}")
            if v["done"] is not None:
                w(8, f" done:{v['done']:.2f}")
            w(0, "\n")
    w(0, "\n")
    return w.text()


def status_9(v: dict, verbose: bool = False) -> str:
    """drbdsetup status_cmd() (DRBD 9) for one resource of one volume with one peer:
    resource_status(), device_status(), connection_status(), peer_device_status()."""
    w = Wrap()
    w(0, v["name"])
    if verbose:
        w(4, f" node-id:{v['node_id']}")
    w(4, f" role:{v['role']}")
    if verbose:
        w(4, " suspended:no")
        w(4, " force-io-failures:no")
    w(0, "\n")
    indent = 2
    if verbose:
        w(indent, "volume:0")
        indent = 6
        w(indent, f" minor:{v['minor']}")
    w(indent, f" disk:{v['disk']}")
    if verbose:
        w(indent, f" backing_dev:{v['backing_dev']}")
        w(indent, " quorum:yes")
    w(indent, f" open:{'yes' if v['open'] else 'no'}")
    if verbose:
        w(6, " blocked:no")
    w(6, "\n")
    connected = v["cstate"] == "Connected"
    w(2, v["peer"])
    if verbose:
        w(6, f" node-id:{v['peer_node_id']}")
    if verbose or not connected:
        w(6, f" connection:{v['cstate']}")
    if verbose or connected:
        w(6, f" role:{v['peer_role']}")
        if verbose:
            w(6, " tls:no")
    if verbose:
        w(6, " congested:no")
        w(6, " ap-in-flight:0")
        w(6, " rs-in-flight:0")
    w(0, "\n")
    if verbose or connected:
        indent = 4
        if verbose:
            w(indent, "volume:0")
            indent = 8
        if verbose or v["repl"] != "Established":
            w(indent, f" replication:{v['repl']}")
            indent = 8
        w(indent, f" peer-disk:{v['peer_disk']}")
        if v["done"] is not None:
            w(8, f" done:{v['done']:.2f}")
        if verbose:
            w(8, " resync-suspended:no")
        w(0, "\n")
    w(0, "\n")
    return w.text()
