"""The express lane: a `master|slave --detach` hook, a daemon's own command (WIRING:
devd-event, keepalived-notify, ucarp-up/-down with --detach) or a call that waits for the
outcome (express_wait.py), handed to a running `hahooks agent` before the hook imports
anything heavy.

Without it the hook that hands its desire to the agent still imports the config parser,
logging, the JSON logger and argparse (~50 ms here, docs/performance.md) to record the
desire itself. With it the hook imports nothing beyond os, sys, time and fcntl: it drops a
request into the agent's spool and the agent, which has everything loaded, records the
desire through the same library code (state.StateDir.record_desire, the transition's log
record), forks its converger and answers. The desire protocol stays in one place.

Files (the agent makes them; the hook only trusts them when root-owned and closed to
others, as the state dir itself):
  <run dir>/agent-DEV-INO   the state dir of the agent serving the config file with that
                            device and inode (run dir: $HAHOOKS_RUN_DIR, default
                            /var/run/hahooks); removed when the agent stops
  <state dir>/requests/T-PID.req   one request: "at <tab> role <tab> pid <tab> config
                            <tab> dev:ino <tab> source", written whole by the hook
                            (T: CLOCK_MONOTONIC ns, zero-padded, so names sort by age);
                            for a command line run by the agent's child (a WIRING
                            call, a waiting call: express_wait.py) role is "argv" and
                            the words follow in place of the source
  <state dir>/requests/T-PID.ans   the agent's answer (express_io.py lists them)
  <state dir>/requests/T-PID.out, .err   such a call's stdout and stderr (its child's)
  <state dir>/requests/T-PID.run   a waiting call's child holds it locked while it lives

The hook's side, and why it can never cost a transition:
1. No pointer, an unsafe one, no reader on agent.bell (no agent): the normal path, at once.
2. Request written, bell rung; the agent answers within ACK_WAIT: done.
3. No answer: under the desire lock (desire.lock, which the agent holds while it takes a
   request) the hook withdraws the request if it is still there and takes the normal path,
   which records the desire itself. Gone = the agent took it (recorded its desire under
   that same lock); the hook waits ACK_WAIT more for the converger's PID, then makes sure
   something converges (transition.ensure_converging: a worker if the lock is free).
The agent (spool.Spool.take) takes a request of a live hook within TAKE_WINDOW of its
writing, and one left by a killed hook only while it is that young and no desire was
recorded after it: it never replays an old event over a newer one.

A WIRING call (request_wiring) is run by a child the agent forks (spool.Spool.run_wiring):
the agent answers STARTED, the hook then waits RUN_WAIT for DONE. The child records the
desire only after removing the request under the desire lock (state.StateDir.claim), the
same lock the hook's withdrawal takes: a request the hook withdrew is never recorded by
the child, and one the child claimed is never withdrawn (the hook waits for its answer,
and makes sure something converges if none comes). A WIRING request of a killed hook is
dropped.
"""
from __future__ import annotations

import os
import sys
import time

from hahooks import express_wait
from hahooks.bell import ACK_WAIT, silent
from hahooks.express_io import (  # noqa: F401 (the protocol's names, for spool.py and tests)
    ARGV, DECLINED, DESIRE_LOCK, DONE, IGNORED, RECORDED, REQUESTS, RUN_WAIT, RUNNING,
    STARTED, TAKE_WINDOW, TAKEN, agent_spool, answer_of, await_answer, carried,
    default_config, handed, pointer_name, private, run_dir, slurp, unlinked, withdraw)

WIRING = ("devd-event", "keepalived-notify", "ucarp-up", "ucarp-down")


def parse(argv: list[str]) -> tuple[str, str, str] | None:
    """(role, config, source) for `master|slave --detach [-q|-v] [-c F] [--source S]`, the
    event daemons' form; None for anything else (the normal parser handles it)."""
    if len(argv) < 2 or argv[0] not in ("master", "slave"):
        return None
    role, config, source, detach = argv[0], None, "", False
    words = iter(argv[1:])
    for word in words:
        if word == "--detach" and not detach:
            detach = True
        elif word in ("-q", "--quiet", "-v", "--verbose"):
            pass      # stderr's level: the express lane prints only its one line
        elif word in ("-c", "--config", "--source"):
            value = next(words, None)
            if value is None or value.startswith("-"):
                return None
            if word == "--source":
                source = value
            else:
                config = value
        elif word.startswith("--config="):
            config = word.split("=", 1)[1]
        elif word.startswith("--source="):
            source = word.split("=", 1)[1]
        else:
            return None
    if not detach or config == "":
        return None
    return role, config or default_config(), source


def parse_wiring(argv: list[str]) -> str | None:
    """The config of a WIRING call the agent's child may run (`--detach`, the default),
    None for anything else: `--wait` converges in the caller, `--vip` changes an address
    before it records (not to be done twice if the hook withdraws), `--explain`, help, a
    relative config path (the child runs in /) or a word a request line cannot carry."""
    if len(argv) < 2 or argv[0] not in WIRING:
        return None
    config = None
    words = iter(argv[1:])
    for word in words:
        if not carried(word):
            return None
        if word in ("-c", "--config", "--prefix"):
            value = next(words, None)
            if value is None or value.startswith("-") or not carried(value):
                return None
            if word != "--prefix":
                config = value
        elif word.startswith("--config="):
            config = word.split("=", 1)[1]
        elif word.startswith("-") and word not in ("--detach", "-q", "--quiet", "-v",
                                                     "--verbose") \
                and not word.startswith("--prefix="):
            return None       # --wait, --vip, --explain, -h, an abbreviation: the parser's
    if config is not None and not os.path.isabs(config):
        return None
    return config or default_config()


def request(role: str, config: str, source: str) -> tuple[int, str, bool] | None:
    """Hand `role` to the agent: (exit code, message, to stdout) or None for the normal
    path (no agent, or it did not take the request)."""
    def converse(state_dir: str, base: str, rung: bool):
        req, ans = base + ".req", base + ".ans"
        answer = await_answer(ans, time.monotonic() + ACK_WAIT) if rung else None
        if answer is None:
            if withdraw(state_dir, req):
                if rung:
                    silent.append(True)
                return None
            answer = answer_of(ans)        # the agent took it in the meantime: its answer
        if answer and answer[0] == RECORDED:     # its converger's PID should follow
            answer = await_answer(ans, time.monotonic() + ACK_WAIT)
            if answer and answer[0] == RECORDED:
                # the agent recorded the desire and went silent (stopped right after)
                from hahooks import transition

                seq = answer[1] if len(answer) > 1 else "?"
                return 0, transition.ensure_converging(config, role, seq), True
        return _verdict(answer) if answer else None

    return handed(config, role, [" ".join(source.split())], converse)


def request_wiring(argv: list[str], config: str) -> tuple[int, str, str] | None:
    """Hand a WIRING call to the agent, which runs it in a child: (exit code, stdout,
    stderr) or None for the normal path. The child records the desire only while the
    request is still there (spool.Spool.run_wiring claims it under the desire lock), and a
    hook that stops waiting withdraws it under the same lock: exactly one of them acts."""
    def converse(state_dir: str, base: str, rung: bool):
        req, ans = base + ".req", base + ".ans"
        answer = await_answer(ans, time.monotonic() + ACK_WAIT, (STARTED, DONE, DECLINED)) \
            if rung else None
        if answer and answer[0] == STARTED:
            answer = await_answer(ans, time.monotonic() + RUN_WAIT, (DONE, DECLINED))
        if not answer or answer[0] not in (DONE, DECLINED):
            if withdraw(state_dir, req):
                if rung:
                    silent.append(True)
                return None
            # the child claimed it (recorded the desire) or answered first: its answer
            answer = await_answer(ans, time.monotonic() + RUN_WAIT, (DONE, DECLINED))
            if not answer or answer[0] not in (DONE, DECLINED):
                # recorded, then the child went silent (stopped, killed)
                from hahooks import transition

                return 0, transition.ensure_converging(config, None, None) + "\n", ""
        if answer[0] != DONE or len(answer) < 2 or not answer[1].isdigit():
            return None     # declined: nothing recorded, the normal path
        return int(answer[1]), slurp(base + ".out"), slurp(base + ".err")

    return handed(config, ARGV, argv, converse)


def _verdict(answer: list[str]) -> tuple[int, str, bool] | None:
    kind, rest = answer[0], answer[1:]
    if kind == TAKEN and len(rest) >= 2:
        return 0, rest[1], True
    if kind == IGNORED and rest:
        return 0, rest[0], False
    return None     # DECLINED, or anything unreadable: the normal path


def main(argv: list[str]) -> int | None:
    """The exit code when the express lane served `argv`, else None."""
    if os.environ.get("HAHOOKS_EXPRESS") == "0":
        return None
    config = parse_wiring(argv)
    if config is not None:
        ran = request_wiring(argv, config)
        if ran is None:
            return None
        code, out, err = ran
        sys.stdout.write(out)
        sys.stderr.write(err)
        return code
    waiting = express_wait.parse(argv)
    if waiting is not None:
        return express_wait.request(*waiting)
    parsed = parse(argv)
    if parsed is None:
        return None
    outcome = request(*parsed)
    if outcome is None:
        return None
    code, message, to_stdout = outcome
    print(message, file=sys.stdout if to_stdout else sys.stderr)
    return code


def run() -> None:
    """The `hahooks` command and `python3 -m hahooks`: the express lane where it serves the
    call, else the whole command line (cli.run)."""
    code = main(sys.argv[1:])
    if code is None:
        from hahooks.cli import run as run_cli

        run_cli()
        return
    if "logging" in sys.modules:        # ensure_converging logged: flush the JSON log
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)    # a hot command (cli.HOT_COMMANDS): no teardown
