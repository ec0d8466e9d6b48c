"""The one shape every resource kind has: observe status, acquire, release.

A kind never calls another kind and knows nothing of ordering, rollback, locking or
cancellation: the engine owns those. acquire() and release() are idempotent; they raise
a HahooksError (Refused, CommandFailed, WaitTimeout, ...) when they cannot finish.
"""
from __future__ import annotations

import dataclasses
import enum
import logging
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, runtime_checkable

from hahooks import waits
from hahooks.answers import Answers
from hahooks.schema import Field

if TYPE_CHECKING:
    from hahooks.config import Config, Node, ResourceSpec
    from hahooks.holderscan import SharedScan
    from hahooks.runner import Result, Runner

log = logging.getLogger("hahooks.kinds")


class State(str, enum.Enum):
    HELD = "held"
    RELEASED = "released"
    BROKEN = "broken"


@dataclasses.dataclass
class Observation:
    state: State
    reason: str
    warning: str = ""                      # held but degraded: status reports WARNING
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.state.value}: {self.reason}"
        return f"{text} (warning: {self.warning})" if self.warning else text


def held(reason: str, warning: str = "", **details) -> Observation:
    return Observation(State.HELD, reason, warning, details)


def released(reason: str, **details) -> Observation:
    return Observation(State.RELEASED, reason, "", details)


def broken(reason: str, **details) -> Observation:
    return Observation(State.BROKEN, reason, "", details)


@runtime_checkable
class EngineServices(Protocol):
    """What a kind may ask of the engine during a step: the one reference it holds
    (`ctx.engine`). engine.Engine implements it; a kind run alone gets `Standalone`."""

    def fence(self, why: str) -> bool:
        """Before a forced step the peer may still be alive for (forced import, primary
        while the peer may be primary): run [node] fence at most once per transition. True
        only if a fence command is configured and succeeded."""

    def superseded(self) -> bool:
        """True once a newer desire with the other role arrived (a wait ends there)."""

    @property
    def holder_scan(self) -> "SharedScan | None":
        """The shared /proc pass of the parallel group being released together (its
        members register what they may find busy: Resource.join_group_release); None: each
        release scans on its own."""


class Standalone:
    """EngineServices for a kind run without an engine (tests, a wiring's VIP): no fence
    command, never superseded, no shared scan."""

    holder_scan = None

    def fence(self, why: str) -> bool:
        return False

    def superseded(self) -> bool:
        return False


@dataclasses.dataclass
class Context:
    """What the engine hands a kind for one step."""

    runner: "Runner"
    node: "Node"
    config: "Config | None" = None
    below: list["ResourceSpec"] = dataclasses.field(default_factory=list)  # layers under this one
    deadline: waits.Deadline = dataclasses.field(default_factory=lambda: waits.Deadline(60))
    engine: EngineServices = dataclasses.field(default_factory=Standalone)
    # query()'s answers for this step (hahooks.answers: when they are dropped)
    answers: Answers = dataclasses.field(default_factory=Answers, init=False, repr=False)

    @property
    def dry_run(self) -> bool:
        return self.runner.dry_run

    @property
    def freebsd(self) -> bool:
        return self.node.platform.is_freebsd

    def run(self, argv, *, readonly: bool, timeout: float | None = None, **kw) -> "Result":
        """Run through the runner with the step's remaining budget as the upper timeout."""
        if not readonly:
            self.answers.drop_all()
        budget = self.deadline.remaining(floor=0.05)
        limit = min(self.node.command_timeout, budget) if timeout is None else min(timeout, budget)
        return self.runner.run(argv, readonly=readonly, timeout=limit, **kw)

    def query(self, argv, **kw) -> "Result":
        """A read-only command whose answer the step may reuse (hahooks.answers: until the
        step changes something, and afresh in a wait's or retry's later polls)."""
        key = (tuple(argv), kw.get("check", True))
        return self.answers.get(key, lambda: self.run(argv, readonly=True, **kw))

    def forget(self) -> None:
        """Drop every kept answer: the next query() asks again (an error message that
        says what the tool answers now)."""
        self.answers.drop_all()

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float | None = None,
                 detail: Callable[[], str] | None = None, ceiling: float = waits.MAX_POLL):
        """Bounded by the step's budget; in dry-run nothing changes, so don't wait.
        `detail`: what a progress line adds (waits.Progress), e.g. a rebuild's percent;
        `ceiling`: the longest pause between looks (waits.STAT_POLL for a device node)."""
        if self.dry_run:
            log.info("would wait for %s", what)
            return True
        limit = self.deadline.remaining() if timeout is None else min(timeout,
                                                                      self.deadline.remaining())
        predicate = self.answers.afresh(predicate)

        def check():
            # A long wait (the peer leaving primary, a device) ends as soon as the desire
            # flips: a CARP flap must not leave a stale transition waiting, then fencing.
            if self.engine.superseded():
                from hahooks.errors import Superseded
                raise Superseded()
            return predicate()
        return waits.wait_for(check, limit, what, detail=detail, ceiling=ceiling)

    def retry(self, attempt: Callable[[], Any], budget: float, what: str, **kw) -> Any:
        """waits.retry within the step's budget; from the second attempt on, each one
        asks afresh."""
        return waits.retry(self.answers.afresh(attempt), min(budget, self.deadline.remaining()),
                           what, **kw)

    def effect(self, description: str, action: Callable[[], Any]) -> Any:
        """A change made without a command (mkdir, symlink, kill): printed in dry-run."""
        self.answers.drop_all()
        self.runner.changes += 1
        if self.dry_run:
            self.runner.planned.append(f"would {description}")
            log.info("would %s", description, extra={"event": "effect", "dry_run": True})
            return None
        log.info("%s", description, extra={"event": "effect"})
        return action()


class Resource:
    """Base class. Subclasses set KIND and PARAMS and implement the three methods."""

    KIND: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Field]] = {}
    # True for replication layers whose acquire guarantees this node alone writes the
    # devices (HAST primary, DRBD Primary, ggate attach): a pool above may import with -f.
    EXCLUSIVE: ClassVar[bool] = False
    # True for replication layers that also run as a Pacemaker promotable clone
    # (wiring/ocf_promotable.py): they add start_replicating() / stop_replicating(), the
    # passive role a clone instance is started in and leaving replication on stop.
    PROMOTABLE: ClassVar[bool] = False

    def __init__(self, spec: "ResourceSpec", ctx: Context):
        self.spec = spec
        self.name = spec.name
        self.p = spec.params
        self.ctx = ctx

    # -- config-time checks (no I/O) --------------------------------------
    @classmethod
    def validate(cls, spec: "ResourceSpec") -> None:
        """Raise schema.Invalid for parameter combinations the field types cannot express."""

    @classmethod
    def validate_stack(cls, spec: "ResourceSpec", config: "Config") -> None:
        """Raise schema.Invalid for problems that depend on the other layers."""

    @classmethod
    def paths(cls, spec: "ResourceSpec") -> list[tuple[str, str, dict]]:
        """(key, path, safepath.verify options) of every path this layer mounts over,
        creates, renames or reads as root: `hahooks check` refuses those another user
        could redirect, and the kind verifies them again right before using them."""
        return []

    def verify_paths(self) -> None:
        """Raise safepath.UnsafePath (exit 4) if another user could redirect a path."""
        from hahooks import safepath

        for _, path, options in self.paths(self.spec):
            safepath.verify(path, **options)

    # -- the shape ---------------------------------------------------------
    def status(self) -> Observation:
        raise NotImplementedError

    def acquire(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def check(self, depth: int) -> None:
        """A deeper monitor of a held layer (OCF_CHECK_LEVEL, docs/reference/pacemaker.md
        docs/reference/zfs.md §1): 10 reads from the device, 20 also writes. Raise to fail it. Default: nothing
        beyond status()."""

    def join_group_release(self) -> None:
        """Called on each member of a parallel group released together, before any of
        them starts: register what its release may find busy with ctx.engine.holder_scan,
        so the first busy member's /proc pass covers every member. Default: nothing."""

    def describe(self) -> str:
        return f"{self.KIND} {self.name}"

    def exclusive_below(self) -> bool:
        """True when a layer below this one guarantees exclusive access to its devices."""
        from hahooks import kinds

        return any(kinds.get(s.kind).EXCLUSIVE for s in self.ctx.below)
