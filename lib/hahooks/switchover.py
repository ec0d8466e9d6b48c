"""`hahooks switchover [--to PEER]`: a planned, verified hand-over, as Patroni's switchover.

Run on the node that holds the stack. In order, stopping at the first problem:

1. Preflight (changes nothing): this node holds every layer; `--to` names `[node] peer`;
   a replication layer can show the peer taking over (below) and shows it ready now (DRBD:
   peer Secondary and connected; HAST: status complete, no warning); the hand-over tool
   exists.
2. Release here: a `slave` transition (lock, desire, history; trigger "switchover to PEER").
   Releasing first means the two nodes never both write: the peer's `master` that the
   hand-over starts finds this node already secondary instead of waiting on it (and
   perhaps fencing it when its own wait runs out).
3. Tell the peer, by the wiring's own means: CARP (FreeBSD) `sysctl
   net.inet.carp.demotion=N` (added to the current demotion, docs/reference/carp-devd.md §4);
   with `net.inet.carp.preempt=1` on the peer it becomes MASTER and its devd runs master
   there. Any other wiring (keepalived, ucarp, Heartbeat, freevrrpd) names its means in
   `[wiring] handover = [argv]` (e.g. stopping keepalived, `hb_standby`).
4. Confirm the peer acquired, through the replication layer, the only view of the peer a
   node has: DRBD `drbdadm role` shows the peer Primary (docs/reference/drbd.md §2); HAST
   shows the secondary worker `hastd: NAME (secondary)`, which exists only while a remote
   primary is connected (docs/reference/hast.md §5, hastd.c listen_accept()).

This node keeps the demotion afterwards (a restored one would take the address back at once
where preempt is on); the message says how to lift it.
"""
from __future__ import annotations

import argparse
import logging
import sys

from hahooks import schema
from hahooks.commands.transition import load
from hahooks.errors import ConfigError, ExitCode, HahooksError, UsageError

# The engine, the runner, the transition protocol and procs are imported inside the
# functions that use them: `hahooks switchover` is registered whenever the CLI builds its
# whole parser (commands/operate.py), which a wiring hook does at every event.

log = logging.getLogger("hahooks.switchover")

EPILOG = """\
steps: preflight (this node holds the stack, the peer is ready), release here (a slave
transition), tell the peer (CARP: sysctl net.inet.carp.demotion=N; otherwise [wiring]
handover), confirm the peer took over through DRBD's peer role or HAST's secondary worker.
exit codes: 0 released here and the peer confirmed primary
  1 refused before anything changed, or the release failed, or the peer did not confirm
    within --timeout (this node is then released; the message says what to do)
  2 bad arguments (--to is not [node] peer)   5 the hand-over tool is missing
  6 no [node] peer, or no way to tell the peer on this platform
"""


def register(sub, common) -> None:
    p = sub.add_parser("switchover", parents=[common], help="planned hand-over to the peer: "
                       "release here, tell the peer, confirm it took over",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--to", metavar="PEER", help="the node to hand over to ([node] peer)")
    p.add_argument("--timeout", default="2m", help="how long to wait for the peer to "
                   "confirm (default 2m)")
    p.add_argument("--demotion", type=int, default=240, help="CARP: what to add to "
                   "net.inet.carp.demotion (default 240, CARP_MAXSKEW)")
    p.set_defaults(func=run_switchover)


def run_switchover(args) -> int:
    cfg = load(args)
    try:
        timeout = schema.parse_duration(args.timeout)
    except schema.Invalid as exc:
        raise UsageError(f"--timeout: {exc}") from None
    code, message = switchover(cfg, args.to, timeout, args.demotion)
    print(message, file=sys.stderr if code else sys.stdout)
    return code


def switchover(cfg, to: str | None, timeout: float, demotion: int = 240) -> tuple[int, str]:
    from hahooks import runner as runner_mod
    from hahooks import transition, waits
    from hahooks.engine import Engine
    from hahooks.kinds.base import State

    peer = cfg.node.peer
    if not peer:
        raise ConfigError(f"{cfg.path}: [node] peer is not set: switchover needs the node to "
                          "hand over to")
    if to and to != peer:
        raise UsageError(f"--to {to}: this node's peer is {peer} ([node] peer)")
    runner = runner_mod.for_config(cfg)
    handover = _handover(cfg, demotion)
    runner.resolve(handover[0])   # NotInstalled (exit 5) before anything changes
    observed = Engine.for_config(cfg, dry_run=True).observe()
    not_held = [f"{s.name} ({o.state.value})" for s, o in observed if o.state is not State.HELD]
    if not_held:
        return ExitCode.GENERIC, ("switchover refused: this node does not hold the stack "
                                  f"({', '.join(not_held)}); nothing changed")
    probes, unready = _peer_probes(cfg, observed)
    if not probes:
        return ExitCode.GENERIC, ("switchover refused: no hast or drbd layer, so nothing on "
                                  f"this node can confirm that {peer} took over; hand over "
                                  "with `hahooks slave` here and `hahooks master` there")
    if unready:
        return ExitCode.GENERIC, (f"switchover refused: {peer} is not ready to take over: "
                                  + "; ".join(unready) + "; nothing changed")
    source = f"switchover to {peer}"
    log.info("switchover to %s: releasing here", peer, extra={"event": "switchover",
                                                               "step": "release"})
    code, message = transition.request(cfg, "slave", detach=False, source=source)
    if code:
        return code, f"switchover stopped: the release here failed: {message}"
    result = runner.run(handover, readonly=False, what=f"tell {peer} to take over",
                        check=False)
    told = " ".join(handover)
    if not result.ok:
        return ExitCode.GENERIC, (f"switchover stopped: released here, but `{told}` failed "
                                  f"(exit {result.exit_code}: {result.stderr.strip()[-200:]}); "
                                  f"{peer} was not told: run `hahooks master` here or there")
    log.info("switchover to %s: told it with `%s`; waiting for it to confirm", peer, told,
             extra={"event": "switchover", "step": "handover", "argv": handover})
    try:
        waits.wait_for(lambda: all(probe() for _, probe in probes), timeout,
                       f"{peer} to take over (" + ", ".join(n for n, _ in probes) + ")")
    except HahooksError:
        log.error("switchover to %s not confirmed within %gs", peer, timeout,
                  extra={"event": "switchover", "ok": False})
        return ExitCode.GENERIC, (f"switchover not confirmed: released here and told {peer} "
                                  f"(`{told}`), but it did not become primary within "
                                  f"{timeout:g}s; look at {peer} (hahooks status there), or "
                                  f"take the stack back here with `hahooks master`"
                                  + _undo(handover))
    log.info("switchover to %s confirmed", peer, extra={"event": "switchover", "ok": True})
    return ExitCode.OK, (f"switchover to {peer} done: released here, {peer} is primary on "
                         + ", ".join(n for n, _ in probes) + _undo(handover))


def _handover(cfg, demotion: int) -> list[str]:
    """The wiring's way to tell the peer: [wiring] handover, else CARP demotion on FreeBSD."""
    argv = cfg.wiring.get("handover")
    if argv:
        return list(argv)
    if cfg.node.platform.name == "freebsd":
        return ["sysctl", f"net.inet.carp.demotion={demotion}"]
    raise ConfigError(f"{cfg.path}: switchover on {cfg.node.platform.name} needs [wiring] "
                      "handover = [argv]: the command that makes the peer take over (e.g. "
                      '["systemctl", "stop", "keepalived"] or ["hb_standby"])')


def _undo(handover: list[str]) -> str:
    if handover[0] == "sysctl" and handover[1].startswith("net.inet.carp.demotion="):
        amount = int(handover[1].partition("=")[2])
        return (f"; this node stays demoted (undo with `sysctl net.inet.carp.demotion="
                f"{-amount}` once it may take the address back)")
    return ""


def _peer_probes(cfg, observed) -> tuple[list, list[str]]:
    """[(layer, probe)] whose probe turns true once the peer is primary, and why the peer is
    not ready now (empty: ready), from the replication layers of the stack."""
    from hahooks import procs

    probes, unready = [], []
    for spec, obs in observed:
        if spec.kind == "drbd":
            if obs.details.get("peer_role") != "Secondary" or obs.warning:
                unready.append(f"{spec.name}: {obs.reason}"
                               + (f" ({obs.warning})" if obs.warning else ""))
            probes.append((spec.name, lambda name=spec.name: _drbd_peer_primary(cfg, name)))
        elif spec.kind == "hast":
            if obs.warning:
                unready.append(f"{spec.name}: {obs.warning}")
            titles = [f"hastd: {n} (secondary)" for n in obs.details]
            probes.append((spec.name, lambda titles=titles:
                           procs.titles_running(titles) == titles))
    return probes, unready


def _drbd_peer_primary(cfg, name: str) -> bool:
    """The peer's role as DRBD shows it now (a fresh engine: no answer kept from before)."""
    from hahooks.engine import Engine

    observed = Engine.for_config(cfg, dry_run=True).observe()
    return any(spec.name == name and obs.details.get("peer_role") == "Primary"
               for spec, obs in observed)
