"""`hahooks master|slave` and the hidden `worker`."""
from __future__ import annotations

import argparse
import sys

from hahooks import config as config_mod, logs
from hahooks.errors import ExitCode

EPILOG = """\
exit codes (OCF numbers):
  0 the stack is held (master) / released (slave); with --detach: the request is recorded
  1 a step failed: the stack was rolled back (master) or left safe (slave), or the request
    was superseded by a newer one for the other role
  2 bad arguments   4 permission problem, unsafe or full state dir, or a path another
    user could redirect (refused before acting)   5 a tool is not installed
  6 the config is missing or invalid (nothing was run)
"""


AGENT_EPILOG = """\
exit codes:
  0 stopped by SIGTERM or SIGINT   1 another agent serves the state dir
  4 unsafe state dir   6 the config is missing or invalid
"""


def register(sub, common) -> None:
    for role, text in (("master", "acquire the stack in order"),
                       ("slave", "release the stack in reverse order")):
        p = sub.add_parser(role, parents=[common], help=text, description=text + ".",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--wait", dest="detach", action="store_false", default=False,
                          help="return the outcome (default; for Heartbeat, OCF, people)")
        mode.add_argument("--detach", action="store_true",
                          help="record the request, make sure a worker converges, return at "
                          "once (for devd, freevrrpd, ucarp, keepalived)")
        mode.add_argument("--dry-run", action="store_true",
                          help="run read-only queries, print the mutating commands in order "
                          "and run none of them (no lock, no desire recorded)")
        p.add_argument("--source", default="", help="who asked (recorded in the log)")
        p.set_defaults(func=run_transition, role=role)
    w = sub.add_parser("worker", parents=[common], description="converge to the newest "
                       "desire (started by --detach; harmless to run by hand)")
    w.set_defaults(func=run_worker)
    text = ("stay resident and converge each new desire at once, so an event pays only the "
            "small hook process (optional; rc.d or systemd starts it)")
    a = sub.add_parser("agent", parents=[common], help=text, description=text + ". A --detach "
                       "hook hands its desire over only when the agent takes it within "
                       "50 ms; without an answer (no agent, a stopped or dead one) it starts "
                       "a worker as without an agent. A --wait caller converges its own desire, in "
                       "a child the agent forks for it when the call takes the express lane.",
                       epilog=AGENT_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    a.set_defaults(func=run_agent)


def load(args):
    cfg = config_mod.load(args.config)
    from hahooks.cli import stderr_level

    level = stderr_level(args)
    if getattr(args, "dry_run", False) and not args.verbose:
        level = max(level, 30)   # WARNING: stdout already lists what would run
    logs.setup_from_config(cfg, level)
    return cfg


def run_transition(args) -> int:
    cfg = load(args)
    if args.dry_run:
        return dry_run(cfg, args.role)
    from hahooks import maintenance, transition

    if args.detach:   # the daemons' form (freevrrpd, hooks/master): ignored in maintenance
        ignored = maintenance.ignores(cfg, args.role, args.source or "master/slave --detach")
        if ignored:
            print(ignored, file=sys.stderr)
            return 0
    else:
        maintenance.note_manual(cfg, args.role)
    code, message = transition.request(cfg, args.role, detach=args.detach, source=args.source)
    print(message, file=sys.stderr if code else sys.stdout)
    return code


def dry_run(cfg, role: str) -> int:
    """The walk as it would go now: read-only probes run, everything else is printed."""
    from hahooks.engine import Engine
    from hahooks.errors import HahooksError

    engine = Engine.for_config(cfg, dry_run=True)
    runner = engine.runner
    # every record says dry_run (the JSON file), and none of its warnings reach syslog
    with logs.context(dry_run=True):
        try:
            engine.run(role)
        except HahooksError as exc:
            code, stopped = exc.exit_code, exc.one_line()
        else:
            code, stopped = ExitCode.OK, ""
    for line in runner.planned:
        print(line)
    if not runner.planned and not stopped:   # a stopped walk says nothing about the stack
        print(f"nothing to do: every layer is already {'held' if role == 'master' else 'released'}")
    if stopped:
        print(f"dry-run stopped: {stopped}", file=sys.stderr)
    return code


def run_worker(args) -> int:
    cfg = load(args)
    from hahooks import transition

    return transition.worker(cfg)


def run_agent(args) -> int:
    cfg = load(args)
    from hahooks import agent

    return agent.serve(cfg.path, cfg)
