"""`hahooks mount` and `hahooks import-pool`: one resource, no config file needed.

    hahooks mount DEVICE MOUNTPOINT [FSTYPE [OPTIONS]] start|stop|status
    hahooks import-pool POOL start|stop|status

The argument order is Heartbeat v1's (haresources `hahooks-mount::/dev/drbd0::/drbd::ext3`
runs `hahooks-mount /dev/drbd0 /drbd ext3 start`; docs/reference/heartbeat.md §1); hooks/mount and
hooks/import-pool exec these. `-c FILE` (or $HAHOOKS_CONFIG) only lends its [node]
settings (platform, tool paths, fence, logging); the default config file is not read.

Heartbeat reads `status` from stdout alone and treats any "OK" or "running" as running, so
stdout says exactly "running" when held and "stopped" otherwise; the reason goes to
stderr. `stop` of something never started succeeds.
"""
from __future__ import annotations

import os
import sys

from hahooks.errors import ExitCode, HahooksError, UsageError

ACTIONS = ("start", "stop", "status")

EXIT_CODES = """\
exit codes:
  start   0 held (also when it already was)   1 failed; nothing left half-done
          2 bad arguments   5 a tool is missing   6 an invalid value (e.g. mountpoint /)
  stop    0 released (also when it never was)   1 could not release it safely: left as is
  status  prints "running", exit 0: held
          prints "stopped", exit 7: not held
          prints "stopped (broken)", exit 1: something is wrong (reason on stderr)
          prints "stopped (error)" and the exit code above on bad arguments or values
"""


def register(sub, common) -> None:
    import argparse

    kw = dict(parents=[common], epilog=EXIT_CODES,
              formatter_class=argparse.RawDescriptionHelpFormatter)
    p = sub.add_parser("mount", help="fsck and mount / safely unmount one filesystem "
                       "(Heartbeat-style arguments, no config needed)",
                       usage="hahooks mount [options] DEVICE MOUNTPOINT [FSTYPE [OPTIONS]] "
                       "start|stop|status", **kw)
    p.add_argument("args", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    p.add_argument("--fsck", choices=("auto", "preen", "force", "never"),
                   help="fsck policy (default auto)")
    p.add_argument("--force-unmount", action="store_true", help="umount -f as a last resort")
    p.add_argument("--timeout", default="60s", help="budget for the action (default 60s)")
    p.set_defaults(func=run_mount)

    p = sub.add_parser("import-pool", help="import / export one ZFS pool (Heartbeat-style "
                       "arguments, no config needed)",
                       usage="hahooks import-pool [options] POOL start|stop|status", **kw)
    p.add_argument("args", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    p.add_argument("-d", "--dir", action="append", dest="dirs", default=[],
                   help="search DIR for the pool's devices (zpool import -d; repeatable)")
    p.add_argument("--force-import", choices=("never", "auto", "always"),
                   help="when import -f may be used (default auto: only after [node] fence "
                   "succeeded)")
    p.add_argument("--force-export", action="store_true", help="zpool export -f as a last "
                   "resort")
    p.add_argument("--timeout", default="60s", help="budget for the action (default 60s)")
    p.set_defaults(func=run_import_pool)


def _split(args, low: int, high: int, usage: str) -> tuple[list[str], str]:
    *operands, action = args
    if action not in ACTIONS or not low <= len(operands) <= high:
        raise UsageError(f"usage: {usage}")
    return operands, action


def run_mount(args) -> int:
    usage = "hahooks mount DEVICE MOUNTPOINT [FSTYPE [OPTIONS]] start|stop|status"
    operands, action = _split(args.args, 2, 4, usage)
    device, mountpoint, fstype, options = (operands + ["", ""])[:4]
    params = {"device": device, "mountpoint": mountpoint}
    if fstype and fstype != "none":
        params["fstype"] = fstype
    if options and options != "defaults":
        params["options"] = options
    if args.fsck:
        params["fsck"] = args.fsck
    if args.force_unmount:
        params["force_unmount"] = True
    return _act(args, "filesystem", "mount", params, action)


def run_import_pool(args) -> int:
    operands, action = _split(args.args, 1, 1, "hahooks import-pool POOL start|stop|status")
    params = {"pool": operands[0], "import_dirs": args.dirs}
    if args.force_import:
        params["force_import"] = args.force_import
    if args.force_export:
        params["force_export"] = True
    return _act(args, "zpool", "import-pool", params, action)


def _act(args, kind: str, label: str, params: dict, action: str) -> int:
    if action != "status":
        return _run(args, kind, label, params, action)
    try:
        return _run(args, kind, label, params, action)
    except HahooksError as exc:    # stdout must still read as not running to Heartbeat
        print(f"hahooks {label} status: {exc.one_line()}", file=sys.stderr)
        print("stopped (error)")
        return int(exc.exit_code)


def _run(args, kind: str, label: str, params: dict, action: str) -> int:
    from hahooks import config as config_mod
    from hahooks.engine import Engine
    from hahooks.kinds.base import State

    raw = {"name": label, "kind": kind, "timeout": args.timeout, **params}
    cfg = config_mod.parse({"resource": [raw]}, f"hahooks {label}")
    path = args.config or os.environ.get("HAHOOKS_CONFIG")
    if path:
        cfg.node = config_mod.load(path).node
    _logging(cfg, args, quiet=action == "status" or args.quiet, with_config=bool(path))
    engine = Engine.for_config(cfg)
    if action == "status":
        (_, obs), = engine.observe()
        print(f"hahooks {label}: {obs}", file=sys.stderr)
        if obs.state is State.HELD:
            print("running")
            return ExitCode.OK
        if obs.state is State.RELEASED:
            print("stopped")
            return ExitCode.NOT_RUNNING
        print("stopped (broken)")
        return ExitCode.GENERIC
    try:
        outcome = engine.run("master" if action == "start" else "slave")
    except HahooksError as exc:
        print(f"hahooks {label} {action}: failed: {exc.one_line()}", file=sys.stderr)
        return int(exc.exit_code)
    step = outcome.steps[-1]
    print(f"hahooks {label} {action}: done ({step.action}"
          f"{': ' + step.detail if step.detail else ''})", file=sys.stderr)
    return ExitCode.OK


def _logging(cfg, args, quiet: bool, with_config: bool) -> None:
    import logging

    from hahooks import logs
    from hahooks.cli import stderr_level

    level = max(stderr_level(args), logging.WARNING) if quiet else stderr_level(args)
    if with_config:
        logs.setup_from_config(cfg, level)
    else:   # no config: stderr (Heartbeat keeps it in its debug log) and syslog
        logs.setup(node=cfg.node.name, syslog_socket=cfg.node.syslog_socket,
                   facility=cfg.node.syslog_facility, stderr_level=level, json_file=False)
