"""The walk's steps: what to do with one layer given what its kind observed (decide(),
pure: tests assert on its reasons), and the records of a plan (Step) and of a run
(StepRecord, Outcome). The engine (engine.py) walks the layers with them.
"""
from __future__ import annotations

import dataclasses
import enum

from hahooks.kinds.base import Observation, State


class Action(str, enum.Enum):
    """decide()'s answer; str()/format() give the value that logs, plans and tests read."""
    ACQUIRE = "acquire"
    RELEASE = "release"
    SKIP = "skip"

    __str__ = lambda self: self.value                                  # noqa: E731
    __format__ = lambda self, spec: format(self.value, spec)           # noqa: E731


@dataclasses.dataclass
class Step:
    resource: str
    kind: str
    action: Action
    reason: str

    commands: list[str] = dataclasses.field(default_factory=list)  # plan: "would run: ..."
    parallel: str | None = None     # the layer's parallel group: run together with its group

    def __str__(self) -> str:
        group = f", parallel {self.parallel}" if self.parallel else ""
        return f"{self.action:8} {self.resource} ({self.kind}{group}): {self.reason}"


@dataclasses.dataclass
class StepRecord:
    resource: str
    action: Action
    ok: bool
    duration: float
    detail: str = ""


@dataclasses.dataclass
class Outcome:
    role: str
    ok: bool
    message: str
    steps: list[StepRecord] = dataclasses.field(default_factory=list)


def decide(role: str, obs: Observation) -> tuple[Action, str]:
    """What to do with one layer: (action, reason). Pure; tests assert on the strings."""
    if role == "master":
        if obs.state is State.HELD:
            return Action.SKIP, f"already held ({obs.reason})"
        if obs.state is State.BROKEN:
            return Action.ACQUIRE, f"broken ({obs.reason}); acquire decides whether it can repair"
        return Action.ACQUIRE, f"not held ({obs.reason})"
    if obs.state is State.RELEASED:
        return Action.SKIP, f"already released ({obs.reason})"
    return Action.RELEASE, f"{obs.state.value} ({obs.reason})"
