"""`service`: start and stop a daemon through its own manager, or explicit argv.

Managers and their command forms:
  rc.d     SCRIPT_DIR/NAME onestart|onestop|onestatus (FreeBSD; `one` works without
           NAME_enable in rc.conf, which an HA-managed service must not have)
  service  `service NAME start|stop|status` (`onestart|...` on FreeBSD)
  systemd  `systemctl start|stop NAME`, status from `systemctl is-active NAME`
  init.d   SCRIPT_DIR/NAME start|stop|status (LSB)
  command  the `start`, `stop` and `status` argv given in the config
  auto     rc.d on FreeBSD; systemd where it runs, else init.d on Linux; command when
           `start` is given

Status: the pidfile if one is configured (the pid is alive and not a zombie), else the
manager's status command (exit 0 = running; LSB/rc.d/OCF "not running" codes = released;
anything else = broken). After a start, acquire waits (bounded) until status says held.
A stop must leave no process of the service behind: the pidfile's process and its
descendants, and processes whose title contains `process_match`, are collected before
the stop and must exit within `exit_timeout`; otherwise the release fails and says which
pids are left (they are not killed: the layers below stay as they are).
"""
from __future__ import annotations

import errno
import logging
import os

from hahooks import procs, safepath, schema
from hahooks.errors import Refused
from hahooks.kinds.base import Observation, Resource, State, broken, held, released
from hahooks.kinds.command import _codes
from hahooks.schema import Invalid

log = logging.getLogger("hahooks.kinds.service")

MANAGERS = ("auto", "rc.d", "service", "systemd", "init.d", "command")
SCRIPT_DIRS = {"rc.d": ("/usr/local/etc/rc.d", "/etc/rc.d"), "init.d": ("/etc/init.d",)}


class Service(Resource):
    KIND = "service"
    PARAMS = {
        "service": schema.Name(None, "the service's name for its manager (rc.d script, unit)"),
        "manager": schema.Str("auto", "how to start and stop it", choices=MANAGERS),
        "script_dir": schema.Path(None, "where rc.d / init.d scripts live (default "
                                  "/usr/local/etc/rc.d then /etc/rc.d; /etc/init.d)"),
        "start": schema.Argv(None, "argv that starts it (manager = \"command\")"),
        "stop": schema.Argv(None, "argv that stops it (manager = \"command\")"),
        "status": schema.Argv(None, "argv; exit 0 = running (manager = \"command\")"),
        "stopped_codes": schema.Field(_codes, [1, 2, 3, 7], "status exit codes meaning "
                                      "not running (LSB 1-3, rc.d 1, OCF 7)", "[integers]"),
        "pidfile": schema.Path(None, "pidfile the daemon writes: status reads it (a live, "
                               "non-zombie process) instead of running a command; read with "
                               "O_NOFOLLOW, and refused (exit 4) if a directory on its way, "
                               "or a symlink, could be replaced by another user"),
        "process_match": schema.Str(None, "part of the process title of every process of the "
                                    "service; none may be left after a stop"),
        "start_timeout": schema.Duration("30s", "how long a start may take to show as running"),
        "exit_timeout": schema.Duration("30s", "how long its processes may take to exit "
                                        "after the stop command"),
    }

    @classmethod
    def validate(cls, spec) -> None:
        p = spec.params
        manager = p["manager"]
        explicit = [k for k in ("start", "stop", "status") if p[k]]
        if manager == "command" or (manager == "auto" and explicit):
            if not (p["start"] and p["stop"]):
                raise Invalid("explicit commands need both 'start' and 'stop' (argv lists)")
            if not (p["status"] or p["pidfile"]):
                raise Invalid("needs 'status' (an argv) or 'pidfile' to tell whether it runs")
        else:
            if explicit:
                raise Invalid(f"{', '.join(explicit)}: only with manager = \"command\" "
                              f"(manager is {manager!r})")
            if not p["service"]:
                raise Invalid(f"manager {manager!r} needs 'service' (the service's name)")

    @classmethod
    def paths(cls, spec) -> list[tuple[str, str, dict]]:
        # the pidfile may be the daemon's own (in its run dir): it is only read, O_NOFOLLOW
        pidfile = spec.params["pidfile"]
        return [("pidfile", pidfile, {"final_replaceable": True})] if pidfile else []

    # -- command forms -----------------------------------------------------
    @property
    def manager(self) -> str:
        m = self.p["manager"]
        if m != "auto":
            return m
        if self.p["start"]:
            return "command"
        if self.ctx.freebsd:
            return "rc.d"
        return "systemd" if os.path.isdir("/run/systemd/system") else "init.d"

    def _script(self) -> str:
        name = self.p["service"]
        dirs = (self.p["script_dir"],) if self.p["script_dir"] else SCRIPT_DIRS[self.manager]
        for d in dirs:
            if os.path.exists(os.path.join(d, name)):
                return os.path.join(d, name)
        return os.path.join(dirs[0], name)

    def argv(self, action: str) -> list[str]:
        """action: start | stop | status"""
        m, name = self.manager, self.p["service"]
        if m == "command":
            return self.p[action]
        if m == "systemd":
            return ["systemctl", "is-active" if action == "status" else action, name]
        one = "one" if self.ctx.freebsd or m == "rc.d" else ""
        if m == "service":
            return ["service", name, one + action]
        return [self._script(), one + action]

    # -- the shape ---------------------------------------------------------
    def status(self) -> Observation:
        if self.p["pidfile"]:
            return self._pidfile_status()
        argv = self.argv("status")
        if argv is None:
            raise Refused("no status command")
        r = self.ctx.run(argv, readonly=True, check=False)
        said = (r.stdout.strip() or r.stderr.strip()).splitlines()
        said = said[-1] if said else f"exit {r.exit_code}"
        if self.manager == "systemd":
            state = r.stdout.strip()
            if state in ("active", "reloading"):
                return held(f"unit {state}")
            if state in ("inactive", "failed"):
                return released(f"unit {state}")
            return broken(f"unit {state or said}")
        if r.exit_code == 0:
            return held(f"{os.path.basename(argv[0])}: {said}")
        if r.exit_code in self.p["stopped_codes"]:
            return released(f"{os.path.basename(argv[0])}: {said}")
        return broken(f"{' '.join(argv)} exited {r.exit_code}: {said}")

    def _pidfile_status(self) -> Observation:
        path = self.p["pidfile"]
        pid = _pid_in(path)
        if pid is None or not procs.pid_running(pid):
            return released(f"no running process in {path}")
        match = self.p["process_match"]
        if match and match not in procs.title_of_pid(pid):
            return released(f"pid {pid} from {path} is not {match!r} (stale pidfile)")
        return held(f"pid {pid} running")

    def acquire(self) -> None:
        self.ctx.run(self.argv("start"), readonly=False, what=f"start {self.name}")
        self.ctx.wait_for(lambda: self.status().state is State.HELD, f"{self.name} to run",
                          timeout=self.p["start_timeout"])

    def release(self) -> None:
        before = self._processes()
        self.ctx.run(self.argv("stop"), readonly=False, what=f"stop {self.name}")
        if self.ctx.dry_run or not before:
            return
        left = procs.wait_gone(before, min(self.p["exit_timeout"], self.ctx.deadline.remaining()))
        if left:
            raise Refused(f"stop of {self.name} left {len(left)} process(es) behind: "
                          + ", ".join(f"pid {p.pid} ({procs.title(p)[:60]})" for p in left))

    def _processes(self) -> list:
        """Everything the stop must end: the pidfile's process tree, title matches."""
        found = {}
        main = _from_pidfile(self.p["pidfile"]) if self.p["pidfile"] else None
        if main is not None:
            found[main.pid] = main
            try:
                found.update((c.pid, c) for c in main.children(recursive=True))
            except Exception:
                pass
        if self.p["process_match"]:
            found.update((p.pid, p) for p in procs.find_by_title(self.p["process_match"]))
        protected = procs.protected_pids()
        return [p for pid, p in found.items() if pid not in protected]


def _pid_in(path: str) -> int | None:
    """The pid a pidfile names; safepath.UnsafePath if another user could have pointed
    the path elsewhere (a planted symlink naming a live root process would make a stopped
    service look running)."""
    resolved = safepath.verify(path, final_replaceable=True).resolved
    try:
        fd = safepath.open_nofollow(resolved)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise safepath.UnsafePath(f"{path}: {resolved} became a symlink in a directory "
                                      "another user can write; not reading it") from None
        return None
    try:
        with os.fdopen(fd, encoding="ascii", errors="replace") as fh:
            return int(fh.read(64).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _from_pidfile(path: str):
    """The live process named by a pidfile, or None (absent, garbage, gone, zombie)."""
    pid = _pid_in(path)
    if pid is None or not procs.pid_running(pid):
        return None
    import psutil  # local: the hook's start-up path stays free of psutil (procs.py)

    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


RESOURCE = Service
