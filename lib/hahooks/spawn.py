"""How the runner (runner.py, the one door) starts one command and collects its output.

Two spawners keep the same contract: argv as a list (argv[0] the resolved path, never a
shell), the given environment, stdin fed from `input` or empty, stdout and stderr captured
through pipes (never a terminal), and the command leading its own process group so the
runner's timer can kill the whole group.

* `_Child` (subprocess, the default): nothing to import beyond the standard library. sh 2.x
  imports asyncio, ssl and importlib.metadata at load, on every hook start, and starts
  three threads per command; docs/performance.md has the A/B figures.
* `_ShCommand` (sh, the dependency the foundation issue named): `HAHOOKS_SPAWN=sh`.
"""
from __future__ import annotations

import os
import threading

# After the command exits, how long its output pipes may stay open (a daemon it started
# that kept them) before the output read so far is taken: sh's own bound (OProc wait()).
DRAIN_AFTER_EXIT = 2.0


def spawner() -> str:
    """`subprocess` unless HAHOOKS_SPAWN=sh asks for sh."""
    return "sh" if os.environ.get("HAHOOKS_SPAWN", "").strip().lower() == "sh" else "subprocess"


class _Child:
    """One command started by subprocess with process_group=0 (setpgid in the child, no
    preexec_fn, so safe beside the parallel layers' threads)."""

    def __init__(self, exe: str, argv: list[str], env: dict[str, str], input: str | None):
        import subprocess

        self._proc = subprocess.Popen(
            [exe, *argv[1:]], stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, process_group=0,
            close_fds=True)
        self.pid = self._proc.pid
        self._chunks: dict[str, list[bytes]] = {"out": [], "err": []}
        self._readers = [self._start(self._read, self._proc.stdout, self._chunks["out"]),
                         self._start(self._read, self._proc.stderr, self._chunks["err"])]
        if input is not None:
            self._readers.append(self._start(self._feed, self._proc.stdin, input.encode()))

    @staticmethod
    def _start(target, *args) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        return thread

    @staticmethod
    def _read(pipe, into: list[bytes]) -> None:
        with pipe:
            while chunk := pipe.read1(65536):
                into.append(chunk)

    @staticmethod
    def _feed(pipe, data: bytes) -> None:
        try:
            with pipe:
                pipe.write(data)
        except (BrokenPipeError, OSError):   # the command did not read it all: its business
            pass

    def wait(self) -> int:
        code = self._proc.wait()
        for reader in self._readers:
            reader.join(DRAIN_AFTER_EXIT)
        return code

    @property
    def stdout(self) -> bytes:
        return b"".join(self._chunks["out"])

    @property
    def stderr(self) -> bytes:
        return b"".join(self._chunks["err"])


class _ShCommand:
    """The same through sh (HAHOOKS_SPAWN=sh)."""

    def __init__(self, exe: str, argv: list[str], env: dict[str, str], input: str | None):
        import sh  # kept off the hook's start-up path (docs/performance.md)

        self._sh = sh
        kwargs = dict(_bg=True, _bg_exc=False, _tty_out=False, _ok_code=list(range(256)),
                      _env=env, **sh_group_options(sh.__version__))
        if input is not None:
            kwargs["_in"] = input
        try:
            self._proc = sh.Command(exe)(*argv[1:], **kwargs)
        except sh.CommandNotFound as exc:
            raise OSError(str(exc)) from None
        self.pid = self._proc.pid

    def wait(self) -> int | None:
        try:
            self._proc.wait()
        except (self._sh.ErrorReturnCode, self._sh.SignalException):
            pass
        return self._proc.exit_code

    @property
    def stdout(self):
        return self._proc.stdout

    @property
    def stderr(self):
        return self._proc.stderr


def sh_group_options(version: str) -> dict:
    """The options that put each command in its own process group (the timeout kills the
    group), by sh's major version. sh >= 2 needs `_new_group` (2.0 turned the default
    `_new_session` off) and `_return_cmd`. sh 1.x (Debian 12, the FreeBSD ports: 1.14.2)
    starts every child in a new session, hence its own group, and knows neither option:
    it would pass them on to the command as `--new-group --return-cmd`
    (docs/reference/python-deps.md §4)."""
    if int(version.split(".", 1)[0]) >= 2:
        return {"_new_group": True, "_return_cmd": True}
    return {"_new_session": True}


def start(exe: str, argv: list[str], env: dict[str, str], input: str | None):
    """The command started by the chosen spawner; OSError when it cannot be executed."""
    return (_ShCommand if spawner() == "sh" else _Child)(exe, argv, env, input)
