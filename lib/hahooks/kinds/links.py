"""`links`: drbdlinks done right.

For each `path = target`: acquire moves the original aside to `path.hahooks-orig` (if
there is one) and makes `path` a symlink to `target` (on the replicated filesystem);
release removes the link and puts the original back; status checks every link points where
it should. Every step is a rename/symlink/unlink (no shell), checked before anything
changes, so a re-run after an interruption completes or undoes exactly what is left.

Differences from drbdlinks (docs/reference/drbd.md §6): status checks the link targets, not just that
a renamed original exists; a missing target or an unexpected file is refused before any
change instead of half-linking; a failed rename never goes on to create the symlink.
"""
from __future__ import annotations

import logging
import os

from hahooks import schema
from hahooks.errors import Refused
from hahooks.kinds.base import Observation, Resource, broken, held, released
from hahooks.schema import Invalid

log = logging.getLogger("hahooks.kinds.links")

SUFFIX = ".hahooks-orig"

# what one link is found to be: (state, reason)
LINKED, UNLINKED, MOVED, FOREIGN, CLASH = "linked", "unlinked", "moved", "foreign", "clash"


def _link_table(value) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise Invalid('expected a table of "/path" = "/target", e.g. '
                      '{ "/etc/nginx" = "/data/etc/nginx" }')
    out = {}
    for path, target in value.items():
        path, target = schema.absolute_path(path), schema.absolute_path(target)
        if path == "/" or path == target or target.startswith(path.rstrip("/") + "/"):
            raise Invalid(f"{path!r} = {target!r}: a link cannot replace / , point to itself "
                          "or into itself")
        out[path] = target
    return out


class Links(Resource):
    KIND = "links"
    PARAMS = {
        "links": schema.Field(_link_table, schema.REQUIRED,
                              "each path becomes a symlink to its target while held",
                              'table "/path" = "/target"'),
        "require_targets": schema.Bool(True, "refuse to link to a target that does not "
                                       "exist (the filesystem below is not mounted)"),
    }

    @classmethod
    def paths(cls, spec) -> list[tuple[str, str, dict]]:
        """Each path and its backup are renamed and replaced (never followed: the path is
        our own link while held); the target is what root's services will read."""
        out = []
        for path, target in spec.params["links"].items():
            out += [("links", path, {"follow_final": False}),
                    ("links", path + SUFFIX, {"follow_final": False}), ("links", target, {})]
        return out

    def _inspect(self, path: str, target: str) -> tuple[str, str]:
        orig = path + SUFFIX
        has_orig = os.path.lexists(orig)
        if os.path.islink(path):
            if os.readlink(path) == target:
                return LINKED, f"{path} -> {target}"
            return FOREIGN, f"{path} is a symlink to {os.readlink(path)}, not {target}"
        if os.path.lexists(path):
            if has_orig:
                return CLASH, f"both {path} and {orig} exist"
            return UNLINKED, f"{path} is the original"
        if has_orig:
            return MOVED, f"{path} is missing while the original waits in {orig}"
        return UNLINKED, f"{path} absent"

    def _survey(self) -> list[tuple[str, str, str, str]]:
        return [(path, target, *self._inspect(path, target))
                for path, target in self.p["links"].items()]

    def status(self) -> Observation:
        survey = self._survey()
        states = {state for _, _, state, _ in survey}
        odd = [reason for _, _, state, reason in survey if state in (FOREIGN, CLASH, MOVED)]
        if odd:
            return broken("; ".join(odd))
        if states == {LINKED}:
            dangling = [t for _, t, _, _ in survey if not os.path.exists(t)]
            return held(f"{len(survey)} link(s) in place",
                        "target missing: " + ", ".join(dangling) if dangling else "")
        if states == {UNLINKED}:
            return released(f"none of {len(survey)} link(s) in place")
        linked = [p for p, _, state, _ in survey if state == LINKED]
        return broken(f"partly linked: {', '.join(linked)} linked, "
                      f"{len(survey) - len(linked)} not")

    def acquire(self) -> None:
        self.verify_paths()
        survey = self._survey()
        self._refuse(survey, (FOREIGN, CLASH), "linking")
        missing = [t for _, t, state, _ in survey if state != LINKED and not os.path.exists(t)]
        if missing and self.p["require_targets"]:
            why = f"target {', '.join(missing)} does not exist"
            if not self.ctx.dry_run:
                raise Refused(f"not linking: {why} (is the filesystem below mounted?)")
            # a dry run mounts nothing below: say what a real run needs, show its effects
            log.info("%s yet (a real run needs the layers below to provide it)", why)
        for path, target, state, _ in survey:
            if state == LINKED:
                continue
            if state == UNLINKED and os.path.lexists(path):
                self.ctx.effect(f"move {path} aside to {path}{SUFFIX}",
                                lambda p=path: os.rename(p, p + SUFFIX))
            self.ctx.effect(f"link {path} -> {target}",
                            lambda p=path, t=target: os.symlink(t, p))

    def release(self) -> None:
        self.verify_paths()
        survey = self._survey()
        self._refuse(survey, (FOREIGN, CLASH), "unlinking")
        for path, target, state, _ in reversed(survey):
            if state == LINKED:
                self.ctx.effect(f"remove link {path}", lambda p=path: os.unlink(p))
            if state in (LINKED, MOVED) and os.path.lexists(path + SUFFIX):
                self.ctx.effect(f"restore {path} from {path}{SUFFIX}",
                                lambda p=path: os.rename(p + SUFFIX, p))

    @staticmethod
    def _refuse(survey, states, verb: str) -> None:
        bad = [reason for _, _, state, reason in survey if state in states]
        if bad:
            raise Refused(f"not {verb}: {'; '.join(bad)} (resolve by hand)")


RESOURCE = Links
