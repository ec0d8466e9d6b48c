"""The express lane for a caller that waits for the outcome: `master|slave [--wait]` and
`heartbeat [CONFIG] start|stop` (Heartbeat, a person at the shell, a script).

The hook hands its command line to the agent as a daemon's command is handed
(express.request_wiring), and the agent's child runs it with the library loaded: it records
the desire, converges under the transition lock and prints the outcome, as the call would
have in its own process. Meanwhile the hook
- copies the child's stdout and stderr as they grow (a progress line shows up a few ms
  after it was written);
- forwards SIGTERM and SIGINT to the child: a child ended by SIGTERM ends the hook by
  SIGTERM too (the caller asked for it); SIGINT gives "hahooks: interrupted" and exit 1,
  as without the lane;
- exits with the child's exit code.

The child holds <request>.run locked for its whole life (O_CLOEXEC: no command it runs
inherits it), so its lock free without an answer means the child died. Then, as for a
daemon's command: a request still there is withdrawn and the hook takes the normal path
(records the desire itself); a request the child claimed (its desire recorded) is
converged by the hook itself (transition.resume_waiting), which answers for it.
A hook that is killed (SIGKILL, Pacemaker's escalation; a lost terminal) leaves the child
to finish the transition, as a --detach event's converger would; a newer desire supersedes
it as it supersedes any.
"""
from __future__ import annotations

import fcntl
import os
import signal
import sys
import time

from hahooks.bell import ACK_WAIT, silent
from hahooks.express_io import (ARGV, DECLINED, DONE, RUN_WAIT, RUNNING, STARTED, answer_of,
                                await_answer, carried, default_config, handed, withdraw)

WAITING = ("master", "slave", "heartbeat")
FOLLOW_POLL = 0.005     # how often the hook looks at the child's answer, output and lock
FORWARDED = (signal.SIGTERM, signal.SIGINT)
ENDED = (DONE, DECLINED)


def parse(argv: list[str]) -> tuple[str, list[str], str] | None:
    """(config, the words the child runs, role) for `master|slave [--wait] [-q|-v] [-c F]
    [--source S]` and `heartbeat [-q|-v] [-c F] [CONFIG] start|stop`; None for anything
    else (--detach is express.parse's; --dry-run, status, help, a relative config (the
    child runs in /), a word a request line cannot carry: the normal path). Heartbeat's
    CONFIG travels as `-c CONFIG`, which its parser takes the same way."""
    if not argv or argv[0] not in WAITING or not all(carried(w) for w in argv):
        return None
    command, config, words, positional = argv[0], None, [argv[0]], []
    transition = command != "heartbeat"
    rest = iter(argv[1:])
    for word in rest:
        if word in ("-q", "--quiet", "-v", "--verbose") or (word == "--wait" and transition):
            words.append(word)
        elif word in ("-c", "--config") or (word == "--source" and transition):
            value = next(rest, None)
            if value is None or value.startswith("-"):
                return None
            if word == "--source":
                words += [word, value]
            else:
                config = value
        elif word.startswith("--config="):
            config = word.split("=", 1)[1]
        elif word.startswith("--source=") and transition:
            words.append(word)
        elif word.startswith("-"):
            return None
        else:
            positional.append(word)
    if transition:
        if positional:
            return None
        role, action = command, []
    else:
        if not positional or positional[-1] not in ("start", "stop") or len(positional) > 2:
            return None
        if len(positional) == 2:
            if config is not None or any(c.isspace() or c < " " for c in positional[0]):
                return None     # the parser's one-line errors (wiring/heartbeat.py)
            config = positional[0]
        role, action = ("master" if positional[-1] == "start" else "slave"), positional[-1:]
    if config is not None:
        if not os.path.isabs(config):
            return None
        words += ["-c", config]
    return config or default_config(), words + action, role


def request(config: str, words: list[str], role: str) -> int | None:
    """Run `words` in the agent's child and follow it: the exit code, or None for the
    normal path (no agent, it did not start the call, or the child died before it
    recorded anything)."""
    caught: list[int] = []
    child: list[int] = []

    def forward(sig, _frame) -> None:
        caught.append(sig)
        if child:
            try:
                os.kill(child[0], sig)
            except OSError:
                pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        code = handed(config, ARGV, words,
                      lambda state_dir, base, rung: _converse(state_dir, base, rung, child,
                                                              caught, config, role, words))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code is None and caught:     # asked to stop (its files are gone now)
        return _stop_as_asked(caught[-1])
    return code


def _converse(state_dir, base, rung, child, caught, config, role, words) -> int | None:
    req, ans = base + ".req", base + ".ans"
    answer = await_answer(ans, time.monotonic() + ACK_WAIT,
                          (STARTED, RUNNING) + ENDED) if rung else None
    if answer and answer[0] == STARTED:
        answer = await_answer(ans, time.monotonic() + RUN_WAIT, (RUNNING,) + ENDED)
    if not (answer and answer[0] in ENDED):
        if not _running(answer) and withdraw(state_dir, req):
            if rung:
                silent.append(True)
            return None     # no child has it: the normal path records it
        answer = _follow(base, answer_of(ans) or answer, child, caught)
        if answer is None:
            if caught and caught[-1] == signal.SIGTERM:
                return None     # what the child died of: request() ends us the same way
            if withdraw(state_dir, req):
                return None                         # it died before its claim
            return _resume(config, role, words)     # after it: converge it here
    if answer[0] != DONE or len(answer) < 2 or not answer[1].isdigit():
        return None     # declined: nothing recorded, the normal path
    if not child:       # ended before the hook saw it run: its output, whole
        outputs = _opened(base)
        _copy(outputs)
        for fh, _stream in outputs:
            fh.close()
    return int(answer[1])


def _opened(base: str) -> list:
    outputs = []
    for suffix, stream in ((".out", sys.stdout), (".err", sys.stderr)):
        try:
            outputs.append((open(base + suffix, "rb"), stream))
        except OSError:
            pass
    return outputs


def _running(answer: list[str] | None) -> int:
    return int(answer[1]) if answer and answer[0] == RUNNING and len(answer) > 1 \
        and answer[1].isdigit() else 0


def _follow(base: str, answer: list[str] | None, child: list[int],
            caught: list[int]) -> list[str] | None:
    """Copy the child's output while it runs: its final answer, or None when it died
    without one (or never said it runs)."""
    pid = _running(answer)
    if not pid:
        return answer if answer and answer[0] in ENDED else None
    child.append(pid)
    if caught:      # asked to stop before the child was known
        try:
            os.kill(pid, caught[-1])
        except OSError:
            pass
    outputs = _opened(base)
    try:
        run = os.open(base + ".run", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        run = -1
    try:
        while True:
            _copy(outputs)
            answer = answer_of(base + ".ans")
            if answer and answer[0] in ENDED:
                _copy(outputs)
                return answer
            if run < 0 or not locked(run):
                answer = answer_of(base + ".ans")
                _copy(outputs)
                return answer if answer and answer[0] in ENDED else None
            time.sleep(FOLLOW_POLL)
    finally:
        for fh, _stream in outputs:
            fh.close()
        if run >= 0:
            os.close(run)


def _copy(outputs) -> None:
    for fh, stream in outputs:
        data = fh.read()
        if data:
            stream.buffer.write(data) if hasattr(stream, "buffer") else \
                stream.write(data.decode(errors="replace"))
            stream.flush()


def locked(fd: int) -> bool:
    """True while someone (the child) holds the lock on fd's file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _resume(config: str, role: str, words: list[str]) -> int:
    from hahooks import transition
    from hahooks.errors import HahooksError

    level = 10 if {"-v", "--verbose"} & set(words) else \
        30 if {"-q", "--quiet"} & set(words) else 20     # logging's DEBUG, WARNING, INFO
    try:
        code, message = transition.resume_waiting(config, role, level)
    except HahooksError as exc:
        print(f"hahooks: error: {exc.one_line()}", file=sys.stderr)
        return int(exc.exit_code)
    print(message, file=sys.stderr if code else sys.stdout)
    return code


def _stop_as_asked(sig: int) -> int:
    """End as the call would have without the lane: SIGINT is "interrupted", exit 1;
    SIGTERM ends the process by SIGTERM."""
    if sig == signal.SIGINT:
        print("hahooks: interrupted", file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)       # delivered before kill() returns (POSIX): we end here
    return 128 + sig                # the shell's number for it, should it ever be blocked
