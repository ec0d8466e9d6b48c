"""Two cluster nodes on hahooks.lab.sandbox for the real-daemon pair tests (Heartbeat,
keepalived, ucarp), with the scenes those tests share: bring up, crash over, come back,
hand over. Each node: network, mount, UTS and PID namespaces (sandbox.Node), its own
hahooks config and state dir, this checkout's `hahooks` as /usr/local/sbin/hahooks (where
the shipped sh wrappers look), optional stubs over reboot/pkill for Heartbeat; optionally
an ext4 image on a loop device both nodes see (shared storage)."""
from __future__ import annotations

import os
import subprocess

from conftest import install_hahooks_command
from hahooks import waits
from hahooks.lab.sandbox import Lab
from pair_support import (Figures, hook_calls, holder, node_config, note, record_time,
                          steps, wait_event)


class PairLab:
    def __init__(self, prefix: str, subnet: str, *, shared_fs: bool = False):
        self.lab = Lab(prefix, keep=bool(os.environ.get("HAHOOKS_LAB_KEEP")))
        self.subnet = subnet
        self.shared_fs = shared_fs
        self.root = self.lab.workdir
        self.shared = os.path.join(self.root, "shared")
        self.mountpoint = os.path.join(self.root, "mnt") if shared_fs else None
        self.loop: str | None = None
        self.nodes: dict[str, dict] = {}

    # -- set-up ------------------------------------------------------------------------
    def __enter__(self) -> "PairLab":
        self.lab.__enter__()
        try:
            os.makedirs(self.shared, exist_ok=True)
            self.hahooks = install_hahooks_command(os.path.join(self.root, "bin"))
            self.net = self.lab.network(self.subnet)
            if self.shared_fs:
                self.loop = self.lab.loop_image("shared", 64, fs="ext4")
        except BaseException as exc:
            self.lab.__exit__(type(exc), exc, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:      # a failure: keep the logs (the next run purges them)
            self.lab.keep = True
            print(f"pair lab files kept in {self.root}")
        self.lab.__exit__(*exc)

    def add_node(self, name: str, ip: str, *, wiring: str = "", lease: bool = True,
                 binds: dict[str, str] | None = None, heartbeat: bool = False,
                 config_path: str | None = None) -> None:
        """Boot a node at `ip` (the sandbox adds it with `brd +`: Heartbeat's bcast needs
        it) with its hahooks config (`config_path`, default <workdir>/hahooks.toml)."""
        work = self.workdir(name)
        os.makedirs(work, exist_ok=True)
        config = config_path or os.path.join(work, "hahooks.toml")
        node_config(config, name, work, self.shared, wiring=wiring, lease=lease,
                    filesystem=(self.loop, self.mountpoint) if self.loop else None)
        args = dict(ip=ip, net=self.net, stubs=heartbeat, heartbeat=heartbeat,
                    binds={**(binds or {}), "/usr/local/sbin": os.path.dirname(self.hahooks)})
        self.nodes[name] = {"config": config, "args": args}
        self.lab.node(name, **args)

    # -- inside a node -------------------------------------------------------------------
    def workdir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def node(self, name: str):
        return self.lab.nodes[name]

    def env(self, name: str) -> dict[str, str]:
        return self.lab.node_env(name, HAHOOKS_CONFIG=self.nodes[name]["config"])

    def run(self, name: str, argv: list[str], check: bool = False):
        return self.node(name).run(argv, check=check, env=self.env(name))

    def start_daemon(self, name: str, argv: list[str], log: str):
        """Start a daemon inside the node (its output in <workdir>/<log>.log)."""
        with open(os.path.join(self.workdir(name), f"{log}.log"), "ab") as out:
            return self.node(name).popen(argv, env=self.env(name), cwd="/",
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)

    def node_pids_matching(self, name: str, fragment: str) -> list[int]:
        found = []
        for pid in self.node(name).pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if fragment in cmdline:
                found.append(pid)
        return found

    def signal_pidfile(self, name: str, pidfile: str, sig: int) -> None:
        """Signal the process whose pid (in the node's PID namespace) is in the node's
        `pidfile`."""
        pid = self.run(name, ["cat", pidfile], check=True).stdout.strip()
        self.run(name, ["kill", f"-{int(sig)}", pid], check=True)

    # -- node life -------------------------------------------------------------------------
    def crash(self, name: str) -> None:
        """Pull the plug: every process of the node SIGKILLed at once; its mounts, locks
        and network namespace (with any VIP) go with it."""
        self.node(name).crash()

    def restart_node(self, name: str) -> None:
        """Boot the node again after a crash (a fresh /run and network namespace)."""
        self.lab.node(name, **self.nodes[name]["args"])

    # -- the scenes the pair tests share ----------------------------------------------
    def bring_up(self, start, timeout: float = 30) -> float:
        """Start nodea's and nodeb's daemon (`start(name)`); nodea, the preferred node,
        ends up holding the stack. Returns the start time."""
        t0 = note(self.shared, "test", "start")
        for name in ("nodea", "nodeb"):
            start(name)
        first = wait_event(self.shared, "nodea", "data-start", t0, timeout)
        self.wait_converged(["nodea"], "master")
        self.wait_converged(["nodeb"], "slave")
        assert self.holder() == "nodea" and self.mounted("nodea") and not self.mounted("nodeb")
        return first.t - t0

    def crash_over(self, fig: "Figures", caller: str, daemon_event: str, *,
                   kill_first=None, last_word: str = "", state: str = "") -> float:
        """Pull nodea's plug (after `kill_first()`, if given): nodeb must take the stack.
        Records the daemon's detection (up to nodeb's first `caller` call) and our
        transition. Returns the crash time."""
        t_crash = note(self.shared, "nodea", "crash")
        if kill_first:
            kill_first()
        self.crash("nodea")
        started = wait_event(self.shared, "nodeb", "data-start", t_crash, 30)
        # the call that made nodeb master: its last one before the stack was held (a
        # start-up race of the daemon may have left an earlier, superseded one)
        called = self.last_call("nodeb", caller, after=t_crash, before=started.t,
                                last_word=last_word, state=state)
        fig.add(f"crash of nodea -> {daemon_event} on nodeb (detection)", called - t_crash)
        fig.add(f"{daemon_event} -> stack held on nodeb (hahooks transition)",
                started.t - called)
        fig.add("crash -> stack held on nodeb (failover)", started.t - t_crash)
        self.wait_converged(["nodeb"], "master")
        fig.note(f"nodeb's steps: {steps(self.workdir('nodeb'), t_crash)}")
        assert self.holder() == "nodeb" and self.mounted("nodeb")
        return t_crash

    def come_back(self, start, fig: "Figures", what: str, timeout: float = 40) -> float:
        """Boot nodea again and start its daemon: it takes the stack back from nodeb.
        Returns the restart time."""
        self.restart_node("nodea")
        t_back = note(self.shared, "nodea", "restart")
        start("nodea")
        back = wait_event(self.shared, "nodea", "data-start", t_back, timeout)
        self.wait_converged(["nodea"], "master")
        self.wait_converged(["nodeb"], "slave")
        fig.add(f"restart of nodea -> stack held on nodea ({what})", back.t - t_back)
        assert self.holder() == "nodea" and self.mounted("nodea") and not self.mounted("nodeb")
        return t_back

    def hand_over(self, fig: "Figures", what: str, trigger) -> float:
        """A graceful handover from nodea to nodeb started by `trigger()`. Returns its
        start time."""
        t = note(self.shared, "nodea", f"graceful: {what}")
        trigger()
        handed = wait_event(self.shared, "nodeb", "data-start", t, 30)
        fig.add(f"{what} -> stack held on nodeb (graceful)", handed.t - t)
        self.wait_converged(["nodea"], "slave")
        self.wait_converged(["nodeb"], "master")
        fig.note(f"steps: nodea {steps(self.workdir('nodea'), t)}; "
                 f"nodeb {steps(self.workdir('nodeb'), t)}")
        assert self.holder() == "nodeb" and self.mounted("nodeb") and not self.mounted("nodea")
        return t

    # -- observations ---------------------------------------------------------------
    def holder(self) -> str:
        return holder(self.shared)

    def mounted(self, name: str, mountpoint: str | None = None) -> bool:
        """Whether the node's own mount namespace has the shared filesystem (or
        `mountpoint`) mounted."""
        want = mountpoint or self.mountpoint
        return any(mp == want for _, mp, _ in self.node(name).mounts())

    def vips(self, vip: str) -> set[str]:
        out = set()
        for name in self.nodes:
            if not self.node(name).alive:
                continue
            text = self.run(name, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
            if f"inet {vip}/" in text:
                out.add(name)
        return out

    def calls_between(self, name: str, caller: str, after: float,
                      before: float = float("inf"), last_word: str = "",
                      state: str = "") -> list[float]:
        """Times of the node's hook calls by `caller` in (after, before) whose argv ends
        with `last_word` / contains `state`, if given."""
        return [record_time(rec) for rec in hook_calls(self.workdir(name))
                if rec["caller"] == caller and after < record_time(rec) < before and
                (not last_word or rec["argv"][-1:] == [last_word]) and
                (not state or state in rec["argv"])]

    def first_call(self, name: str, caller: str, after: float, **match) -> float:
        found = self.calls_between(name, caller, after, **match)
        assert found, f"no {caller} call {match} on {name} after {after}"
        return found[0]

    def last_call(self, name: str, caller: str, after: float, before: float,
                  **match) -> float:
        found = self.calls_between(name, caller, after, before, **match)
        assert found, f"no {caller} call {match} on {name} in ({after}, {before})"
        return found[-1]

    def wait_converged(self, names: list[str], role: str, timeout: float = 60) -> None:
        from hahooks.state import StateDir

        for name in names:
            state = StateDir(os.path.join(self.workdir(name), "state"))

            def done(state=state):
                desire, result = state.desire(), state.done()
                if desire is None:          # never asked anything: holds nothing
                    return role == "slave"
                return result and desire.role == role and \
                    result.get("seq", 0) >= desire.seq and result.get("role") == role
            waits.wait_for(done, timeout, f"{name} to converge to {role}")
            result = state.done()
            assert result is None or result["exit_code"] == 0, result

    def clear_stub_calls(self) -> None:
        for name in self.nodes:
            open(self.node(name).stub_log, "w").close()

    def stub_calls(self) -> list[str]:
        return [c for name in self.nodes for c in self.node(name).stub_calls()]
