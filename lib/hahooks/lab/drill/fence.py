"""STONITH for the sandbox: a node's `[node] fence` command asks the drill to power off
its peer, and the drill does it (kills the peer node's namespaces, releases its kernel
state) before answering.

Node side (the fence argv in the node's config; runs inside the node):
    python3 -m hahooks.lab.drill.fence --desk DIR --node nodeb --target nodea
It drops a request file in DIR and waits (bounded) for the answer: exit 0 only once the
drill confirmed the peer is down.

Drill side: FenceDesk watches DIR in a thread. Why it is safe:
  * it can only crash nodes of its own lab (names from a fixed table, never a PID or a
    path from the request);
  * a node cannot fence itself, and a node that is already down cannot fence anyone:
    when both nodes fence each other at once, requests are handled one at a time, the
    first wins and the loser's request is refused, so one node always survives;
  * the answer comes only after the peer's processes are gone and its loop devices and
    FUSE mounts are released, so the survivor never imports/mounts over a live peer.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import uuid
from typing import Callable

log = logging.getLogger("hahooks.lab.drill.fence")

POLL = 0.02             # the desk's polling interval (s)
DEFAULT_TIMEOUT = 30.0  # the node side gives up after this long without an answer


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def _read_json(path: str) -> dict | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as fh:
        try:
            data = json.load(fh)
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


class FenceDesk:
    """Answers fence requests of the lab's nodes. crash(target, why) must return only when
    the target is down and its kernel state released; alive(node) tells whether a node is
    up. `refuse` (set by fault injection) makes every request fail."""

    def __init__(self, desk: str, nodes: tuple[str, ...], crash: Callable[[str, str], None],
                 alive: Callable[[str], bool], on_event: Callable[[str, str], None] | None = None):
        self.desk = desk
        self.nodes = tuple(nodes)
        self.crash = crash
        self.alive = alive
        self.on_event = on_event or (lambda node, text: None)
        self.refuse = ""          # non-empty: the reason every request is refused
        self.handled: list[dict] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        os.makedirs(desk, mode=0o700, exist_ok=True)
        os.chmod(desk, 0o700)

    def start(self) -> "FenceDesk":
        self._thread = threading.Thread(target=self._loop, name="fence-desk", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                names = sorted(n for n in os.listdir(self.desk)
                               if n.startswith("req-") and n.endswith(".json"))
            except OSError:
                names = []
            for name in names:
                self._handle(name)
            self._stop.wait(POLL)

    def _handle(self, name: str) -> None:
        path = os.path.join(self.desk, name)
        req = _read_json(path)
        ticket = name[len("req-"):-len(".json")]
        try:
            os.unlink(path)
        except OSError:
            return
        ok, detail = self.decide(req, ticket)
        if ok:
            target = req["target"]
            self.on_event(req["from"], f"fence: {req['from']} powers off {target} "
                          f"({req.get('why', '')})")
            try:
                self.crash(target, f"fenced by {req['from']}")
                detail = f"{target} is down"
            except Exception as exc:  # an answer is owed whatever happens
                ok, detail = False, f"could not power off {target}: {exc}"
        else:
            self.on_event(req.get("from", "?") if req else "?", f"fence refused: {detail}")
        self.handled.append({"ticket": ticket, "request": req, "ok": ok, "detail": detail})
        _write_json(os.path.join(self.desk, f"ack-{ticket}.json"), {"ok": ok, "detail": detail})

    def decide(self, req: dict | None, ticket: str) -> tuple[bool, str]:
        if not req or not isinstance(req.get("from"), str) or not isinstance(req.get("target"),
                                                                             str):
            return False, "malformed request"
        src, target = req["from"], req["target"]
        if not ticket.startswith(f"{src}-"):
            return False, f"request ticket {ticket!r} does not belong to {src!r}"
        if src not in self.nodes or target not in self.nodes:
            return False, f"unknown node in request ({src} -> {target})"
        if src == target:
            return False, f"{src} asked to fence itself"
        if self.refuse:
            return False, self.refuse
        if not self.alive(src):
            return False, f"{src} is down itself (it lost a fencing race)"
        return True, ""


def request(desk: str, node: str, target: str, why: str, timeout: float) -> tuple[bool, str]:
    """Node side: ask the desk, wait for its answer."""
    from hahooks import waits
    from hahooks.errors import WaitTimeout

    ticket = f"{node}-{uuid.uuid4().hex[:12]}"
    _write_json(os.path.join(desk, f"req-{ticket}.json"),
                {"from": node, "target": target, "why": why, "pid": os.getpid()})
    ack_path = os.path.join(desk, f"ack-{ticket}.json")
    try:
        answer = waits.wait_for(lambda: _read_json(ack_path), timeout,
                                f"the sandbox to power off {target}")
    except WaitTimeout as exc:
        return False, exc.one_line()
    try:
        os.unlink(ack_path)
    except OSError:
        pass
    return bool(answer.get("ok")), str(answer.get("detail", ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hahooks-sandbox-fence",
                                description="ask the hahooks drill to power off a peer node")
    p.add_argument("--desk", required=True, help="the drill's fence request directory")
    p.add_argument("--node", required=True, help="this node's name")
    p.add_argument("--target", required=True, help="the peer to power off")
    p.add_argument("--why", default="forced step")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    args = p.parse_args(argv)
    if not os.path.isdir(args.desk):
        print(f"hahooks-sandbox-fence: {args.desk}: no such fence desk", file=sys.stderr)
        return 1
    ok, detail = request(args.desk, args.node, args.target, args.why, args.timeout)
    print(f"hahooks-sandbox-fence: {'fenced' if ok else 'NOT fenced'}: {detail}",
          file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
