"""The Pacemaker scenario: the stack as ocf:hahooks:hahooks under a real two- (or three-)
node Debian corosync + pacemaker cluster in sandbox nodes (sandbox/pacemaker.py), on a disk
every node sees, each through its own loop device as each machine has its own block device
for a shared LUN (shared storage: only fencing keeps it off two nodes), with
stonith-enabled=true through
the sandbox fence agent (drill/fence_agent.py -> the fence desk powers a node off). The
cluster is configured the way docs/wiring.md tells a user: each node's [node] fence names
the agent, `render --only pacemaker-cib` makes the CIB, `crm_verify -L` must be silent.

Steps: start (on nodea), `crm_resource --move` to nodeb and back, `--ban` nodea, node crash
(nodea's PID namespace killed while it holds the stack: nodeb fences it and takes over),
rejoin, move back, then (two nodes) a network partition (both sides race to fence; one
survives with the stack), rejoin. With three nodes each node's peer is the next one round
the ring, and the crashed node's stack lands on either survivor. The invariant (never mounted on two nodes) is polled all along; each step's time
is measured from the command (or the crash) until the mount is on the expected node only.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time

from hahooks import waits
from hahooks.lab.drill.fence import FenceDesk
from hahooks.lab.sandbox import Lab, hoststate
from hahooks.lab.sandbox import pacemaker as pm

NODES = ("nodea", "nodeb")                  # the default two-node cluster
ALL_NODES = ("nodea", "nodeb", "nodec")
MOUNTPOINT = "/run/hahooks-data"        # under the node's private /run
CONFIG = "/etc/hahooks.toml"            # in the node's private /etc
RSC = "hahooks"
POLL = 0.05


def hahooks_config(name: str, peer: str, device: str, desk: str) -> str:
    """Node `name`'s hahooks config: the stack, and [node] fence as a fence-agents agent
    (the sandbox one), from which `render --only pacemaker-cib` makes the stonith device."""
    return (f'[node]\nname = "{name}"\npeer = "{peer}"\nstate_dir = "/run/hahooks"\n'
            'log_file = "/var/log/hahooks.jsonl"\nsyslog = false\n'
            f'fence = ["{pm.STONITH_DIR}/{pm.FENCE_AGENT}"]\n\n'
            f'[node.fence_options]\ndesk = "{desk}"\n\n'
            f'[[resource]]\nname = "data"\nkind = "filesystem"\ndevice = "{device}"\n'
            f'mountpoint = "{MOUNTPOINT}"\nfstype = "ext4"\ntimeout = "30s"\n')


def rendered(node_dir: str) -> str:
    """`hahooks render --only pacemaker-cib` of a node's config (read where its /etc
    overlay keeps it), with the paths the node sees."""
    from hahooks import config
    from hahooks.wiring import pcmk_cib

    cfg = config.load(os.path.join(node_dir, "etc", "upper", os.path.basename(CONFIG)))
    return pcmk_cib.configuration(cfg, CONFIG)


def stonith_parts(configuration: str) -> list[tuple[str, str]]:
    """(cibadmin scope, XML) of the stonith device and its constraint in a rendering."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(configuration)
    return [("resources", ET.tostring(e, encoding="unicode"))
            for e in root.iter("primitive") if e.get("class") == "stonith"] + \
        [("constraints", ET.tostring(e, encoding="unicode"))
         for e in root.iter("rsc_location")]


@dataclasses.dataclass
class Figure:
    step: str
    seconds: float
    on: str


class PacemakerRun:
    def __init__(self, workdir: str, prefix: str = "pcmk", subnet: str = "10.99.0",
                 progress=None, nodes: int = 2):
        if nodes not in (2, 3):
            raise ValueError(f"a sandbox Pacemaker cluster has 2 or 3 nodes, not {nodes}")
        self.workdir, self.prefix, self.subnet = workdir, prefix, subnet
        self.names = ALL_NODES[:nodes]
        self.progress = progress or (lambda text: None)
        self.lab: Lab | None = None
        self.pcmk: dict[str, pm.PacemakerNode] = {}
        self.violations: list[str] = []
        self.figures: list[Figure] = []
        self.events: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        self.desk: FenceDesk | None = None

    # -- the cluster -------------------------------------------------------------------
    def ip(self, name: str) -> str:
        return f"{self.subnet}.{21 + self.names.index(name)}"

    def peer(self, name: str) -> str:
        """The node `name`'s [node] peer and fence target: the next one round the ring
        (two nodes: each other), so every node has exactly one stonith device."""
        return self.names[(self.names.index(name) + 1) % len(self.names)]

    def others(self, name: str) -> tuple[str, ...]:
        return tuple(n for n in self.names if n != name)

    def start(self) -> None:
        self.lab = Lab(prefix=self.prefix, workdir=self.workdir).start()
        self.net = self.lab.network(f"{self.subnet}.0/24")
        # One shared disk, reached by each node through its own block device, as each of
        # two machines has its own /dev/sdX for one LUN (Lab.loop_attach says why).
        first = self.lab.loop_image("shared", 64, fs="ext4")
        image = hoststate.loop_backing(first)
        self.devices = {self.names[0]: first,
                        **{n: self.lab.loop_attach(image) for n in self.names[1:]}}
        self.desk = FenceDesk(os.path.join(self.workdir, "fence"), self.names, self._fenced,
                              self.alive, lambda node, text: self.event(text)).start()
        self.conf = pm.corosync_conf("hahooks", [(i + 1, n, self.ip(n))
                                                 for i, n in enumerate(self.names)])
        for name in self.names:
            self.boot(name)
        self.wait_online(self.names, 90)
        self.configure()
        self._watch = threading.Thread(target=self._invariants, daemon=True)
        self._watch.start()

    def boot(self, name: str) -> None:
        node = self.lab.node(name, ip=self.ip(name), net=self.net, stubs=True,
                             binds=pm.binds(os.path.join(self.workdir, "nodes", name)))
        node.write_file(CONFIG, hahooks_config(name, self.peer(name), self.devices[name],
                                               self.desk.desk), 0o600)
        p = pm.PacemakerNode(node, self.conf)
        p.prepare()
        p.start()
        self.pcmk[name] = p
        self.event(f"{name}: corosync and pacemakerd started")

    def alive(self, name: str) -> bool:
        node = self.lab.nodes.get(name) if self.lab else None
        return bool(node and node.alive)

    def run(self, name: str, *argv: str, check: bool = True):
        return self.lab.nodes[name].run(list(argv), check=check, timeout=60)

    def configure(self) -> None:
        """What docs/wiring.md tells a user: load nodea's rendered configuration, add
        the other nodes' stonith devices (each node's [node] fence fences its peer), then
        `crm_verify -L` must have nothing to say."""
        dc = self.names[0]
        first = rendered(self.lab.nodes[dc].dir)
        extra = [part for n in self.names[1:]
                 for part in stonith_parts(rendered(self.lab.nodes[n].dir))]
        want = [f'id="{RSC}"'] + [f'id="hahooks-fence-{n}"' for n in self.names]

        def loaded() -> bool:
            text = self.run(dc, "cibadmin", "--query", "--scope", "resources",
                            check=False).stdout
            return all(w in text for w in want)

        # Right after the nodes join, the DC's CIB sync can overwrite a change made on the
        # other side of it: load once the partition has quorum, and again if it was lost.
        waits.wait_for(lambda: "partition with quorum" in self.run(
            dc, "crm_mon", "-1", check=False).stdout, 60, "a DC with quorum")
        for attempt in range(3):
            self.run(dc, "cibadmin", "--replace", "--scope", "configuration", "--xml-text",
                     first)
            for scope, xml in extra:
                self.run(dc, "cibadmin", "--create", "--scope", scope, "--xml-text", xml,
                         check=False)         # exists already after a lost-then-kept try
            try:
                waits.wait_for(loaded, 10, "the rendered configuration in the CIB")
                time.sleep(1)
                if loaded():
                    break
            except Exception:
                if attempt == 2:
                    raise
        verify = self.run(dc, "crm_verify", "-L", "-V", check=False)
        self.verify_output = (verify.stdout + verify.stderr).strip()
        if verify.returncode or self.verify_output:
            self.violations.append(f"crm_verify -L: exit {verify.returncode}: "
                                   f"{self.verify_output}")
        self.event("configured from `hahooks render --only pacemaker-cib`; crm_verify -L "
                   + ("clean" if not self.verify_output else "NOT clean"))
        self.run(dc, "crm_resource", "--move", "-r", RSC, "-N", dc)

    def wait_online(self, names, timeout: float) -> None:
        want = "Online: [ " + " ".join(names) + " ]"
        alive = next(n for n in names if self.alive(n))
        waits.wait_for(lambda: want in self.run(alive, "crm_mon", "-1", check=False).stdout,
                       timeout, f"{' and '.join(names)} online in Pacemaker")

    # -- where the stack is --------------------------------------------------------------
    def holders(self) -> list[str]:
        return [n for n in self.names if self.alive(n) and
                any(mp == MOUNTPOINT for _, mp, _ in self.lab.nodes[n].mounts())]

    def _invariants(self) -> None:
        while not self._stop.is_set():
            where = self.holders()
            if len(where) > 1:
                self.violations.append(f"{time.strftime('%H:%M:%S')} mounted on "
                                       f"{' and '.join(where)}")
            self._stop.wait(POLL)

    def wait_on(self, name, step: str, since: float, timeout: float = 120) -> Figure:
        """Until the stack is mounted on exactly one node: `name`, or one of the tuple."""
        among = (name,) if isinstance(name, str) else tuple(name)

        def landed() -> str | None:        # one look: the stack may move between two
            where = self.holders()
            return where[0] if len(where) == 1 and where[0] in among else None
        name = waits.wait_for(landed, timeout, f"the stack on {' or '.join(among)} only "
                              f"({step})")
        fig = Figure(step, round(time.monotonic() - since, 2), name)
        self.figures.append(fig)
        self.event(f"{step}: the stack answers on {name} after {fig.seconds:.2f}s")
        return fig

    def event(self, text: str) -> None:
        self.events.append((time.time(), text))
        self.progress(text)

    # -- the steps ----------------------------------------------------------------------
    def move(self, to: str) -> Figure:
        return self._constrain(to, f"crm_resource --move to {to}", "--move", to)

    def ban(self, name: str) -> Figure:
        return self._constrain(self.others(name), f"crm_resource --ban {name}", "--ban",
                               name)

    def _constrain(self, to, step: str, flag: str, node: str) -> Figure:
        """A location constraint by crm_resource, the time until the stack answers on `to`
        (a node, or any of a tuple), then the constraint cleared (as an admin does after a
        move)."""
        t0 = time.monotonic()
        where = next(n for n in self.names if n != node and self.alive(n))
        self.run(where, "crm_resource", flag, "-r", RSC, "-N", node)
        fig = self.wait_on(to, step, t0)
        self.run(where, "crm_resource", "--clear", "-r", RSC)
        return fig

    def crash(self, name: str) -> Figure:
        """Kill `name`'s PID namespace; a survivor fences it and the stack lands on one of
        the others (two nodes: the peer)."""
        others = tuple(n for n in self.others(name) if self.alive(n))
        t0 = time.monotonic()
        self.event(f"{name}: crashed (its PID namespace killed)")
        self.lab.nodes[name].crash(keep_net=False)
        self.pcmk[name].forget()
        return self.wait_on(others, f"crash of {name} -> fenced -> answering on "
                            f"{' or '.join(others)}", t0)

    def partition(self, name: str) -> tuple[str, Figure]:
        """Cut `name`'s network (corosync sees a partition; the fence desk, like a BMC,
        stays reachable): each side tries to fence the other, one wins, and the stack must
        end on the survivor only — the shared disk never mounted on both meanwhile."""
        if len(self.names) != 2:
            raise ValueError("partition(): the two-node race (with three nodes the majority "
                             "simply fences the cut-off node)")
        t0 = time.monotonic()
        fences = len(self.fenced())
        self.event(f"{name}: network cut (a partition; fencing stays reachable)")
        self.net.set_link(name, False)
        # the loser is powered off before the desk records its answer: wait for both
        waits.wait_for(lambda: sum(self.alive(n) for n in self.names) == 1 and
                       len(self.holders()) == 1 and len(self.fenced()) > fences, 180,
                       "one survivor holding the stack, the other fenced")
        survivor = next(n for n in self.names if self.alive(n))
        if survivor == name:
            self.net.set_link(name, True)
        fig = self.wait_on(survivor, f"partition of {name} -> {survivor} survives", t0)
        return survivor, fig

    def _fenced(self, target: str, why: str) -> None:
        """The fence desk powers a node off (already off after a crash: nothing to do)."""
        if self.alive(target):
            self.lab.nodes[target].crash()
            self.pcmk[target].forget()

    def rejoin(self, name: str) -> float:
        t0 = time.monotonic()
        self.boot(name)
        self.wait_online(self.names, 120)
        took = round(time.monotonic() - t0, 2)
        self.event(f"{name}: rejoined after {took:.2f}s")
        return took

    def fenced(self) -> list[dict]:
        return [h for h in (self.desk.handled if self.desk else []) if h["ok"]]

    # -- teardown ------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        if self._watch:
            self._watch.join(timeout=5)
        try:
            for name, p in self.pcmk.items():
                if self.alive(name):
                    try:
                        p.stop()
                    except Exception as exc:
                        self.event(f"{name}: orderly stop failed ({exc}); crashing it")
        finally:
            if self.desk:
                self.desk.stop()
            if self.lab:
                self.lab.cleanup()


# -- `hahooks drill --scenario pacemaker` ----------------------------------------------------
NAME = "pacemaker"
TITLE = "the stack under a real corosync + pacemaker cluster, stonith on (issue 21)"
TOOLS = ("ip", "unshare", "nsenter", "losetup", "mkfs.ext4", "corosync", "pacemakerd",
         "crm_resource", "cibadmin", "crm_mon", "stonith_admin")


def drill(workdir: str | None = None, keep: bool = False, progress=None,
          nodes: int = 2) -> tuple[bool, str]:
    """Run the scenario on `nodes` (2 or 3) nodes; (passed, report text)."""
    import tempfile

    workdir = os.path.abspath(workdir) if workdir else \
        tempfile.mkdtemp(prefix="hahooks-drill-pacemaker-", dir="/var/tmp")
    say = (lambda text: print(text, file=progress, flush=True)) if progress else None
    run = PacemakerRun(os.path.join(workdir, "lab"), prefix=f"hhpm{os.getpid() % 10000}",
                       progress=say, nodes=nodes)
    problems: list[str] = []
    try:
        run.start()
        run.wait_on("nodea", "start", time.monotonic())
        run.move("nodeb")
        run.move("nodea")
        run.ban("nodea")
        run.move("nodea")
        run.crash("nodea")
        if not run.fenced():
            problems.append("nodea crashed but nobody fenced it")
        run.rejoin("nodea")
        run.move("nodea")
        if nodes == 2:
            survivor, _ = run.partition("nodea")
            run.rejoin(run.peer(survivor))
    except Exception as exc:     # a failed step is the verdict, not a traceback
        problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        if keep:
            run.event(f"kept: {workdir} (hahooks-sandbox; crm_mon -1 inside a node)")
            run._stop.set()
        else:
            run.stop()
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)
    problems += [f"invariant: {v}" for v in run.violations]
    start = run.events[0][0] if run.events else time.time()
    lines = [f"hahooks drill: scenario {NAME} ({nodes} nodes)", "", "timeline:"]
    lines += [f"  +{at - start:7.2f}s  {text}" for at, text in run.events]
    lines += ["", "figures:"] + [f"  {f.step}: {f.seconds:.2f}s (on {f.on})"
                                  for f in run.figures]
    lines += ["", "problems:" if problems else "invariant log: empty"]
    lines += [f"  {p}" for p in problems]
    lines.append("PASS" if not problems else "FAIL")
    return not problems, "\n".join(lines) + "\n"
