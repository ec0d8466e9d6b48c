"""The drill's timeline: what the drill did (markers) merged with what each node's hahooks
logged (its JSON-lines log), as "event -> each step with its duration"."""
from __future__ import annotations

import dataclasses
import datetime

from hahooks.logs import records

# log events worth a line; everything at ERROR or above is shown too
SHOWN = {"transition_start", "step", "transition_end", "step_failed", "rollback_failed",
         "fence", "demote", "superseded", "peer"}


@dataclasses.dataclass
class Entry:
    t: float          # epoch seconds
    node: str         # "" for the drill itself
    text: str
    level: int = 0    # indentation: 0 drill marker, 1 transition, 2 step
    data: dict = dataclasses.field(default_factory=dict)


def _epoch(rec: dict) -> float | None:
    stamp = rec.get("time")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def read_log(path: str) -> list[dict]:
    """Records of a node's JSON log (torn or foreign lines are skipped)."""
    out = []
    try:
        for rec in records(path):
            t = _epoch(rec)
            if t is not None:
                rec["_t"] = t
                out.append(rec)
    except FileNotFoundError:
        pass
    return out


def entries_from_log(node: str, records: list[dict], since: float = 0.0) -> list[Entry]:
    starts: dict[str, float] = {}
    out: list[Entry] = []
    for rec in records:
        t = rec["_t"]
        if t < since:
            continue
        event = rec.get("event")
        level = rec.get("level", "")
        if event not in SHOWN and level not in ("ERROR", "CRITICAL"):
            continue
        tid = rec.get("transition", "")
        if event == "transition_start":
            starts[tid] = t
            out.append(Entry(t, node, f"transition #{rec.get('seq')} -> {rec.get('role')}", 1,
                             {"event": event, "role": rec.get("role"), "transition": tid}))
        elif event == "step":
            dur = float(rec.get("duration") or 0.0)
            res = rec.get("resource", "?")
            kind = rec.get("kind", "")
            mark = "ok" if rec.get("ok") else "FAILED"
            out.append(Entry(t - dur, node, f"{rec.get('step'):<8} {res} ({kind})  "
                             f"{dur:.3f}s {mark}", 2,
                             {"event": event, "step": rec.get("step"), "resource": res,
                              "duration": dur, "ok": bool(rec.get("ok")), "transition": tid}))
        elif event == "transition_end":
            took = t - starts[tid] if tid in starts else None
            ok = bool(rec.get("ok"))
            text = ("done" if ok else "FAILED") + (f" in {took:.3f}s" if took is not None
                                                   else "")
            if not ok:
                text += f": {rec.get('message', '')}"
            out.append(Entry(t, node, f"{rec.get('role', '')} {text}", 1,
                             {"event": event, "ok": ok, "duration": took, "transition": tid,
                              "role": rec.get("role")}))
        else:
            out.append(Entry(t, node, f"{level.lower()}: {rec.get('message', '')}", 2,
                             {"event": event or "log", "level": level, "transition": tid}))
    return out


class Timeline:
    def __init__(self) -> None:
        self.markers: list[Entry] = []
        self.logs: dict[str, str] = {}     # node -> JSON log path
        self.start = 0.0
        self._records: dict[str, list[dict]] | None = None   # set by freeze()

    def freeze(self) -> None:
        """Read the logs now (the sandbox, logs included, is about to be removed)."""
        self._records = {node: read_log(path) for node, path in self.logs.items()}

    def _read(self, node: str) -> list[dict]:
        if self._records is not None:
            return self._records.get(node, [])
        return read_log(self.logs[node])

    def mark(self, text: str, node: str = "", t: float | None = None, **data) -> Entry:
        import time

        entry = Entry(time.time() if t is None else t, node, text, 0, data)
        if not self.markers:
            self.start = entry.t
        self.markers.append(entry)
        return entry

    def entries(self) -> list[Entry]:
        out = list(self.markers)
        for node in self.logs:
            out.extend(entries_from_log(node, self._read(node), self.start))
        # stable: a marker before the log lines it caused when their times are equal
        return sorted(out, key=lambda e: (e.t, e.level))

    def transitions(self, node: str | None = None) -> list[dict]:
        """[{node, role, start, end, ok}] from the logs (for overlap checks and figures)."""
        found: dict[tuple, dict] = {}
        for name in self.logs:
            if node and name != node:
                continue
            for rec in self._read(name):
                tid = rec.get("transition")
                if not tid or rec.get("event") not in ("transition_start", "transition_end"):
                    continue
                item = found.setdefault((name, tid), {"node": name, "transition": tid,
                                                      "role": rec.get("role"), "start": None,
                                                      "end": None, "ok": None})
                if rec["event"] == "transition_start":
                    item["start"] = rec["_t"]
                else:
                    item["end"], item["ok"] = rec["_t"], bool(rec.get("ok"))
        return sorted(found.values(), key=lambda x: x["start"] or 0.0)

    def render(self) -> str:
        lines = []
        for e in self.entries():
            rel = e.t - self.start
            who = e.node or "drill"
            lines.append(f"{rel:+9.3f}s  {who:<6} {'  ' * e.level}{e.text}")
        return "\n".join(lines)

    def as_json(self) -> list[dict]:
        return [{"t": round(e.t - self.start, 4), "node": e.node, "level": e.level,
                 "text": e.text, **e.data} for e in self.entries()]


def overlapping(transitions: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of transitions on the same node whose [start, end] intervals overlap (the
    transition lock must make this empty)."""
    pairs = []
    by_node: dict[str, list[dict]] = {}
    for t in transitions:
        if t["start"] is not None:
            by_node.setdefault(t["node"], []).append(t)
    for items in by_node.values():
        items.sort(key=lambda x: x["start"])
        for prev, cur in zip(items, items[1:]):
            end = prev["end"] if prev["end"] is not None else float("inf")
            if cur["start"] < end:
                pairs.append((prev, cur))
    return pairs
