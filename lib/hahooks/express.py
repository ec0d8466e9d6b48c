"""The express lane: a `master|slave --detach` hook, or a daemon's own command (WIRING:
devd-event, keepalived-notify, ucarp-up/-down with --detach), handed to a running
`hahooks agent` before the hook imports anything heavy.

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
                            for a WIRING call role is "argv" and the command line's words
                            follow in place of the source
  <state dir>/requests/T-PID.ans   the agent's answer (the answers below)
  <state dir>/requests/T-PID.out, .err   a WIRING call's stdout and stderr (its child's)

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

import fcntl
import os
import sys
import time

from hahooks.bell import ACK_WAIT, ring, silent

RUN_DIR = "/var/run/hahooks"      # /run on Linux (the symlink), /var/run on FreeBSD
REQUESTS = "requests"
DESIRE_LOCK = "desire.lock"       # state.DESIRE_LOCK (tests/test_express.py holds them equal)
TAKE_WINDOW = 1.0                 # a request older than this is not taken (agent side)
# answers, the first word of <name>.ans:
RECORDED = "recorded"   # recorded <seq>: desire recorded, converger not forked yet
TAKEN = "taken"         # taken <seq> <message>: recorded, a converger has it (exit 0)
IGNORED = "ignored"     # ignored <message>: maintenance mode (exit 0, nothing recorded)
DECLINED = "declined"   # declined <why>: the hook takes the normal path
# a daemon's own command (WIRING) runs in a child the agent forks, the library loaded:
STARTED = "started"     # started <pid>: the child runs it (the hook waits up to RUN_WAIT)
DONE = "done"           # done <code>: it ran; its stdout and stderr are <name>.out, .err
WIRING = ("devd-event", "keepalived-notify", "ucarp-up", "ucarp-down")
ARGV = "argv"           # the role field of a WIRING request: the words follow the source
RUN_WAIT = 1.0          # how long a hook waits for the child before it withdraws


def run_dir() -> str:
    return os.environ.get("HAHOOKS_RUN_DIR") or RUN_DIR


def default_config() -> str:
    """platforms.default_config_path() without importing platforms (dataclasses):
    tests/test_express.py holds the two equal."""
    if os.environ.get("HAHOOKS_CONFIG"):
        return os.environ["HAHOOKS_CONFIG"]
    return "/usr/local/etc/hahooks.toml" if sys.platform.startswith("freebsd") \
        else "/etc/hahooks.toml"


def pointer_name(st) -> str:
    return f"agent-{st.st_dev}-{st.st_ino}"


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
        if any(c in word for c in "\t\n\0"):
            return None
        if word in ("-c", "--config", "--prefix"):
            value = next(words, None)
            if value is None or value.startswith("-") or any(c in value for c in "\t\n\0"):
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


def private(st, others: int) -> bool:
    """Owned by us (root, as the agent) and without the `others` mode bits (0o022: nobody
    else may write; 0o077: nobody else may look)."""
    return st.st_uid == os.geteuid() and not st.st_mode & others


def agent_spool(config: str) -> tuple[str, str] | None:
    """(state dir, dev:ino of the config) when an agent serves `config` and its files are
    safe to use; None otherwise."""
    import stat

    try:
        cst = os.stat(config)
        rdir = run_dir()
        if not private(os.lstat(rdir), 0o022):
            return None
        fd = os.open(os.path.join(rdir, pointer_name(cst)), os.O_RDONLY | os.O_NOFOLLOW)
        try:
            if not private(os.fstat(fd), 0o022):
                return None
            state_dir = os.read(fd, 4096).decode().split("\n", 1)[0]
        finally:
            os.close(fd)
        for path in (state_dir, os.path.join(state_dir, REQUESTS)):
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or not private(st, 0o077):
                return None
    except (OSError, UnicodeDecodeError):
        return None
    return state_dir, f"{cst.st_dev}:{cst.st_ino}"


def _answer(path: str) -> list[str] | None:
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    return text.rstrip("\n").split("\t") if text.endswith("\n") else None


def _await(path: str, deadline: float, want=(TAKEN, IGNORED, DECLINED)) -> list[str] | None:
    nap = 0.0005
    while True:
        answer = _answer(path)
        if answer and answer[0] in want:
            return answer
        if time.monotonic() >= deadline:
            return answer
        time.sleep(nap)
        nap = min(nap * 2, 0.001)     # a stat per ms for at most ACK_WAIT


def _submit(config: str, role: str, words: list[str]) -> tuple[str, str] | None:
    """Write a request (`words` after the fixed fields) into the spool of the agent that
    serves `config`: (state dir, base name) or None (no agent, or it cannot be written)."""
    spool = agent_spool(config)
    if spool is None:
        return None
    state_dir, devino = spool
    base = os.path.join(state_dir, REQUESTS, f"{time.monotonic_ns():020d}-{os.getpid()}")
    line = "\t".join((repr(time.time()), role, str(os.getpid()), os.path.abspath(config),
                      devino, *words))
    try:    # whole or not at all: the agent must never read a request half written
        fd = os.open(base + ".new", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        os.rename(base + ".new", base + ".req")
    except OSError:
        _remove(base + ".new")
        return None
    return state_dir, base


def _handed(config: str, role: str, words: list[str], converse):
    """Submit a request, ring the bell and return converse(state dir, base name, rung),
    or None (the normal path) when it cannot be submitted; its files go in the end."""
    submitted = _submit(config, role, words)
    if submitted is None:
        return None
    state_dir, base = submitted
    try:
        return converse(state_dir, base, ring(state_dir))
    finally:
        for suffix in (".req", ".ans", ".out", ".err"):
            _remove(base + suffix)


def request(role: str, config: str, source: str) -> tuple[int, str, bool] | None:
    """Hand `role` to the agent: (exit code, message, to stdout) or None for the normal
    path (no agent, or it did not take the request)."""
    def converse(state_dir: str, base: str, rung: bool):
        req, ans = base + ".req", base + ".ans"
        answer = _await(ans, time.monotonic() + ACK_WAIT) if rung else None
        if answer is None:
            if _withdraw(state_dir, req):
                if rung:
                    silent.append(True)
                return None
            answer = _answer(ans)        # the agent took it in the meantime: its answer
        if answer and answer[0] == RECORDED:     # its converger's PID should follow
            answer = _await(ans, time.monotonic() + ACK_WAIT)
            if answer and answer[0] == RECORDED:
                # the agent recorded the desire and went silent (stopped right after)
                from hahooks import transition

                seq = answer[1] if len(answer) > 1 else "?"
                return 0, transition.ensure_converging(config, role, seq), True
        return _verdict(answer) if answer else None

    return _handed(config, role, [" ".join(source.split())], converse)


def request_wiring(argv: list[str], config: str) -> tuple[int, str, str] | None:
    """Hand a WIRING call to the agent, which runs it in a child: (exit code, stdout,
    stderr) or None for the normal path. The child records the desire only while the
    request is still there (spool.Spool.run_wiring claims it under the desire lock), and a
    hook that stops waiting withdraws it under the same lock: exactly one of them acts."""
    def converse(state_dir: str, base: str, rung: bool):
        req, ans = base + ".req", base + ".ans"
        answer = _await(ans, time.monotonic() + ACK_WAIT, (STARTED, DONE, DECLINED)) \
            if rung else None
        if answer and answer[0] == STARTED:
            answer = _await(ans, time.monotonic() + RUN_WAIT, (DONE, DECLINED))
        if not answer or answer[0] not in (DONE, DECLINED):
            if _withdraw(state_dir, req):
                if rung:
                    silent.append(True)
                return None
            # the child claimed it (recorded the desire) or answered first: its answer
            answer = _await(ans, time.monotonic() + RUN_WAIT, (DONE, DECLINED))
            if not answer or answer[0] not in (DONE, DECLINED):
                # recorded, then the child went silent (stopped, killed)
                from hahooks import transition

                return 0, transition.ensure_converging(config, None, None) + "\n", ""
        if answer[0] != DONE or len(answer) < 2 or not answer[1].isdigit():
            return None     # declined: nothing recorded, the normal path
        return int(answer[1]), _slurp(base + ".out"), _slurp(base + ".err")

    return _handed(config, ARGV, argv, converse)


def _slurp(path: str) -> str:
    try:
        with open(path, errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _withdraw(state_dir: str, req: str) -> bool:
    """Under the desire lock: True = the request was still there and is ours again (the
    normal path records the desire); False = the agent took it."""
    try:
        fd = os.open(os.path.join(state_dir, DESIRE_LOCK),
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:     # cannot happen in the dir the agent prepared: the unlink decides
        return unlinked(req)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return unlinked(req)
    finally:
        os.close(fd)


def unlinked(path: str) -> bool:
    """True when `path` was there and is gone now (by us)."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


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
