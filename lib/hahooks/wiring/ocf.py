"""OCF resource agent (OCF RA API 1.1, docs/reference/pacemaker.md §1) for the whole stack or one layer.

`ocf/hahooks` only calls main() here. Parameters come from the environment:
OCF_RESKEY_config (the hahooks config) and OCF_RESKEY_resource (empty: the whole stack,
through the same desire/lock/engine path as `hahooks master|slave --wait`; a resource name:
that layer alone, through Engine.run_layer under the transition lock); OCF_RESKEY_mode =
promotable runs that layer (drbd, hast) as a promotable clone (wiring/ocf_promotable.py).
The action is the only argument; anything after it is ignored, as the spec says.

One dispatcher maps outcomes to OCF codes (as resource-agents' ocf.run does): hahooks'
exit codes already are OCF numbers, every failure prints `ocf-exit-reason:<why>` on stderr.
Imports stay inside functions: meta-data must work as nobody, without a config.
"""
from __future__ import annotations

import logging
import os
import sys

from hahooks.errors import (OCF_ERR_CONFIGURED, OCF_ERR_GENERIC, OCF_ERR_INSTALLED,
                            OCF_ERR_PERM, OCF_ERR_UNIMPLEMENTED, OCF_NOT_RUNNING, OCF_SUCCESS)

from hahooks.wiring.ocf_common import OcfResult, under_lock  # noqa: F401 (the agent's API)

ACTIONS = ("start", "stop", "monitor", "validate-all", "meta-data", "usage", "methods",
           "reload-agent", "promote", "demote", "notify")
PROMOTABLE_ACTIONS = ("start", "stop", "monitor", "promote", "demote", "notify")
# Without a config this caller can read (meta-data runs as nobody): a generous default.
FALLBACK_TIMEOUTS = ("300s", "300s")
AGENT_NAME = "hahooks"


def exit_reason(msg: str) -> None:
    cookie = os.environ.get("OCF_EXIT_REASON_PREFIX", "ocf-exit-reason:")
    sys.stderr.write(f"{cookie}{' '.join(msg.split())}\n")
    sys.stderr.flush()


# -- meta-data -----------------------------------------------------------------------------
def escape(text: str) -> str:
    """XML text and attribute escaping (xml.sax.saxutils would pull in urllib at every hook
    start, since the CLI imports each wiring module: docs/performance.md)."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def advertised_timeouts(env) -> tuple[str, str]:
    """The start/stop timeouts `render --only pacemaker` writes for this config (and layer),
    when the config can be read; meta-data must still work without one."""
    from hahooks import config
    from hahooks.errors import HahooksError
    from hahooks.wiring.pcmk_ops import pacemaker_timeouts

    try:
        cfg = config.load(env.get("OCF_RESKEY_config") or None)
        layer = env.get("OCF_RESKEY_resource") or None
        if layer and layer not in {r.name for r in cfg.resources}:
            return FALLBACK_TIMEOUTS
        return pacemaker_timeouts(cfg.resources, layer)
    except (HahooksError, OSError):
        return FALLBACK_TIMEOUTS


def metadata(env=None) -> str:
    from hahooks import __version__, platforms

    default_config = platforms.host_platform().default_config
    start, stop = advertised_timeouts(os.environ if env is None else env)

    def param(name, short, long, default):
        return (f'<parameter name="{name}" unique="0" required="0">\n'
                f'<longdesc lang="en">{escape(long)}</longdesc>\n'
                f'<shortdesc lang="en">{escape(short)}</shortdesc>\n'
                f'<content type="string" default="{escape(default)}"/>\n'
                "</parameter>\n")

    return (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">\n'
        f'<resource-agent name="{AGENT_NAME}" version="{escape(__version__)}">\n'
        "<version>1.1</version>\n"
        '<longdesc lang="en">Acquires (start) and releases (stop) the stack of storage layers '
        "described in a hahooks config (replication, pool or filesystem, links, services), "
        "in order and in reverse, with rollback on a failed start; monitor reports whether "
        "this node holds it. With the resource parameter set, the agent drives that one "
        "layer only: define one primitive per layer, grouped in config order.</longdesc>\n"
        '<shortdesc lang="en">hahooks storage stack (or one layer of it)</shortdesc>\n'
        "<parameters>\n"
        + param("config", "hahooks config file",
                "Path of the hahooks TOML config describing this node and its stack. It "
                "must not be writable by group or others.", default_config)
        + param("resource", "one layer (resource name)",
                "Name of one [[resource]] of the config to manage alone. Empty: the "
                "whole stack.", "")
        + param("mode", "promotable: the layer as a promotable clone",
                "Empty: the resource (or the stack) runs on one node. \"promotable\": the "
                "replication layer named by resource (drbd, hast) runs as a promotable "
                "clone: start = passive role, promote = primary, demote = passive, "
                "promotion scores from its data state (crm_attribute --promotion).", "")
        + "</parameters>\n<actions>\n"
        f'<action name="start" timeout="{start}"/>\n'
        f'<action name="stop" timeout="{stop}"/>\n'
        f'<action name="promote" timeout="{start}"/>\n'
        f'<action name="demote" timeout="{stop}"/>\n'
        '<action name="notify" timeout="60s"/>\n'
        '<action name="monitor" timeout="60s" interval="20s" depth="0"/>\n'
        '<action name="monitor" timeout="60s" interval="19s" depth="0" role="Promoted"/>\n'
        '<action name="monitor" timeout="60s" interval="61s" depth="10"/>\n'
        '<action name="monitor" timeout="60s" interval="121s" depth="20"/>\n'
        '<action name="validate-all" timeout="30s"/>\n'
        '<action name="meta-data" timeout="5s"/>\n'
        '<action name="methods" timeout="5s"/>\n'
        "</actions>\n</resource-agent>\n")


# -- the actions ---------------------------------------------------------------------------
class Agent:
    def __init__(self, env):
        self.env = env
        self.config_path = env.get("OCF_RESKEY_config") or None
        self.layer = env.get("OCF_RESKEY_resource") or None
        self.mode = env.get("OCF_RESKEY_mode", "")
        self.action = ""

    @property
    def is_probe(self) -> bool:
        return self.action == "monitor" and \
            self.env.get("OCF_RESKEY_CRM_meta_interval", "") in ("", "0")

    def load(self):
        from hahooks import config, logs, platforms
        from hahooks.errors import ConfigError

        self.check_mode()
        path = self.config_path or platforms.default_config_path()
        if self.action in ("stop", "monitor") and not os.path.lexists(path):
            # No config here: nothing hahooks manages can be held by this agent on this node.
            if self.action == "stop":
                raise OcfResult(OCF_SUCCESS, f"{path} absent: nothing to stop")
            if self.is_probe:
                raise OcfResult(OCF_NOT_RUNNING, f"{path} absent: not running here")
        try:
            cfg = config.load(path)
            if self.layer and self.layer not in {r.name for r in cfg.resources}:
                raise ConfigError(f"{path}: no [[resource]] named {self.layer!r} (resource "
                                  "parameter); known: " +
                                  ", ".join(r.name for r in cfg.resources))
            self.check_promotable(cfg)
        except ConfigError as exc:
            raise self.node_local_problem(path, exc) from None
        timeout_ms = self.env.get("OCF_RESKEY_CRM_meta_timeout", "")
        if timeout_ms.isdigit() and int(timeout_ms) > 0:
            # Waiting for a running transition must not outlast Pacemaker's own timeout.
            cfg.node.wait_timeout = min(cfg.node.wait_timeout, int(timeout_ms) / 1000 * 0.9)
        logs.setup_from_config(cfg, stderr_level=logging.WARNING)
        return cfg

    def check_mode(self) -> None:
        """The mode parameter is the CIB's, the same on every node: a wrong one is
        OCF_ERR_CONFIGURED (6) everywhere."""
        from hahooks.wiring.ocf_promotable import MODE

        if self.mode not in ("", MODE):
            raise OcfResult(OCF_ERR_CONFIGURED, f"mode={self.mode!r}: empty or {MODE!r}")
        if self.mode and not self.layer:
            raise OcfResult(OCF_ERR_CONFIGURED, f"mode={MODE} needs the resource parameter "
                            "(the replication layer the clone runs)")

    def check_promotable(self, cfg) -> None:
        """mode=promotable: the named layer's kind (in this node's config) must be one
        that runs as a clone (drbd, hast)."""
        from hahooks import kinds
        from hahooks.errors import ConfigError

        if not self.mode:
            return
        kind = next(r.kind for r in cfg.resources if r.name == self.layer)
        if not kinds.get(kind).PROMOTABLE:
            raise ConfigError(f"resource {self.layer!r} is a {kind} layer: mode=promotable "
                              "takes a replication layer (" + ", ".join(
                                  k for k in kinds.names() if kinds.get(k).PROMOTABLE) + ")")

    def promotable(self, action: str) -> int:
        from hahooks.wiring.ocf_promotable import Promotable

        if action != "notify":
            return getattr(Promotable(self, self.load()), action)()
        try:
            return Promotable(self, self.load()).notify()
        except Exception as exc:  # noqa: BLE001 - notify must not fail (ocf-tester, pacemaker.md)
            sys.stderr.write(f"{AGENT_NAME}: notify: {exc}\n")
            return OCF_SUCCESS

    def node_local_problem(self, path: str, exc) -> OcfResult:
        """A hahooks config is per node, so whatever is wrong with it is wrong on this node
        only: 4 (unsafe owner/mode) or 5, which ban this node, never 6, which Pacemaker takes
        as fatal everywhere and stops the healthy stack on the peer. A probe or stop here
        answers 7/0, as Filesystem does for a missing device, unless this node's state dir
        says it last took the stack: then nothing is known and the failure stands (a failed
        stop gets the node fenced, never the stack started twice)."""
        from hahooks.errors import ConfigUnsafe

        code = OCF_ERR_PERM if isinstance(exc, ConfigUnsafe) else OCF_ERR_INSTALLED
        if not (self.is_probe or self.action == "stop"):
            return OcfResult(code, exc.one_line())
        if last_took_the_stack(path):
            return OcfResult(code, f"{exc.one_line()}; this node last took the stack and may "
                             "still hold it")
        return OcfResult(OCF_SUCCESS if self.action == "stop" else OCF_NOT_RUNNING,
                         f"{exc.one_line()}; not running here")

    def reload_agent(self) -> int:
        """Nothing is cached between calls: re-validating the parameters is the reload. Not
        in meta-data: no parameter is reloadable (config and resource say what is managed)
        and ra-api-1.dtd, which ocf-tester validates against, has no reload-agent."""
        self.load()
        return OCF_SUCCESS

    def validate_all(self) -> int:
        self.load()
        return OCF_SUCCESS

    def monitor(self) -> int:
        from hahooks.engine import Engine
        from hahooks.kinds.base import State

        cfg = self.load()
        engine = Engine.for_config(cfg)
        observed = [(s, o) for s, o in engine.observe()
                    if not self.layer or s.name == self.layer]
        states = {o.state for _, o in observed}
        detail = ", ".join(f"{s.name}={o.state.value} ({o.reason})" for s, o in observed)
        if states == {State.HELD}:
            self.deep_checks(engine, [s for s, _ in observed])
            for s, o in observed:
                if o.warning:
                    logging.getLogger("hahooks.ocf").warning("%s degraded: %s", s.name,
                                                             o.warning)
            return OCF_SUCCESS
        if states == {State.RELEASED}:
            return OCF_NOT_RUNNING
        what = "broken" if State.BROKEN in states else "half a stack held"
        raise OcfResult(OCF_ERR_GENERIC, f"{what}: {detail}")

    def deep_checks(self, engine, specs) -> None:
        """OCF_CHECK_LEVEL 10 (read) / 20 (write), as Filesystem offers: each held layer's
        check(); 0 or anything else: status alone."""
        from hahooks.errors import HahooksError

        level = self.env.get("OCF_CHECK_LEVEL", "0")
        depth = int(level) if level.isdigit() else 0
        if depth < 10:
            return
        index = {r.name: i for i, r in enumerate(engine.config.resources)}
        for spec in specs:
            try:
                engine.resource(index[spec.name]).check(depth)
            except HahooksError as exc:
                raise OcfResult(OCF_ERR_GENERIC, f"{spec.name}: depth {depth} check failed: "
                                f"{exc.one_line()}") from None

    def start(self) -> int:
        return self._transition("master")

    def stop(self) -> int:
        return self._transition("slave")

    def _transition(self, role: str) -> int:
        cfg = self.load()
        if self.layer:
            from hahooks.engine import Engine

            under_lock(cfg, lambda: Engine.for_config(cfg).run_layer(self.layer, role))
            return OCF_SUCCESS
        from hahooks import transition

        code, message = transition.request(cfg, role, detach=False,
                                           source=f"pacemaker {self.env.get('OCF_RESOURCE_INSTANCE', '')}".strip())
        if code:
            raise OcfResult(int(code), message)
        return OCF_SUCCESS


def last_took_the_stack(path: str) -> bool:
    """Whether this node's newest recorded request was to take the stack. Reads the config
    without its permission check only for the state dir's path (parsing runs nothing)."""
    from hahooks import config, platforms
    from hahooks.errors import HahooksError
    from hahooks.state import StateDir

    try:
        state_dir = config.load(path, check_permissions=False).node.state_dir
    except HahooksError:
        state_dir = platforms.host_platform().default_state_dir
    try:
        desire = StateDir(state_dir).desire()
    except HahooksError:
        return True          # an unreadable state dir proves nothing either
    return desire is not None and desire.role == "master"


def usage() -> str:
    return (f"usage: {AGENT_NAME} {{{'|'.join(ACTIONS)}}}\n"
            "Expects an OCF environment: OCF_RESKEY_config, optional OCF_RESKEY_resource.\n")


def main(argv: list[str] | None = None, env=None) -> int:
    """The dispatcher: action -> handler -> OCF exit code (+ ocf-exit-reason on failure)."""
    from hahooks.errors import HahooksError

    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    action = argv[0] if argv else ""
    if action == "meta-data":
        sys.stdout.write(metadata(env))
        return OCF_SUCCESS
    if action == "methods":
        sys.stdout.write("\n".join(ACTIONS) + "\n")
        return OCF_SUCCESS
    if action in ("usage", "help", "-h", "--help"):
        sys.stdout.write(usage())
        return OCF_SUCCESS
    agent = Agent(env)
    agent.action = action
    if agent.mode and action in PROMOTABLE_ACTIONS:
        handler = lambda: agent.promotable(action)  # noqa: E731
    else:
        handler = {"start": agent.start, "stop": agent.stop, "monitor": agent.monitor,
                   "validate-all": agent.validate_all,
                   "reload-agent": agent.reload_agent}.get(action)
    if handler is None:
        exit_reason(f"action {action!r} is not implemented" if action else
                    f"no action given; {usage().splitlines()[0]}")
        return OCF_ERR_UNIMPLEMENTED
    try:
        return handler()
    except OcfResult as res:
        code, reason = res.code, res.reason
    except HahooksError as exc:
        code, reason = int(exc.exit_code), exc.one_line()
    except Exception as exc:  # a bug: still a clean OCF failure, traceback in the log
        logging.getLogger("hahooks.ocf").error("unexpected error", exc_info=True)
        code, reason = OCF_ERR_GENERIC, f"internal error: {type(exc).__name__}: {exc}"
    if code not in (OCF_SUCCESS, OCF_NOT_RUNNING):
        exit_reason(reason)
    elif reason:
        sys.stderr.write(f"{AGENT_NAME}: {reason}\n")
    return code
