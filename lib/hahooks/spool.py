"""The agent's side of the express lane (express.py has the protocol and the hook's side):
say where its spool is, take the requests hooks drop there, answer them."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import time

from hahooks import express
from hahooks import express_wait
from hahooks.express_wait import WAITING
from hahooks.errors import HahooksError
from hahooks.state import Desire, StateDir

log = logging.getLogger("hahooks.agent")

ANSWER_TTL = 60.0    # an answer no hook collected (its hook was killed) is removed after this


class Spool:
    def __init__(self, config_path: str, state: StateDir, cfg):
        self.config_path = os.path.abspath(config_path)
        self.state = state
        self.dir = os.path.join(state.path, express.REQUESTS)
        self.pointer: str | None = None
        # read again at the first request: the file may have changed since `cfg` was read
        self._cfg, self._cfg_key = cfg, None
        self.parser = None      # the daemons' commands' parser, built once (run_wiring)
        self._spent: set[str] = set()    # WIRING requests handed to a child already

    # -- where hooks find us --------------------------------------------------------------
    def publish(self) -> bool:
        """The requests dir and the pointer; False (the express lane stays off, hooks take
        the normal path) where either would not be private."""
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            rdir = express.run_dir()
            os.makedirs(rdir, mode=0o755, exist_ok=True)
            for path, others in ((self.dir, 0o077), (rdir, 0o022)):
                st = os.lstat(path)
                if not stat.S_ISDIR(st.st_mode) or not express.private(st, others):
                    log.warning("express lane off: %s is not a private dir", path,
                                extra={"event": "express_off", "path": path})
                    return False
            self._point()
            from hahooks import cli

            # ~20 ms of argparse once here, not in each child (docs/performance.md): the
            # daemons' commands and the waiting calls (express_wait.py)
            self.parser = cli.build_parser(("wiring", "transition"))
        except OSError as exc:
            log.warning("express lane off: %s", exc, extra={"event": "express_off"})
            return False
        return True

    def _point(self) -> None:
        name = os.path.join(express.run_dir(), express.pointer_name(os.stat(self.config_path)))
        if name == self.pointer:
            return
        tmp = f"{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{self.state.path}\n{self.config_path}\n")
        os.replace(tmp, name)
        old, self.pointer = self.pointer, name
        if old:
            self._unpoint(old)

    def refresh(self) -> None:
        """Point again when the config file is another inode now (an editor replaced it)."""
        if self.pointer:
            with contextlib.suppress(OSError):
                self._point()

    def withdraw(self) -> None:
        if self.pointer:
            self._unpoint(self.pointer)
            self.pointer = None

    def _unpoint(self, name: str) -> None:
        with contextlib.suppress(OSError):
            with open(name) as fh:
                ours = fh.readline().rstrip("\n") == self.state.path
            if ours:
                os.unlink(name)

    # -- the config as it is now -----------------------------------------------------------
    def _config_key(self):
        try:
            st = os.stat(self.config_path)
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def config(self):
        """Re-read when the file changed; None while it is invalid (requests are declined,
        so the hook's normal path reports the error)."""
        key = self._config_key()
        if key != self._cfg_key:
            from hahooks import config as config_mod

            self._cfg_key = key
            try:
                self._cfg = config_mod.load(self.config_path)
            except HahooksError as exc:
                log.warning("express lane: config %s", exc.one_line(),
                            extra={"event": "express_config"})
                self._cfg = None
        return self._cfg

    # -- requests --------------------------------------------------------------------------
    def take(self) -> tuple[list[tuple[str, Desire]], list[tuple[str, tuple]]]:
        """Every request there, oldest first, each under the desire lock: taken (its desire
        recorded), ignored (maintenance), declined, dropped (its hook is gone and it is
        stale), or, for a daemon's command (express.WIRING), to run: (request, desire) for
        those taken (answer() tells their hooks who converges them) and (request, (words,
        at, pid)) for those the agent forks run_wiring for; their requests stay until the
        child claims them (or the hook withdraws them)."""
        try:
            bases = sorted(n[:-4] for n in os.listdir(self.dir) if n.endswith(".req"))
        except OSError:
            return [], []
        self._spent &= set(bases)
        taken: list[tuple[str, Desire]] = []
        runs: list[tuple[str, tuple]] = []
        for base in bases:
            if base in self._spent:
                continue
            path = os.path.join(self.dir, base)
            with self.state.desire_lock():
                try:
                    with open(path + ".req") as fh:
                        text = fh.read()
                except FileNotFoundError:
                    continue                      # withdrawn by its hook
                desire, answer, run = self._decide(text)
                if run:
                    self._spent.add(base)
                    runs.append((path, run))
                    self._answer(path, [express.STARTED])
                    continue
                if answer:
                    self._answer(path, answer)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path + ".req")
            if desire:
                from hahooks.transition import log_desire

                log_desire(desire, True, hook=desire.pid, via="express")
                taken.append((path, desire))
        self._sweep()
        return taken, runs

    def _decide(self, text: str) -> tuple[Desire | None, list[str] | None, tuple | None]:
        """(desire recorded, answer, what run_wiring runs): called under the desire lock."""
        fields = text.rstrip("\n").split("\t")
        try:
            at, role, pid = float(fields[0]), fields[1], int(fields[2])
            config, devino, source = fields[3], fields[4], fields[5]
        except (IndexError, ValueError):
            log.warning("express lane: declined a malformed request %r", text[:200],
                        extra={"event": "express_declined"})
            return None, [express.DECLINED, "malformed request"], None
        cfg = self.config()
        st = self._cfg_key
        why = ""
        if role not in ("master", "slave", express.ARGV):
            why = f"unknown role {role!r}"
        elif role == express.ARGV and (fields[5] not in express.WIRING + WAITING
                                       or self.parser is None):
            why = f"not a command the lane runs: {fields[5]!r}"
        elif config != self.config_path or not st or devino != f"{st[0]}:{st[1]}":
            why = f"this agent serves {self.config_path}, not {config} ({devino})"
        elif cfg is None:
            why = "the config is invalid"
        elif os.path.abspath(cfg.node.state_dir) != self.state.path:
            why = f"the config's state dir is not {self.state.path} any more"
        age = time.time() - at
        if not _alive(pid):
            newest = self.state.desire()
            # a daemon's command is not run for a hook that is gone: the child would
            # answer nobody, and its decision is the hook's to make
            if why or role == express.ARGV or age > express.TAKE_WINDOW or \
                    (newest and newest.at > at):
                log.warning("express lane: dropped %s request of hook %d (gone; %.1fs old)",
                            role, pid, age, extra={"event": "express_dropped", "pid": pid})
                return None, None, None
        elif not why and age > express.TAKE_WINDOW:
            why = f"the request is {age:.1f}s old"
        if why:
            return None, [express.DECLINED, why], None
        if role == express.ARGV:
            return None, None, (fields[5:], at, pid)
        from hahooks import maintenance

        ignored = maintenance.ignores(cfg, role, source or "master/slave --detach")
        if ignored:
            return None, [express.IGNORED, ignored], None
        desire = self.state.record_desire_locked(role, source, at=at, pid=pid)
        return desire, [express.RECORDED, str(desire.seq)], None

    def run_wiring(self, path: str, words: list[str], at: float, pid: int) -> int:
        """In the child the agent forked for a daemon's command: `hahooks WORDS` as the CLI
        runs it, with the agent's parser and loaded library, stdout and stderr into
        <request>.out and .err for the hook. The desire is recorded only if the request is
        still there (StateDir.claim: unlinked under the desire lock, so a hook that gave
        up waiting and withdrew it records it itself, never both)."""
        import signal
        import sys

        from hahooks import cli

        for fd, suffix, name in ((1, ".out", "stdout"), (2, ".err", "stderr")):
            out = os.open(path + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                          0o600)
            os.dup2(out, fd)
            os.close(out)
            # new streams on them: the agent's own may be None (started with fd 1 closed)
            setattr(sys, name, open(fd, "w", closefd=False, errors="backslashreplace"))
        if words and words[0] in WAITING:
            # the hook follows us (.out and .err are there now) while this lock is held
            # (O_CLOEXEC: no command we run keeps it after we are gone), and forwards
            # SIGTERM and SIGINT to the PID
            run = os.open(path + ".run", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW |
                          os.O_CLOEXEC, 0o600)
            fcntl.flock(run, fcntl.LOCK_EX)
            signal.signal(signal.SIGINT, signal.default_int_handler)   # "interrupted", 1
            self._answer(path, [express.RUNNING, str(os.getpid())])

        def claim() -> tuple[float, int]:
            try:
                os.unlink(path + ".req")
            except FileNotFoundError:
                raise Withdrawn from None
            return at, pid

        def own_config(args) -> None:
            if args.config is None:     # the hook's default, which is ours (take checked)
                args.config = self.config_path
            elif os.path.abspath(args.config) != self.config_path:
                raise Withdrawn(f"-c {args.config} is not {self.config_path}")

        StateDir.claim = claim
        try:
            code = cli.main(words, parser=self.parser, check=own_config)
        except Withdrawn as exc:
            declined = str(exc)
            if declined:    # the answer first: a hook that finds its request gone reads it
                with self.state.desire_lock():
                    self._answer(path, [express.DECLINED, declined])
                    express.unlinked(path + ".req")
            log.info("express lane: %s", declined or "request withdrawn by its hook "
                     f"{pid} (it records the desire itself)",
                     extra={"event": "express_declined" if declined else "express_withdrawn",
                            "pid": pid})
            return 0
        finally:
            StateDir.claim = None
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
        self._answer(path, [express.DONE, str(code)])
        with self.state.desire_lock():      # never claimed (nothing recorded): ours to end
            express.unlinked(path + ".req")
        return code

    def answer(self, taken: list[tuple[str, Desire]], converger: int | None) -> None:
        for path, desire in taken:
            message = f"{desire.role} #{desire.seq} recorded; the agent's converger " + (
                f"{converger} took it" if converger else "will take it")
            self._answer(path, [express.TAKEN, str(desire.seq), message])

    def _answer(self, path: str, words: list[str]) -> None:
        tmp = f"{path}.{os.getpid()}.tmp"
        with contextlib.suppress(OSError):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write("\t".join(" ".join(w.split()) for w in words) + "\n")
            os.replace(tmp, path + ".ans")

    def _sweep(self) -> None:
        """Answers no hook collected (killed hooks) and temporaries, after ANSWER_TTL; not
        the files of a call whose child still runs (its .run locked: a long transition)."""
        now = time.time()
        with contextlib.suppress(OSError):
            for name in os.listdir(self.dir):
                if name.endswith((".ans", ".tmp", ".new", ".out", ".err", ".run")):
                    path = os.path.join(self.dir, name)
                    with contextlib.suppress(OSError):
                        if now - os.lstat(path).st_mtime > ANSWER_TTL and \
                                not _running(os.path.join(self.dir, name.split(".")[0])):
                            os.unlink(path)


class Withdrawn(BaseException):
    """run_wiring's child stops: its hook withdrew the request (no message), or the call
    is not for this agent (the message; declined). BaseException: cli.main's dispatcher
    must not turn it into an exit code."""


def _running(base: str) -> bool:
    """A waiting call's child still holds <base>.run (express_wait.py)."""
    try:
        fd = os.open(base + ".run", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return express_wait.locked(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
