"""The OCF agent's promotable mode (OCF_RESKEY_mode=promotable): one replication layer (drbd,
hast) as a Pacemaker promotable clone, the way ocf:linbit:drbd runs DRBD
(docs/reference/pacemaker.md, docs/reference/drbd.md §5; LINBIT/drbd-utils scripts/drbd.ocf
drbd_start(), drbd_promote(), drbd_update_master_score()).

start   = the layer replicating in its passive role (drbd `up`: Secondary; hast `role
          secondary` from init); stop = demoted, then out of replication (drbd `down`, hast
          `role init`): the kind's start_replicating() / stop_replicating().
promote = the kind's acquire, demote = its release (Engine.run_layer: same checks, same lock
          as the per-layer mode).
monitor = 7 stopped, 0 passive, 8 promoted, 9 failed while promoted, 1 anything else.
notify  = logged; a post-notification refreshes the promotion score. Always 0.

The promotion score (crm_attribute --promotion, i.e. crm_master, lifetime reboot) comes from
the data state the kind reports, in promotion_score() (pure): Pacemaker promotes the node with
the best data and never one whose data may be stale. Start, promote, demote, recurring monitors
and post-notifications set it; stop removes it; a probe changes nothing, not even the score.
A failed crm_attribute (no cluster: ocf-tester) is logged, never an action's failure, as
drbd.ocf's crm_master calls are.
"""
from __future__ import annotations

import logging
from typing import Any

from hahooks.errors import (  # docs/reference/pacemaker.md (return codes)
    OCF_ERR_GENERIC, OCF_FAILED_PROMOTED, OCF_NOT_RUNNING, OCF_RUNNING_PROMOTED, OCF_SUCCESS)
from hahooks.kinds.base import Observation, State
from hahooks.wiring.ocf_common import OcfResult, under_lock

log = logging.getLogger("hahooks.ocf")

MODE = "promotable"

# drbd.ocf's adjust_master_score "0 10 1000 10000", with its 0 (Consistent, peer unknown) as
# no score at all: the drbd kind refuses to promote without access to UpToDate data anyway.
SCORE_BEST = 10000     # promoted now, or good data and the peer's state known
SCORE_GOOD = 1000      # good data, the peer's state unknown
SCORE_LOW = 10         # good data only through the peer (DRBD), or as of the last connection
NO_SCORE = None        # crm_attribute --delete: this node must not be promoted

# DRBD connection states in which the peer's disk state is known (kinds/drbd.py REPLICATING)
_DRBD_PEER_KNOWN = ("Connected", "Established", "SyncSource", "SyncTarget", "PausedSyncS",
                    "PausedSyncT", "VerifyS", "VerifyT")


def drbd_score(d: dict[str, Any]) -> int | None:
    """From the drbd kind's status details (role, disk, peer_disk, cstate)."""
    role, disk = d.get("role"), d.get("disk")
    if role not in ("Primary", "Secondary"):
        return NO_SCORE                         # down (Unconfigured) or unreadable
    peer_known = d.get("cstate") in _DRBD_PEER_KNOWN
    if disk == "UpToDate":
        return SCORE_BEST if role == "Primary" or peer_known else SCORE_GOOD
    if peer_known and d.get("peer_disk") == "UpToDate":
        return SCORE_LOW
    # Consistent, Outdated, Inconsistent, Diskless with no UpToDate peer: DRBD's own "Need
    # access to UpToDate data"; promoting could serve stale data
    return NO_SCORE


def hast_score(d: dict[str, dict]) -> int | None:
    """From the hast kind's status details ({resource: {role, status, dirty}}). A secondary
    has a worker (and a status) only while a primary replicates to it
    (docs/reference/hast.md §2): complete = in sync; without one, its data is as of the last
    connection. dirty counts on a primary only, whose data is the newest anyway."""
    roles = {r.get("role") for r in d.values()}
    if not d or roles == {"primary"}:
        return SCORE_BEST if d else NO_SCORE
    if roles != {"secondary"}:
        return NO_SCORE                         # init (stopped), a mix, or unknown
    if all(r.get("status") == "complete" for r in d.values()):
        return SCORE_GOOD
    return SCORE_LOW


SCORERS = {"drbd": drbd_score, "hast": hast_score}


def promotion_score(kind: str, obs: Observation) -> int | None:
    """The score for this node, None for none; a broken layer gets none."""
    if obs.state is State.BROKEN:
        return NO_SCORE
    return SCORERS[kind](obs.details)


def _promoted_once(kind: str, obs: Observation) -> bool:
    if kind == "drbd":
        return obs.details.get("role") == "Primary"
    return any(r.get("role") == "primary" for r in obs.details.values()
               if isinstance(r, dict))


def _stopped(kind: str, obs: Observation) -> bool:
    if kind == "drbd":
        return obs.details.get("role") == "Unconfigured"
    roles = {r.get("role") for r in obs.details.values() if isinstance(r, dict)}
    return roles == {"init"}


def monitor_code(kind: str, obs: Observation) -> int:
    """The OCF code of a promotable instance for the kind's observation (pure)."""
    if obs.state is State.HELD:
        return OCF_RUNNING_PROMOTED
    if _stopped(kind, obs):
        return OCF_NOT_RUNNING
    if obs.state is State.RELEASED:
        return OCF_SUCCESS
    return OCF_FAILED_PROMOTED if _promoted_once(kind, obs) else OCF_ERR_GENERIC


class Promotable:
    """The promotable actions for one layer; the Agent (wiring/ocf.py) loads the config and
    maps exceptions to codes."""

    def __init__(self, agent, cfg):
        from hahooks.engine import Engine

        self.agent, self.cfg = agent, cfg
        self.engine = Engine.for_config(cfg)
        self.spec = cfg.resource(agent.layer)

    def resource(self):
        return self.engine.resource(self.spec.index)

    def observe(self) -> Observation:
        return self.resource().status()

    def start(self) -> int:
        self._locked(lambda: self.resource().start_replicating())
        self.update_score()
        return OCF_SUCCESS

    def stop(self) -> int:
        self._locked(lambda: self.resource().stop_replicating())
        self.set_score(NO_SCORE)
        return OCF_SUCCESS

    def promote(self) -> int:
        self._locked(lambda: self.engine.run_layer(self.spec.name, "master"))
        self.update_score()
        return OCF_SUCCESS

    def demote(self) -> int:
        self._locked(lambda: self.engine.run_layer(self.spec.name, "slave"))
        self.update_score()
        return OCF_SUCCESS

    def monitor(self) -> int:
        obs = self.observe()
        code = monitor_code(self.spec.kind, obs)
        if code in (OCF_SUCCESS, OCF_RUNNING_PROMOTED):
            if obs.warning:
                log.warning("%s degraded: %s", self.spec.name, obs.warning)
            if not self.agent.is_probe:
                self.set_score(promotion_score(self.spec.kind, obs))
            return code
        if code == OCF_NOT_RUNNING:
            return code
        raise OcfResult(code, f"{self.spec.name}: {obs}")

    def notify(self) -> int:
        env = self.agent.env
        kind = env.get("OCF_RESKEY_CRM_meta_notify_type", "")
        operation = env.get("OCF_RESKEY_CRM_meta_notify_operation", "")
        log.info("notify %s-%s for %s", kind, operation, self.spec.name,
                 extra={"event": "notify", "resource": self.spec.name})
        if kind == "post":
            try:
                obs = self.observe()
                if monitor_code(self.spec.kind, obs) in (OCF_SUCCESS, OCF_RUNNING_PROMOTED):
                    self.set_score(promotion_score(self.spec.kind, obs))
            except Exception:      # notify must not fail (docs/reference/pacemaker.md)
                log.warning("notify: cannot refresh the promotion score", exc_info=True)
        return OCF_SUCCESS

    # -- helpers -------------------------------------------------------------------------
    def _locked(self, step) -> None:
        under_lock(self.cfg, step)

    def update_score(self) -> None:
        self.set_score(promotion_score(self.spec.kind, self.observe()))

    def set_score(self, score: int | None) -> None:
        """crm_attribute --promotion (crm_master: the name from OCF_RESOURCE_INSTANCE),
        through the runner; a failure is logged only."""
        from hahooks.errors import HahooksError

        argv = ["crm_attribute", "--promotion", "--lifetime", "reboot"]
        argv += ["--delete"] if score is None else ["--update", str(score)]
        try:
            r = self.engine.runner.run(argv, readonly=False, timeout=30, check=False,
                                       what="set the promotion score")
        except HahooksError as exc:
            log.warning("promotion score %s not set: %s", score, exc.one_line())
            return
        if r.exit_code != 0:
            log.warning("promotion score %s not set: crm_attribute exited %d: %s", score,
                        r.exit_code, (r.stderr or r.stdout).strip()[-200:])
