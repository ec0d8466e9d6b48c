"""keepalived: `hahooks keepalived-notify TYPE NAME STATE [PRIORITY]`.

keepalived exec()s the configured string split into words, with no shell
(docs/reference/keepalived.md §2). `notify_master|backup|fault|stop` get only the words
written in the config; the generic `notify` appends
`INSTANCE|GROUP <name> MASTER|BACKUP|FAULT|STOP <priority>` (docs/reference/keepalived.md §1;
DELETED appears when a reload removes the instance). So one line serves every state:

    notify "/usr/local/sbin/hahooks keepalived-notify"

and a per-state line spells the same words out:

    notify_master "/usr/local/sbin/hahooks keepalived-notify INSTANCE VI_1 MASTER"

With `[wiring] instance = "VI_1"` in the config, calls naming another instance or group
are logged and ignored (exit 0).

A graceful shutdown reports STOP (not BACKUP), so STOP must release too. keepalived runs
the scripts from its VRRP child without waiting for them; --detach (the default) keeps each
call short and the desire log makes the newest state win.
"""
from __future__ import annotations

import argparse
import re

from hahooks.wiring import hook

TYPES = ("INSTANCE", "GROUP")
# MASTER acquires; every other state means "another node is (or may become) master".
ROLE_OF_STATE = {"MASTER": "master", "BACKUP": "slave", "FAULT": "slave", "STOP": "slave",
                 "DELETED": "slave"}
# keepalived names are config words: no blanks (the notify line is split on them).
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@/-]{0,63}$")


def role_for(state: str) -> str:
    """keepalived state -> the desire it records."""
    return ROLE_OF_STATE[state]


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise argparse.ArgumentTypeError(
            f"invalid instance/group name {value!r} (letters, digits, _ . : @ / -; "
            "at most 64 characters)")
    return value


def _priority(value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,3}", value) or int(value) > 255:
        raise argparse.ArgumentTypeError(f"invalid priority {value!r} (an integer 0..255)")
    return int(value)


def register(sub, common) -> None:
    p = sub.add_parser(
        "keepalived-notify", parents=[common],
        help="keepalived notify script: MASTER -> master, BACKUP/FAULT/STOP -> slave",
        description="Called by keepalived's generic `notify` (which appends TYPE NAME STATE "
        "PRIORITY) or by notify_master/backup/fault/stop with the same words written in the "
        "config. MASTER records master; BACKUP, FAULT, STOP and DELETED record slave.")
    hook.add_mode(p, detach_default=True)
    p.add_argument("type", metavar="TYPE", choices=TYPES, help="INSTANCE or GROUP")
    p.add_argument("name", metavar="NAME", type=_name, help="vrrp_instance or group name")
    p.add_argument("state", metavar="STATE", choices=tuple(ROLE_OF_STATE),
                   help="MASTER, BACKUP, FAULT, STOP or DELETED")
    p.add_argument("priority", metavar="PRIORITY", type=_priority, nargs="?",
                   help="the instance's priority (appended by the generic notify)")
    p.set_defaults(func=run_notify)


def run_notify(args) -> int:
    argv = [args.type, args.name, args.state] + \
        ([] if args.priority is None else [str(args.priority)])
    cfg = hook.load(args)
    wanted = cfg.wiring.get("instance")
    if wanted and args.name != wanted:
        # Several instances (or an instance and its sync group) may call the same line.
        hook.log_call("keepalived", argv, f"ignored: not [wiring] instance {wanted!r}")
        return 0
    return hook.request(cfg, args, role_for(args.state), caller="keepalived", argv=argv)
