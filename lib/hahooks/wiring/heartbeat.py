"""Heartbeat v1: `hahooks heartbeat [CONFIG] start|stop|status` — the whole stack as one
haresources entry (heartbeat-resource.d/hahooks).

The haresources conventions (docs/reference/heartbeat.md §1, /usr/share/heartbeat/ResourceManager):
* `hahooks::/etc/hahooks.toml` runs `resource.d/hahooks /etc/hahooks.toml start`: the
  `::`-separated words come first, the action last. Without a word the default config is
  used ($HAHOOKS_CONFIG, /etc/hahooks.toml).
* status: only stdout counts, matched as `*[Nn][Oo][Tt]\\ *[Rr]unning*` (not running), then
  `*[Rr]unning*|*OK*` (running). We print exactly "running" or "stopped" on stdout and the
  details on stderr (which lands in Heartbeat's debug log), so no layer name or reason can
  ever read as running.
* start runs only when status (called twice, by we_own_resource) does not say running.
  start = `master --wait`; Heartbeat has no timeouts and needs the outcome.
* stop = `slave --wait`. Releasing a stack that holds nothing succeeds (exit 0): a failed stop
  is retried 10 times, and then, if status says running, Heartbeat kills itself and reboots
  the node (RecoverFromFailedStop).
* A stack that is only partly held reads "stopped" so that start completes it — except after
  a stop that did not finish: then it reads "running", so Heartbeat's failed-stop path
  reboots this node instead of letting the peer take over storage still held here.
"""
from __future__ import annotations

import logging
import os
import re
import sys

from hahooks import config as config_mod, logs
from hahooks.errors import ExitCode, HahooksError, UsageError
from hahooks.wiring import hook

# The state dir and the engine are imported by the functions that read them: the CLI
# imports this module to build its whole parser, which a wiring hook does at every event.

ACTIONS = ("start", "stop", "status")
RUNNING, STOPPED = "running", "stopped"
# ResourceManager ignores the exit code (only the text counts); these are the project's
# (OCF) numbers, as `hahooks mount|import-pool status` use.
STATUS_CODE = {RUNNING: ExitCode.OK, STOPPED: ExitCode.NOT_RUNNING}


def register(sub, common) -> None:
    p = sub.add_parser(
        "heartbeat", parents=[common],
        help="Heartbeat v1 resource script for the whole stack: [CONFIG] start|stop|status",
        description="Heartbeat v1 haresources entry `hahooks[::CONFIG]`: start = master "
        "--wait, stop = slave --wait (exit 0 when nothing is held), status prints exactly "
        "'running' (whole stack held) or 'stopped'.")
    p.add_argument("words", nargs="+", metavar="[CONFIG] ACTION",
                   help="optional config path (from hahooks::CONFIG), then start, stop or status")
    p.set_defaults(func=run_heartbeat, detach=False)


def parse_words(words: list[str], config_option: str | None) -> tuple[str | None, str]:
    """Heartbeat's argv -> (config path or None, action). Raises UsageError (exit 2)."""
    action = words[-1]
    if action not in ACTIONS:
        raise UsageError(f"heartbeat: unknown action {action!r} (the last argument must be "
                         f"one of: {', '.join(ACTIONS)})")
    extra = words[:-1]
    if len(extra) > 1:
        raise UsageError(f"heartbeat: too many arguments before {action!r}: {extra!r} "
                         "(haresources takes hahooks or hahooks::/path/to/config.toml)")
    config = extra[0] if extra else None
    if config is not None:
        if config_option:
            raise UsageError("heartbeat: config given twice (-c and hahooks::CONFIG)")
        if not os.path.isabs(config) or re.search(r"[\s\x00-\x1f]", config):
            raise UsageError(f"heartbeat: config path {config!r} must be absolute, with no "
                             "blanks (Heartbeat splits the arguments on blanks)")
    return config or config_option, action


def status_word(states: list[str], stop_unfinished: bool) -> tuple[str, str]:
    """What status prints, and why. `states` are the layers' held/released/broken values.

    Pure, so the Heartbeat-facing text is tested for every combination."""
    if states and all(s == "held" for s in states):
        return RUNNING, f"all {len(states)} layer(s) held"
    if all(s == "released" for s in states):
        return STOPPED, f"nothing held ({len(states)} layer(s) released)"
    summary = ", ".join(f"{n} {s}" for s, n in _counts(states))
    if stop_unfinished:
        return RUNNING, (f"release incomplete ({summary}) after a stop that did not finish: "
                         "reporting held so Heartbeat does not hand the storage over")
    return STOPPED, f"partly held ({summary}): start will complete it"


def _counts(states: list[str]):
    return [(s, states.count(s)) for s in ("held", "broken", "released") if s in states]


def stop_unfinished(cfg) -> bool:
    """True when the newest request is slave and it has not finished successfully."""
    from hahooks.state import StateDir

    state = StateDir(cfg.node.state_dir)
    desire, done = state.desire(), state.done()
    if desire is None or desire.role != "slave":
        return False
    return not (done and done.get("seq", 0) >= desire.seq and done.get("role") == "slave"
                and done.get("exit_code") == 0)


def observe_states(cfg) -> list[str]:
    from hahooks.engine import Engine

    return [obs.state.value for _, obs in Engine.for_config(cfg).observe()]


def run_heartbeat(args) -> int:
    config, action = parse_words(args.words, args.config)
    args.config = config
    if action == "status":
        return run_status(args)
    cfg = hook.load(args)
    role = "master" if action == "start" else "slave"
    return hook.request(cfg, args, role, caller="heartbeat", argv=list(args.words))


def run_status(args) -> int:
    try:
        cfg = config_mod.load(args.config)
    except HahooksError:
        print(STOPPED)   # we cannot claim to hold anything; the error goes to stderr
        raise
    # Heartbeat's calls are recorded in the JSON log too; stderr (its debug log) gets only
    # our one summary line.
    logs.setup_from_config(cfg, stderr_level=logging.WARNING)
    try:
        word, why = status_word(observe_states(cfg), stop_unfinished(cfg))
    except HahooksError as exc:
        print(STOPPED)
        print(f"hahooks: heartbeat status: cannot observe the stack: {exc.one_line()}",
              file=sys.stderr)
        return ExitCode.GENERIC
    hook.log_call("heartbeat", list(args.words), f"{word} ({why})")
    print(word)
    print(f"hahooks: heartbeat status: {word}: {why}", file=sys.stderr)
    return int(STATUS_CODE[word])
