"""Checks and the verdict: every claim the drill makes is a named check that could fail."""
from __future__ import annotations

import dataclasses
import time


@dataclasses.dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    at: float = dataclasses.field(default_factory=time.time)

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"  [{mark}] {self.name}" + (f": {self.detail}" if self.detail else "")


class Verdict:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    def error(self, name: str, exc: BaseException) -> None:
        """A step of the drill itself broke: that is a FAIL too, with the reason."""
        text = getattr(exc, "one_line", None)
        self.check(name, False, text() if callable(text) else f"{type(exc).__name__}: {exc}")

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        n, bad = len(self.checks), len(self.failed)
        if self.passed:
            return f"PASS ({n} checks)"
        return f"FAIL ({bad} of {n} checks failed: {', '.join(c.name for c in self.failed)})"

    def render(self) -> str:
        return "\n".join(c.line() for c in self.checks)

    def as_json(self) -> list[dict]:
        return [dataclasses.asdict(c) for c in self.checks]
