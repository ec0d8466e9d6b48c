"""`--since` words for history: yesterday, today, an ISO date or time, or an age (-2h)."""
from __future__ import annotations

import datetime as dt
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
AGE = re.compile(r"^-?(\d+(?:\.\d+)?)\s*([smhdw])$")


def parse_since(text: str, now: float | None = None) -> float:
    """The epoch seconds `text` names, in local time like journalctl --since: `today` and
    `yesterday` are local midnights, an ISO date or date-time without an offset is local,
    `-2h` / `2h` / `30m` / `1d` / `1w` is an age before now. ValueError otherwise."""
    now_dt = dt.datetime.fromtimestamp(dt.datetime.now().timestamp() if now is None else now)
    word = text.strip().lower()
    midnight = now_dt.replace(hour=0, minute=0, second=0, microsecond=0)
    if word == "today":
        return midnight.timestamp()
    if word == "yesterday":
        return (midnight - dt.timedelta(days=1)).timestamp()
    m = AGE.match(word)
    if m:
        return now_dt.timestamp() - float(m.group(1)) * UNITS[m.group(2)]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: expected yesterday, today, an ISO date or time "
                         "(2026-12-05, 2026-12-05T22:00), or an age (-2h, 30m, 1d)") from None
    return when.timestamp()   # naive: local time (datetime.timestamp's rule)


def record_epoch(rec: dict) -> float | None:
    """When a JSON log record was written (its `time`, ISO 8601 with offset), or None."""
    try:
        return dt.datetime.fromisoformat(str(rec.get("time"))).timestamp()
    except ValueError:
        return None
