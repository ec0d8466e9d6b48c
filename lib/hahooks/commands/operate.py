"""Planned operations: `maintenance on|off|status`, `switchover`, and the hidden
`notify-send` that [notify] starts detached after each transition."""
from __future__ import annotations

import argparse
import json
import sys

from hahooks import switchover
from hahooks.commands.transition import load
from hahooks.errors import ExitCode

# maintenance and notify (with the state dir and the runner behind them) are imported by
# the subcommand that uses them: the CLI imports this module to build its whole parser
# (cli.COMMAND_MODULES), which a wiring hook does at every event.

MAINTENANCE_EPILOG = """\
while on, daemon events (devd-event, keepalived-notify, ucarp-up/down, Heartbeat's resource
script, master/slave --detach as freevrrpd and hooks/master call them) are logged and
ignored; a person's `hahooks master|slave` (--wait) still runs; status says WARNING.
The OCF agent is not gated: use Pacemaker's own is-managed=false / maintenance-mode.
exit codes: 0 done (status: 0 off, 1 on)   4 the state dir is unsafe or not writable
"""


def register(sub, common) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("maintenance", parents=[common], help="maintenance mode on|off|status: "
                       "daemon events are recorded and ignored while on",
                       epilog=MAINTENANCE_EPILOG, formatter_class=raw)
    p.add_argument("mode", choices=("on", "off", "status"))
    p.add_argument("--reason", default="", help="why (shown by status and the log)")
    p.set_defaults(func=run_maintenance)
    switchover.register(sub, common)
    n = sub.add_parser("notify-send", parents=[common])   # no help=: hidden, as `worker`
    n.set_defaults(func=run_notify_send)


def run_maintenance(args) -> int:
    from hahooks import maintenance

    cfg = load(args)
    if args.mode == "on":
        record = maintenance.turn_on(cfg, args.reason)
        print(f"{cfg.node.name}: {maintenance.describe(record)}")
        return ExitCode.OK
    if args.mode == "off":
        record = maintenance.turn_off(cfg)
        print(f"{cfg.node.name}: maintenance mode off" +
              ("" if record else " (it was not on)") + ": daemon events act again")
        return ExitCode.OK
    record = maintenance.current(cfg)
    print(f"{cfg.node.name}: " + (maintenance.describe(record) if record
                                  else "maintenance mode off"))
    return 1 if record else 0


def run_notify_send(args) -> int:
    from hahooks import notify

    cfg = load(args)
    payload = json.loads(sys.stdin.read() or "{}")
    return notify.send(cfg, payload)
