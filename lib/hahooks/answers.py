"""The answers a step keeps to its read-only questions (Context.query).

The engine's status() before acquire/release, the kind's own look at the start of it and
the engine's confirming status() after it ask the same question, and each asking is a
process (a hastctl, gmirror or mdconfig round trip). An answer stands until the step
changes something (drop_all), and a wait or retry asks afresh from its second poll or
attempt on the questions its polls ask (afresh). Kept apart from Context so the rule can
be tested without a runner or a node (tests/test_step_answers.py).
"""
from __future__ import annotations

from typing import Any, Callable, Hashable


class Answers:
    """Answers keyed by question; each wait/retry under way records what its poll asks."""

    def __init__(self) -> None:
        self._kept: dict[Hashable, Any] = {}
        # one set per wait/retry under way: the questions its current poll or attempt asked
        self._polls: list[set] = []

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: Hashable, ask: Callable[[], Any]) -> Any:
        """The kept answer to `key`, or ask() once and keep it."""
        for asked in self._polls:
            asked.add(key)
        if key not in self._kept:
            self._kept[key] = ask()
        return self._kept[key]

    def drop_all(self) -> None:
        """Something changed (or the caller wants the tool's answer now): ask everything again."""
        self._kept.clear()

    def afresh(self, predicate: Callable[[], Any]) -> Callable[[], Any]:
        """predicate, asking afresh from its second call on the questions its calls ask
        (the first call comes right after what the answers were kept for: a wait or retry
        starts where the step is). Answers it does not ask about stay: a wait for a device
        node does not make the step ask hastd again."""
        asked: set = set()
        calls = []

        def poll():
            if calls:
                for key in asked:
                    self._kept.pop(key, None)
            calls.append(None)
            self._polls.append(asked)
            try:
                return predicate()
            finally:
                self._polls.pop()      # ours: polls nest (a wait inside a retry attempt)
        return poll
