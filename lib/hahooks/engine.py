"""The stack walk: the only place that knows order, rollback, demotion, cancellation.

`master` acquires layers bottom-up, `slave` releases them top-down. Decisions (what to do
with a layer given what is observed: steps.decide) are pure functions returning reason
strings, kept apart from the effects (a kind's acquire/release), as Patroni keeps `Ha` apart
from its state handler. A parallel group's members run together (parallel.py). Kinds reach
the engine only through `ctx.engine` (kinds.base.EngineServices, which it implements).
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from hahooks import kinds, logs, parallel, waits
from hahooks.config import Config, ResourceSpec
from hahooks.errors import (ExitCode, HahooksError, Refused, StepFailed, Superseded,
                            UnsafeToRelease)
from hahooks.holderscan import SharedScan
from hahooks.kinds.base import Context, Observation, Resource, State, broken
from hahooks.peer import PeerActions
from hahooks import runner as runner_mod
from hahooks.runner import Runner
from hahooks.steps import Action, Outcome, Step, StepRecord, decide

log = logging.getLogger("hahooks.engine")

ROLES = ("master", "slave")


class Engine:
    """The walk; to its kinds also their EngineServices (fence, superseded, holder_scan)."""

    def __init__(self, config: Config, runner: Runner, *,
                 superseded: Callable[[], bool] = lambda: False):
        self.config = config
        self.runner = runner
        self._superseded = superseded
        self.peer = PeerActions(config, runner, superseded)   # fence and demote
        self.holder_scan: SharedScan | None = None   # of the group being released together
        self.holder_scans: list[SharedScan] = []      # each group's, for tests and the bench
        # layers whose failed acquire changed nothing (a refusal, a probe that could not
        # run): the rollback leaves them as they were found
        self.untouched: set[str] = set()
        # plan(): (layer, error) of each step whose preview stopped (`plan` exits non-zero)
        self.preview_stops: list[tuple[str, HahooksError]] = []

    @classmethod
    def for_config(cls, config: Config, *, dry_run: bool = False, **kw) -> "Engine":
        """An engine with the runner the node's settings ask for (runner.for_config)."""
        return cls(config, runner_mod.for_config(config, dry_run=dry_run), **kw)

    def groups(self) -> list[list[int]]:
        return parallel.groups(self.config)

    # -- what the kinds may ask (kinds.base.EngineServices) ----------------
    def superseded(self) -> bool:
        return self._superseded()

    # -- building blocks ---------------------------------------------------
    def resource(self, index: int) -> Resource:
        spec = self.config.resources[index]
        below = self.config.resources[:parallel.group_start(self.config, index)
                                      if spec.parallel else index]
        ctx = Context(runner=self.runner, node=self.config.node, config=self.config,
                      below=below, deadline=waits.Deadline(spec.timeout), engine=self)
        return kinds.get(spec.kind)(spec, ctx)

    def observe(self) -> list[tuple[ResourceSpec, Observation]]:
        out = []
        for i, spec in enumerate(self.config.resources):
            try:
                obs = self.resource(i).status()
            except HahooksError as exc:
                # status_error: `hahooks status` grades a probe that could not run at all
                # (tool missing, permission) UNKNOWN rather than CRITICAL
                obs = broken(f"status failed: {exc.one_line()}",
                             status_error=int(exc.exit_code))
            out.append((spec, obs))
        return out

    def plan(self, role: str) -> list[Step]:
        """What `role` would do given the state observed now (read-only). With a dry-run
        runner each acquire/release step also lists the commands and effects it would run
        (a kind may stop its preview where it depends on a layer below really being held)."""
        observed = self.observe()
        order = observed if role == "master" else list(reversed(observed))
        steps = []
        for spec, obs in order:
            step = Step(spec.name, spec.kind, *decide(role, obs), parallel=spec.parallel)
            if step.action is not Action.SKIP and self.runner.dry_run:
                step.commands = self._preview(spec.index, step.action)
            steps.append(step)
        return steps

    def _preview(self, index: int, action: Action) -> list[str]:
        res = self.resource(index)
        mark = len(self.runner.planned)
        try:
            res.acquire() if action is Action.ACQUIRE else res.release()
        except HahooksError as exc:
            self.preview_stops.append((res.name, exc))
            return self.runner.planned[mark:] + [f"(preview stops: {exc.one_line()})"]
        return self.runner.planned[mark:]

    # -- transitions -------------------------------------------------------
    def run(self, role: str) -> Outcome:
        if role not in ROLES:
            raise ValueError(role)
        outcome = Outcome(role, True, "")
        # only this run's rollback may leave a refused layer as found: a later `slave` on the
        # same engine walks every layer
        self.untouched.clear()
        if role == "master":
            self._acquire_all(outcome)
        else:
            self._release_all(outcome)
        changed = sum(1 for s in outcome.steps if s.action is not Action.SKIP)
        n = len(self.config.resources)
        outcome.message = (f"{role}: {n} layer(s) {'held' if role == 'master' else 'released'}"
                           f" ({changed} {'acquired' if role == 'master' else 'released'} now, "
                           f"{n - changed} already)")
        return outcome

    def _checkpoint(self) -> None:
        if self.superseded():
            log.info("a newer desire arrived: stopping at this safe point",
                     extra={"event": "superseded"})
            raise Superseded()

    def _acquire_all(self, outcome: Outcome) -> None:
        groups = self.groups()
        changes_at_start = self.runner.changes
        for g, group in enumerate(groups):
            self._checkpoint()
            failures = self._run_group(group, "master", outcome)
            if not failures:
                continue
            res, exc = failures[0]
            reason = _reason(exc)
            for name, err in failures:
                log.error("acquire of %s failed: %s", name, _reason(err),
                          extra={"event": "step_failed", "resource": name, "step": "acquire"})
            changed = self.runner.changes != changes_at_start
            rolled = self._rollback(groups[:g + 1], outcome)
            self.peer.demote()
            raise _keep_code(StepFailed(f"acquire {res} failed: {reason}; "
                                        + ("nothing was changed" if not changed else
                                           "rolled back" if rolled else
                                           "ROLLBACK INCOMPLETE, see log")), exc) from exc

    def _release_all(self, outcome: Outcome) -> None:
        for group in reversed(self.groups()):
            self._checkpoint()
            failures = self._run_group(group, "slave", outcome)
            if not failures:
                continue
            for name, err in failures:
                log.critical("release of %s failed: %s; lower layers left as they are so "
                             "nothing is pulled from under it", name, _reason(err),
                             extra={"event": "step_failed", "resource": name,
                                    "step": "release"})
            res, exc = failures[0]
            raise _keep_code(UnsafeToRelease(f"release {res} failed: {_reason(exc)}"
                                             "; stopped there, lower layers untouched"),
                             exc) from exc

    def _run_group(self, group: list[int], role: str,
                   outcome: Outcome) -> list[tuple[str, BaseException]]:
        """One step of the walk (parallel.run_members): its failures (name, exception)."""
        members = [self.resource(i) for i in group]
        if len(group) > 1 and role == "slave":
            self.holder_scan = SharedScan()
            self.holder_scans.append(self.holder_scan)
            parallel.join_scan(members)
        try:
            return parallel.run_members(members, lambda res: self._step(res, role, outcome),
                                        in_order=len(group) == 1 or self.runner.dry_run)
        finally:
            self.holder_scan = None

    def _step(self, res: Resource, role: str, outcome: Outcome) -> None:
        with logs.context(resource=res.name, kind=res.KIND):
            if role == "slave" and res.name in self.untouched:
                reason = "its failed acquire changed nothing: left as found"
                log.info("skip %s: %s", res.name, reason,
                         extra={"event": "decision", "step": "skip"})
                outcome.steps.append(StepRecord(res.name, Action.SKIP, True, 0.0, reason))
                return
            changes_before = self.runner.changes
            try:
                self._act(res, role, outcome)
            except BaseException:
                if role == "master" and self.runner.changes == changes_before:
                    self.untouched.add(res.name)
                raise

    def _act(self, res: Resource, role: str, outcome: Outcome) -> None:
        obs = res.status()
        action, reason = decide(role, obs)
        log.info("%s %s: %s", action, res.name, reason,
                 extra={"event": "decision", "step": action, "state": obs.state.value})
        if action is Action.SKIP:
            outcome.steps.append(StepRecord(res.name, Action.SKIP, True, 0.0, reason))
            return
        started = time.monotonic()
        ok = False
        try:
            if action is Action.ACQUIRE:
                res.acquire()
                self._confirm(res, State.HELD)
            else:
                res.release()
                self._confirm(res, State.RELEASED)
            ok = True
        finally:
            took = time.monotonic() - started
            outcome.steps.append(StepRecord(res.name, action, ok, took))
            log.info("%s %s %s in %.3fs", action, res.name, "done" if ok else "FAILED",
                     took, extra={"event": "step", "step": action, "ok": ok,
                                  "duration": round(took, 4)})

    def _confirm(self, res: Resource, want: State) -> None:
        if self.runner.dry_run:
            return
        obs = res.status()
        if obs.state is not want:
            raise Refused(f"{res.name} is {obs.state.value} after "
                          f"{'acquire' if want is State.HELD else 'release'}: {obs.reason}")

    def _rollback(self, groups: list[list[int]], outcome: Outcome) -> bool:
        """Release `groups` top-down (the failed one first) so the node never holds half a
        stack; a parallel group's members that were acquired are released together."""
        for group in reversed(groups):
            kept = [self.config.resources[i].name for i in group
                    if self.config.resources[i].name in self.untouched
                    and self.resource(i).status().state is not State.RELEASED]
            if kept:
                # a refused layer left as found still stands on the layers below: releasing
                # them would be refused (busy) or pull them from under it
                log.error("rollback stops at %s: left as found (its failed acquire changed "
                          "nothing), it still uses the layers below, which stay held",
                          ", ".join(kept), extra={"event": "rollback_stopped",
                                                  "resource": kept[0]})
                return False
            try:
                failures = self._run_group(group, "slave", outcome)
            except Superseded as exc:     # a wait in a release ended by a newer desire
                failures = [(self.config.resources[group[0]].name, exc)]
            if failures:
                for name, exc in failures:
                    log.critical("rollback: release of %s failed: %s; stopping rollback so "
                                 "nothing is pulled from under it", name, _reason(exc),
                                 extra={"event": "rollback_failed", "resource": name})
                return False
        return True

    def run_layer(self, name: str, role: str) -> Outcome:
        """One layer alone (Pacemaker drives each layer as its own resource). Acquiring it
        needs every layer below held; releasing it needs every layer above released, so
        nothing is pulled from under a mount. Nothing to do -> success without that check."""
        spec = self.config.resource(name)
        res = self.resource(spec.index)
        outcome = Outcome(role, True, f"{name}: {'held' if role == 'master' else 'released'}")
        if decide(role, res.status())[0] is Action.SKIP:
            self._step(res, role, outcome)
            return outcome
        others = range(spec.index) if role == "master" else \
            range(spec.index + 1, len(self.config.resources))
        want, where = (State.HELD, "below") if role == "master" else (State.RELEASED, "above")
        for i in others:
            other = self.resource(i)
            obs = other.status()
            if obs.state is not want:
                raise Refused(f"{'acquire' if role == 'master' else 'release'} {name} refused: "
                              f"layer {other.name} {where} it is {obs.state.value} "
                              f"({obs.reason}); order the layers as in the config")
        self._step(res, role, outcome)
        return outcome

    def fence(self, why: str) -> bool:
        """Run node.fence at most once per transition (peer.PeerActions.fence)."""
        return self.peer.fence(why)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, HahooksError):
        return exc.one_line()
    log.error("unexpected error in a kind", exc_info=exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def _keep_code(err: HahooksError, cause: BaseException) -> HahooksError:
    """A missing tool or a permission problem keeps its own exit code (5, 4) through the
    rollback: OCF callers treat "not installed" as a hard error on this node."""
    if isinstance(cause, HahooksError) and cause.exit_code in (ExitCode.NOT_INSTALLED,
                                                                ExitCode.PERM):
        err.exit_code = cause.exit_code
    return err
