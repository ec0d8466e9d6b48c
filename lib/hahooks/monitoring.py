"""What `status` tells monitoring: Nagios perfdata and thresholds, a node_exporter textfile.

Perfdata follows the Monitoring Plugins guidelines ("'label'=value[UOM];[warn];[crit];[min];
[max]" after a '|' on the first line); thresholds are their ranges: `10` alerts above 10
(outside 0..10), `10:` below 10, `~:10` above 10, `10:20` outside, `@10:20` inside. The
metrics (absent when the stack has no such layer or no transition ran yet):

  layers_held          layers this node holds now (of how many)
  last_transition_age  seconds since the newest finished transition (done.json)
  hast_dirty_bytes     sum of HAST's "dirty" over every hast layer: bytes not yet on the peer
  mirror_sync          the least-synchronised gmirror's percent (100 when all COMPLETE)
"""
from __future__ import annotations

import dataclasses
import os
import re
import time

from hahooks.errors import UsageError

UNITS = {"layers_held": "", "last_transition_age": "s", "hast_dirty_bytes": "B",
         "mirror_sync": "%"}
_SIZE = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
_NUMBER = r"-?\d+(?:\.\d+)?[kKmMgGtT]?"


def metrics(report: dict, now: float | None = None) -> dict[str, tuple[float, float | None]]:
    """{name: (value, max or None)} from a status report (inspect.evaluate())."""
    layers = report["layers"]
    out: dict[str, tuple[float, float | None]] = {
        "layers_held": (sum(1 for layer in layers if layer["state"] == "held"), len(layers))}
    last = report.get("last") or {}
    if last.get("at"):
        now = time.time() if now is None else now
        out["last_transition_age"] = (max(0, round(now - float(last["at"]))), None)
    dirty = [r.get("dirty") or 0 for layer in layers if layer["kind"] == "hast"
             for r in (layer.get("details") or {}).values() if isinstance(r, dict)]
    if any(layer["kind"] == "hast" for layer in layers):
        out["hast_dirty_bytes"] = (sum(dirty), None)
    syncs = [_mirror_percent(layer.get("details") or {}) for layer in layers
             if layer["kind"] == "gmirror" and layer["state"] == "held"]
    if syncs:
        out["mirror_sync"] = (min(syncs), 100)
    return out


def _mirror_percent(details: dict) -> float:
    """A SYNCHRONIZING component says (NN%); an ACTIVE one is whole; none: nothing to copy."""
    parts = [(c.get("percent") if c.get("state") != "ACTIVE" else 100) or 0
             for c in (details.get("components") or {}).values()]
    return float(min(parts)) if parts else 100.0


@dataclasses.dataclass
class Range:
    text: str
    low: float
    high: float
    inside: bool

    @classmethod
    def parse(cls, text: str) -> "Range":
        m = re.fullmatch(rf"(@)?(?:(~|{_NUMBER}):)?({_NUMBER})?", text.strip())
        if not m or (m.group(2) is None and m.group(3) is None):
            raise UsageError(f"bad threshold range {text!r} (forms: 10, 10:, ~:10, 10:20, "
                             "@10:20; sizes may end in k, m, g, t)")
        low = float("-inf") if m.group(2) == "~" else _number(m.group(2) or "0")
        high = _number(m.group(3)) if m.group(3) else float("inf")
        return cls(text.strip(), low, high, bool(m.group(1)))

    def alerts(self, value: float) -> bool:
        inside = self.low <= value <= self.high
        return inside if self.inside else not inside


def _number(text: str) -> float:
    unit = text[-1].lower() if text[-1].isalpha() else ""
    return float(text[:-1] if unit else text) * _SIZE[unit]


def parse_thresholds(words: list[str] | None) -> dict[str, Range]:
    """`--warning hast_dirty_bytes=1g` (repeatable) -> {metric: Range}."""
    out: dict[str, Range] = {}
    for word in words or []:
        name, eq, text = word.partition("=")
        if not eq or name not in UNITS:
            raise UsageError(f"threshold {word!r}: expected METRIC=RANGE with METRIC one of "
                             + ", ".join(UNITS))
        out[name] = Range.parse(text)
    return out


def apply_thresholds(code: int, values: dict, warning: dict, critical: dict) -> tuple[int, list]:
    """Raise `code` (0 OK, 1 WARNING, 2 CRITICAL; 3 UNKNOWN stays) for every breached range;
    returns the new code and phrases naming each breach."""
    breaches = []
    for level, ranges in ((2, critical), (1, warning)):
        for name, rng in ranges.items():
            if name in values and rng.alerts(values[name][0]) and \
                    name not in {b[0] for b in breaches}:
                breaches.append((name, level, f"{name}={_show(values[name][0])}"
                                 f"{UNITS[name]} ({'critical' if level == 2 else 'warning'} "
                                 f"{rng.text})"))
    worst = max([b[1] for b in breaches], default=0)
    if code != 3 and worst > code:
        code = worst
    return code, [b[2] for b in breaches]


def _show(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def perfdata(values: dict, warning: dict, critical: dict) -> str:
    fields = []
    for name, (value, top) in values.items():
        warn = warning[name].text if name in warning else ""
        crit = critical[name].text if name in critical else ""
        low = "0"
        fields.append(f"{name}={_show(value)}{UNITS[name]};{warn};{crit};{low};"
                      f"{'' if top is None else _show(top)}".rstrip(";"))
    return " ".join(fields)


# -- Prometheus (node_exporter's textfile collector) ----------------------------------------
def prometheus_text(report: dict, values: dict, transitions: list[dict]) -> str:
    """The exposition format: counters of transitions by role and outcome (history's
    verdicts), the last one's duration, outcome and time, and the status gauges."""
    node = report["node"].replace("\\", "\\\\").replace('"', '\\"')
    label = f'node="{node}"'
    lines = ["# HELP hahooks_status status exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
             "# TYPE hahooks_status gauge", f"hahooks_status{{{label}}} {report['code']}",
             "# HELP hahooks_maintenance 1 while maintenance mode ignores daemon events",
             "# TYPE hahooks_maintenance gauge",
             f"hahooks_maintenance{{{label}}} {1 if report.get('maintenance') else 0}",
             "# HELP hahooks_layers layers in the configured stack",
             "# TYPE hahooks_layers gauge",
             f"hahooks_layers{{{label}}} {len(report['layers'])}"]
    names = {"layers_held": "hahooks_layers_held",
             "last_transition_age": "hahooks_last_transition_age_seconds",
             "hast_dirty_bytes": "hahooks_hast_dirty_bytes",
             "mirror_sync": "hahooks_mirror_sync_percent"}
    for name, (value, _) in values.items():
        lines += [f"# TYPE {names[name]} gauge", f"{names[name]}{{{label}}} {_show(value)}"]
    counts: dict[tuple[str, str], int] = {}
    for t in transitions:
        key = (str(t.get("role")), t["verdict"])
        counts[key] = counts.get(key, 0) + 1
    lines += ["# HELP hahooks_transitions_total transitions in the JSON log by role and "
              "outcome (ok, failed, superseded, unfinished, ignored)",
              "# TYPE hahooks_transitions_total counter"]
    for (role, verdict), n in sorted(counts.items()):
        lines.append(f'hahooks_transitions_total{{{label},role="{role}",'
                     f'outcome="{verdict}"}} {n}')
    done = [t for t in transitions if t["verdict"] in ("ok", "failed")]
    if done:
        last = done[-1]
        lines += ["# HELP hahooks_last_transition_duration_seconds the newest finished "
                  "transition's walk", "# TYPE hahooks_last_transition_duration_seconds gauge",
                  f"hahooks_last_transition_duration_seconds{{{label}}} "
                  f"{_show(last.get('duration') or 0)}",
                  "# HELP hahooks_last_transition_ok 1 if the newest finished transition "
                  "succeeded", "# TYPE hahooks_last_transition_ok gauge",
                  f'hahooks_last_transition_ok{{{label},role="{last.get("role")}"}} '
                  f"{1 if last['verdict'] == 'ok' else 0}",
                  "# TYPE hahooks_last_transition_timestamp_seconds gauge",
                  f"hahooks_last_transition_timestamp_seconds{{{label}}} "
                  f"{_show(round(last.get('at') or 0, 3))}"]
    return "\n".join(lines) + "\n"


def write_atomically(path: str, text: str) -> None:
    """node_exporter reads the file at any moment: write a temporary beside it (same
    filesystem), fsync, rename over. 0644: the exporter runs as another user; the file
    holds no secret (names, counts, times)."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
