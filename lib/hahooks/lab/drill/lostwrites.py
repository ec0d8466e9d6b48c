"""No lost writes: a client inserts rows into MariaDB without pause (autocommit, one row
per statement, each acknowledged or not), through a graceful failover and through a crash
of the master; after each, every acknowledged row must be on the new master, and the
storage must check clean (zpool scrub online; for ext4 the stack is released for a moment
and `e2fsck -fn` reads the image offline, since fsck of a mounted filesystem is no proof).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

from hahooks import waits
from hahooks.lab.drill import checks, stacks
from hahooks.lab.drill.verdict import Verdict
from hahooks.lab.drill.writer import read_acks

ROWS_BETWEEN = 40          # acknowledged rows to see on a master before failing it
WRITE_WAIT = 120.0


@dataclasses.dataclass
class Phase:
    name: str
    acked: int             # acknowledged rows so far (all phases)
    missing: int           # acknowledged rows not on the new master
    outage: float          # seconds from the last ack on the old master to the first on the new
    clean: bool


@dataclasses.dataclass
class LostWritesResult:
    scenario: str
    phases: list[Phase]
    in_doubt: int
    verdict: Verdict


class Writer:
    """The client process in the sandbox's client namespace; pause() and start() again
    continue with fresh row numbers and the same list of acknowledged rows."""

    def __init__(self, cluster, acked: str):
        self.cluster, self.acked, self.stop_file = cluster, acked, acked + ".stop"
        self.proc = None
        for p in (self.acked, self.stop_file):
            if os.path.exists(p):
                os.unlink(p)

    def start(self) -> "Writer":
        if os.path.exists(self.stop_file):
            os.unlink(self.stop_file)
        hosts = ",".join(self.cluster.ips[n] for n in self.cluster.nodes)
        first = self.cluster.next_row(1_000_000)
        self.proc = self.cluster.popen("client", [
            sys.executable, "-m", "hahooks.lab.drill.writer", "--hosts", hosts, "--acked",
            self.acked, "--stop", self.stop_file, "--first", str(first), "--max-seconds",
            "900", "--who", "lostwrites"])
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def acks(self):
        return read_acks(self.acked)

    def wait_rows_on(self, node: str, n: int) -> None:
        ip = self.cluster.ips[node]
        base = sum(1 for _, host, _ in self.acks() if host == ip)
        waits.wait_for(lambda: sum(1 for _, host, _ in self.acks() if host == ip) >= base + n,
                       WRITE_WAIT, f"{n} acknowledged rows on {node}", ceiling=0.1)

    def pause(self) -> None:
        """Stop the writer and wait for it to exit."""
        if not self.running():
            return
        with open(self.stop_file, "w"):
            pass
        try:
            self.proc.wait(timeout=60)
        except Exception:
            self.proc.kill()


def _outage(acks, old_ip: str, new_ip: str, after: float) -> float:
    last_old = max((t for _, h, t in acks if h == old_ip and t <= after), default=after)
    first_new = min((t for _, h, t in acks if h == new_ip and t >= last_old), default=after)
    return max(0.0, first_new - last_old)


def _check_phase(cluster, v: Verdict, writer: Writer, name: str, new: str, old: str,
                 t_fail: float) -> Phase:
    writer.wait_rows_on(new, ROWS_BETWEEN)
    acks = writer.acks()                 # read the promise list BEFORE the table
    have = cluster.service.read(cluster, new)
    missing = sorted({row for row, _, _ in acks} - have)
    v.check(f"{name}: every acknowledged row is on {new}", not missing,
            f"{len(acks)} acknowledged, {len(missing)} missing" +
            (f" (first {missing[:5]})" if missing else ""))
    clean = _storage_clean(cluster, v, writer, new, name)
    return Phase(name, len(acks), len(missing),
                 _outage(acks, cluster.ips[old], cluster.ips[new], t_fail), clean)


def _storage_clean(cluster, v: Verdict, writer: Writer, node: str, name: str) -> bool:
    layer = stacks.storage_layer(cluster.places[node])
    if layer["kind"] == "zpool":
        before = len(v.checks)
        checks.storage_clean(cluster, v, node)
        return all(c.ok for c in v.checks[before:])
    # ext4: a short maintenance window -- writer paused, stack released, offline check
    writer.pause()
    cluster.event(node, "BACKUP")
    cluster.converge(node)
    before = len(v.checks)
    checks.storage_clean(cluster, v, node)
    cluster.event(node, "MASTER")
    cluster.converge(node)
    writer.start()
    return all(c.ok for c in v.checks[before:])


def run(cluster) -> LostWritesResult:
    v = Verdict()
    a, b = cluster.nodes
    phases = []
    if cluster.holder() != a:
        cluster.elect(a)
    writer = Writer(cluster, os.path.join(cluster.workdir, "lostwrites-acked.txt")).start()
    try:
        writer.wait_rows_on(a, ROWS_BETWEEN)
        cluster.mark(f"lost writes: graceful failover {a} -> {b} under continuous inserts")
        t = time.time()
        cluster.elect(b)
        phases.append(_check_phase(cluster, v, writer, "graceful failover", b, a, t))
        cluster.mark(f"lost writes: crash of {b} under continuous inserts, {a} takes over")
        t = time.time()
        cluster.crash(b, "lost-writes drill: power loss")
        cluster.event(a, "MASTER")
        cluster.converge(a)
        phases.append(_check_phase(cluster, v, writer, "crash failover", a, b, t))
    finally:
        writer.pause()
    acks = writer.acks()
    rows = sorted(row for row, _, _ in acks)
    # rows are numbered consecutively per writer run: gaps inside a run are in-doubt inserts
    in_doubt = sum(y - x - 1 for x, y in zip(rows, rows[1:]) if 1 < y - x < 1_000_000)
    checks.no_violations(cluster, v)
    return LostWritesResult(cluster.sc.name, phases, in_doubt, v)
