"""What every daemon-facing entry shares: the --wait/--detach switch, a log record of the
exact argv the daemon passed, and turning the decision into a recorded desire.

A wiring module parses its daemon's convention, validates it strictly (argparse errors are
one line and exit 2, before any config is read, so bad input records nothing) and then calls
`request(args, role, caller=..., argv=...)`.
"""
from __future__ import annotations

import logging
import sys

from hahooks.commands.transition import load as load_config

log = logging.getLogger("hahooks.wiring")


def add_mode(parser, *, detach_default: bool) -> None:
    """--detach: record and return at once (the daemon waits for us or runs us on its
    event path); --wait: return the outcome."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--detach", dest="detach", action="store_true", default=detach_default,
                      help="record the request and return at once" +
                      (" (default)" if detach_default else ""))
    mode.add_argument("--wait", dest="detach", action="store_false",
                      help="return the outcome of the transition" +
                      ("" if detach_default else " (default)"))


def load(args):
    """The config and logging, set up as `master`/`slave` do."""
    return load_config(args)


def log_call(caller: str, argv: list[str], decision: str) -> None:
    """One record per daemon call: `argv` is the daemon's part as parsed, `raw_argv` the
    command line exactly as received (with any options written in the daemon's config)."""
    log.info("%s called us with %s -> %s", caller, argv, decision,
             extra={"event": "hook", "caller": caller, "argv": list(argv),
                    "raw_argv": sys.argv[1:], "decision": decision})


def request(cfg, args, role: str, *, caller: str, argv: list[str]) -> int:
    """Record `role` (latest wins) and converge now (--wait) or in a worker (--detach)."""
    # local: the state dir and the transition protocol load only once a daemon's request is
    # recorded, not whenever the CLI builds its whole parser (which imports every wiring)
    from hahooks import maintenance, transition

    log_call(caller, argv, role)
    source = " ".join([caller, *argv])
    ignored = maintenance.ignores(cfg, role, source)
    if ignored:   # recorded, not acted on; 0 so the daemon neither retries nor alarms
        print(ignored, file=sys.stderr)
        return 0
    code, message = transition.request(cfg, role, detach=args.detach,
                                       source=source)
    print(message, file=sys.stderr if code else sys.stdout)
    return code
