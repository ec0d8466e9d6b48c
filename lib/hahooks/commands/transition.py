"""`hahooks master|slave` and the hidden `worker`."""
from __future__ import annotations

import sys

from hahooks import config as config_mod, logs
from hahooks.errors import ExitCode


def register(sub, common) -> None:
    for role, text in (("master", "acquire the stack in order"),
                       ("slave", "release the stack in reverse order")):
        p = sub.add_parser(role, parents=[common], help=text, description=text + ".")
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--wait", dest="detach", action="store_false", default=False,
                          help="return the outcome (default; for Heartbeat, OCF, people)")
        mode.add_argument("--detach", action="store_true",
                          help="record the request, make sure a worker converges, return at "
                          "once (for devd, freevrrpd, ucarp, keepalived)")
        mode.add_argument("--dry-run", action="store_true",
                          help="run read-only queries, print the mutating commands")
        p.add_argument("--source", default="", help="who asked (recorded in the log)")
        p.set_defaults(func=run_transition, role=role)
    w = sub.add_parser("worker", parents=[common])
    w.set_defaults(func=run_worker)


def load(args):
    cfg = config_mod.load(args.config)
    from hahooks.cli import stderr_level

    logs.setup_from_config(cfg, stderr_level(args))
    return cfg


def run_transition(args) -> int:
    cfg = load(args)
    if args.dry_run:
        return dry_run(cfg, args.role)
    from hahooks import transition

    code, message = transition.request(cfg, args.role, detach=args.detach, source=args.source)
    print(message, file=sys.stderr if code else sys.stdout)
    return code


def dry_run(cfg, role: str) -> int:
    from hahooks.engine import Engine
    from hahooks.errors import HahooksError
    from hahooks.transition import make_runner

    runner = make_runner(cfg, dry_run=True)
    try:
        Engine(cfg, runner).run(role)
    except HahooksError as exc:
        print(f"dry-run stopped: {exc.one_line()}", file=sys.stderr)
        code = exc.exit_code
    else:
        code = ExitCode.OK
    for r in runner.history:
        if r.dry_run:
            print("would run:", r.display())
    return code


def run_worker(args) -> int:
    cfg = load(args)
    from hahooks import transition

    return transition.worker(cfg)
