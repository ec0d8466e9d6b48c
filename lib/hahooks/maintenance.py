"""Maintenance mode: while it is on, daemon events are recorded and ignored.

The analogue of Pacemaker's `is-managed=false` (docs/reference/pacemaker.md): the cluster
daemons keep running and keep telling us what they think, but nothing they say changes the
stack, so an operator can work on a node (a CARP flap, a keepalived restart, a ucarp
reconfiguration) without a failover starting underneath. What stays:

* a person's `hahooks master|slave` (the `--wait` form, which is the default) still runs,
  with a warning in the log: the operator in maintenance is the one who decides;
* `--detach` requests (the form devd, freevrrpd, keepalived, ucarp and hooks/master use) and
  every daemon entry point (devd-event, keepalived-notify, ucarp-up/down, Heartbeat's
  resource script) are logged as `ignored` (history shows them) and return 0: the daemon
  must not retry or mark the hook failed;
* `status` observes truthfully and says WARNING, with the reason and since when;
* the OCF agent is not gated: Pacemaker has its own maintenance (`is-managed=false`,
  `maintenance-mode=true`), and an agent that ignored start would break its state model.
"""
from __future__ import annotations

import logging
import os
import pwd
import time

from hahooks.state import StateDir

log = logging.getLogger("hahooks.maintenance")


def _state(cfg):
    return StateDir(cfg.node.state_dir)


def current(cfg) -> dict | None:
    """The maintenance record, or None when it is off (or nothing was ever recorded)."""
    if not os.path.isdir(cfg.node.state_dir):
        return None
    return _state(cfg).maintenance()


def _who() -> str:
    login = os.environ.get("SUDO_USER")
    if login:
        return login
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def turn_on(cfg, reason: str) -> dict:
    state = _state(cfg).prepare()
    record = state.maintenance()
    if record:   # on already: keep `since`, take the newer reason
        record = {**record, "reason": reason or record.get("reason", "")}
    else:
        record = {"reason": reason, "since": time.time(), "by": _who()}
    state.set_maintenance(record)
    log.warning("maintenance mode on%s: daemon events are recorded and ignored",
                f" ({reason})" if reason else "",
                extra={"event": "maintenance", "on": True, "reason": reason,
                       "by": record["by"]})
    return record


def turn_off(cfg) -> dict | None:
    state = _state(cfg).prepare()
    record = state.maintenance()
    state.set_maintenance(None)
    log.warning("maintenance mode off: daemon events act again",
                extra={"event": "maintenance", "on": False, "by": _who(),
                       "was": record})
    return record


def describe(record: dict) -> str:
    """One phrase for status and messages: 'maintenance mode on since ... (reason)'."""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record.get("since", 0))))
    reason = record.get("reason")
    return (f"maintenance mode on since {since} by {record.get('by', '?')}"
            f"{f' ({reason})' if reason else ''}: daemon events are ignored")


def ignores(cfg, role: str, source: str) -> str | None:
    """Called by every daemon-facing path before it records a desire. While maintenance is
    on: log the ignored request (history lists it) and return the message for the caller;
    otherwise None."""
    record = current(cfg)
    if not record:
        return None
    log.warning("maintenance mode: ignored %s request from %s", role, source or "a daemon",
                extra={"event": "ignored", "role": role, "source": source,
                       "reason": record.get("reason", ""), "maintenance_since":
                       record.get("since")})
    return f"{role} from {source or 'a daemon'} ignored: {describe(record)}"


def note_manual(cfg, role: str) -> None:
    """A person's --wait request runs during maintenance; the log says it happened then."""
    record = current(cfg)
    if record:
        log.warning("maintenance mode is on: running %s because a person asked for it", role,
                    extra={"event": "maintenance_manual", "role": role})
