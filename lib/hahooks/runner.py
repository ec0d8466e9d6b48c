"""The one door to the operating system.

Every external command runs here: an argv list (never a shell string), output through
pipes (never a terminal), a timeout that kills the whole process group (spawn.py starts
each command as the leader of its own), tool lookup that works under devd's minimal
PATH, and one log record per command (argv, exit code, duration, stderr tail).

Dry-run (like zfs_autobackup's `run(..., readonly=)`): read-only commands run for real,
mutating ones are logged as "would run" and reported as succeeded.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import shutil
import signal
import threading
import time
from typing import TYPE_CHECKING, Iterable, Sequence

from hahooks import spawn
from hahooks.errors import CommandFailed, CommandTimeout, NotInstalled
from hahooks.platforms import Platform, host_platform

if TYPE_CHECKING:
    from hahooks.config import Config

log = logging.getLogger("hahooks.runner")
# The environment variable naming each command's launch (see Runner._execute).
RUN_TOKEN = "HAHOOKS_RUN"
_launches = itertools.count(1)

DEFAULT_TIMEOUT = 30.0
TAIL = 400  # characters of stderr kept in a log record


@dataclasses.dataclass
class Result:
    argv: list[str]
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    timeout: float = 0.0
    timed_out: bool = False
    dry_run: bool = False
    shown: list[str] | None = None   # argv with its secrets masked (redact()); None: no secret

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def display(self) -> str:
        """The argv as a shell would need it typed (quoted only where needed), secrets
        masked: this is what the log, syslog, errors and done.json see."""
        import shlex

        return shlex.join(self.shown if self.shown is not None else self.argv)


MASK = "REDACTED"   # no shell metacharacter: shlex.join leaves it unquoted
# key=value words that hold a password wherever they appear (fence agents read `passwd=` on
# stdin-style argument lists; `--password=` is their long option)
SECRET_KEYS = ("password", "passwd")
# options whose next word is a password: fence agents' -p/--password (every agent shares
# fence-agents lib/fencing.py.py all_opt["passwd"], getopt "p:", longopt "password"; its
# "passwd_script" is -S/--password-script; docs/reference/pacemaker.md), ipmitool(1)'s -P.
# Only for argvs the caller marks (secret_options=True: [node] fence and demote), since -p
# means "parents" to mkdir.
SECRET_OPTIONS = ("-p", "-P", "--password", "--passwd")


def redact(argv: Sequence[str], secrets: Iterable[str] = (),
           secret_options: bool = False) -> list[str]:
    """argv with every word a caller marked secret, every password=/passwd= value and
    (secret_options) the word after -p/-P/--password masked."""
    secrets = [w for w in secrets if w]
    out: list[str] = []
    for i, word in enumerate(argv):
        for secret in secrets:
            word = word.replace(secret, MASK)
        key, eq, value = word.partition("=")
        if eq and value and key.lstrip("-").lower() in SECRET_KEYS:
            word = f"{key}={MASK}"
        if secret_options and i and argv[i - 1] in SECRET_OPTIONS:
            word = MASK
        out.append(word)
    return out


class Runner:
    """Runs commands; `dry_run` turns mutating ones into log lines."""

    def __init__(self, platform: Platform | None = None, *, dry_run: bool = False,
                 tool_paths: dict[str, str] | None = None, search_dirs: Iterable[str] = (),
                 default_timeout: float = DEFAULT_TIMEOUT, env: dict[str, str] | None = None):
        self.platform = platform or host_platform()
        self.dry_run = dry_run
        self.tool_paths = dict(tool_paths or {})
        self.search_dirs = list(search_dirs)
        self.default_timeout = default_timeout
        self.env = env
        self.history: list[Result] = []   # what this process ran (read by dry-run output and tests)
        # Dry-run: every "would run ..." / "would <effect>" line in order (printed by
        # `master --dry-run` and `plan`); Context.effect adds the effects.
        self.planned: list[str] = []
        # Mutating commands run (or, in dry-run, planned) plus Context.effect()s: the engine
        # compares it around a failed acquire to tell a refusal that changed nothing (its
        # rollback must not touch that layer) from a half-done step.
        self.changes = 0
        # Told the process group of each command before it is waited for and after it ended
        # (transition.py records it in the state dir so a killed transition's orphans are
        # found by the next one).
        self.tracker = None
        self._resolved: dict[str, str] = {}

    # -- tool lookup -------------------------------------------------------
    def which(self, tool: str) -> str | None:
        if "/" in tool:
            return tool if os.access(tool, os.X_OK) else None
        if tool in self.tool_paths:   # [node] paths: exactly there or nowhere
            path = self.tool_paths[tool]
            return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
        if tool in self._resolved:
            return self._resolved[tool]
        path = os.pathsep.join([os.environ.get("PATH", ""), *self.search_dirs,
                                *self.platform.sbin_dirs])
        found = shutil.which(tool, path=path)
        if found:
            self._resolved[tool] = found
        return found

    def resolve(self, tool: str) -> str:
        found = self.which(tool)
        if not found and tool in self.tool_paths:
            raise NotInstalled(f"command not found: {tool}: [node] paths sets "
                               f"{self.tool_paths[tool]}, which is not an executable file")
        if not found and "/" in tool:
            raise NotInstalled(f"command not found: {tool} is not an executable file")
        if not found:
            raise NotInstalled(f"command not found: {tool} (searched PATH and "
                               f"{':'.join(self.platform.sbin_dirs)}; set [paths] {tool} = ... "
                               "in the config)")
        return found

    # -- running -----------------------------------------------------------
    def run(self, argv: Sequence[str], *, readonly: bool, timeout: float | None = None,
            ok: Iterable[int] = (0,), check: bool = True, input: str | None = None,
            env: dict[str, str] | None = None, what: str = "", secrets: Iterable[str] = (),
            secret_options: bool = False) -> Result:
        """Run argv[0] (looked up) with the rest as literal arguments.

        readonly: True for queries (they also run in dry-run); False for anything that
        changes state. check: raise CommandFailed on an exit code outside `ok`.
        secrets (words a kind marks secret) and secret_options (mask the word after
        -p/-P/--password): what the log shows instead of those words (redact()).
        """
        if isinstance(argv, str):
            raise TypeError("runner.run takes an argument list, never a shell string")
        argv = [str(a) for a in argv]
        shown = redact(argv, secrets, secret_options)
        shown = None if shown == argv else shown
        timeout = self.default_timeout if timeout is None else timeout
        ok = tuple(ok)
        if not readonly:
            self.changes += 1
        if self.dry_run and not readonly:
            result = Result(argv, 0, dry_run=True, timeout=timeout, shown=shown)
            self.history.append(result)
            self.planned.append(f"would run: {result.display()}")
            log.info("would run: %s", result.display(),
                     extra={"event": "command", "argv": shown or argv, "dry_run": True,
                            "readonly": False})
            return result
        exe = self.resolve(argv[0])
        result = self._execute(exe, argv, timeout, input, env, shown)
        self.history.append(result)
        quiet = (result.exit_code in ok or not check) and not result.timed_out
        # a command that hung past its timeout is never routine, even when a caller retries
        level = logging.WARNING if result.timed_out else (logging.DEBUG if quiet
                                                          else logging.INFO)
        log.log(level, "ran %s -> %s in %.3fs", result.display(),
                "timeout" if result.timed_out else result.exit_code, result.duration,
                extra={"event": "command", "argv": shown or argv, "exe": exe, "what": what,
                       "exit_code": result.exit_code,
                       "duration": round(result.duration, 4), "timed_out": result.timed_out,
                       "readonly": readonly, "stderr_tail": result.stderr[-TAIL:]})
        if result.timed_out:
            raise CommandTimeout(result)
        if check and result.exit_code not in ok:
            raise CommandFailed(result, what)
        return result

    def _execute(self, exe: str, argv: list[str], timeout: float, input: str | None,
                 env: dict[str, str] | None, shown: list[str] | None = None) -> Result:
        # Every command carries a token in its environment, recorded BEFORE it is spawned:
        # a transition SIGKILLed between the spawn and a record written after it would leave
        # a command running that no later transition knows of. The next transition finds the
        # command's process group by this token (state.reap_orphans).
        token = f"{os.getpid()}.{next(_launches)}"
        full_env = {**os.environ, **(self.env or {}), **(env or {}), RUN_TOKEN: token}
        started = time.monotonic()
        self._track("command_started", token, shown or argv)   # inflight.json: masked too
        try:
            proc = spawn.start(exe, argv, full_env, input)
        except OSError as exc:  # vanished or not executable since which()
            self._track("command_finished", token)
            raise NotInstalled(f"cannot run {exe}: {exc}") from None
        # Our own timer kills the whole process group: sh's `_timeout` signals only the child
        # and adds its timer thread's polling to every call (docs/performance.md), and
        # subprocess's wait(timeout=) kills nothing.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _kill_group(proc.pid)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        import shlex

        from hahooks.waits import Progress

        try:   # a long fsck or rebuild says it is still running (waits.Progress)
            with Progress(f"{shlex.join(shown or argv)} to finish", timeout).ticking():
                code = proc.wait()
        finally:
            timer.cancel()
            self._track("command_finished", token)
        timed_out = expired.is_set()
        duration = time.monotonic() - started
        if code is None:
            code = -1
        elif code < 0:  # killed by signal N: report 128+N as a shell does
            code = 128 - code
        return Result(argv, code, _text(proc.stdout), _text(proc.stderr), duration, timeout,
                      timed_out, shown=shown)

    def _track(self, event: str, *args) -> None:
        if self.tracker is None:
            return
        try:
            getattr(self.tracker, event)(*args)
        except Exception as exc:  # bookkeeping must never leave a command un-waited
            log.warning("cannot record %s: %s", event, exc)


def _kill_group(pgid: int) -> None:
    """The command timed out: KILL its whole process group, not the child alone."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _text(data) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data


def for_config(cfg: "Config", dry_run: bool = False) -> Runner:
    """The runner a node's settings ask for (tool paths, search path, command timeout).
    Here, not in transition.py or the engine: notify, the VIP and the handover command run
    commands without an engine, and the runner is what they all share."""
    return Runner(cfg.node.platform, dry_run=dry_run, tool_paths=cfg.node.paths,
                  search_dirs=cfg.node.search_path, default_timeout=cfg.node.command_timeout)
