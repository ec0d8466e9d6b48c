"""`hahooks render`: the wiring for this config, in each daemon's own format.

Every section is what the daemon needs to call hahooks for *this* config (its absolute
path, [wiring] vhid / interface / vip / priority / instance): devd rules, a freevrrpd.conf
[VRID] section, the haresources line, a keepalived vrrp_instance, the ucarp command and
Pacemaker pcs / crm commands. Values the config does not know (passwords, this node's own
address) are left as <placeholders>. Each section starts with `#` comment lines, valid in
all of these formats, so `hahooks render --only devd > /usr/local/etc/devd/hahooks.conf`
works as it is.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil

from hahooks import config as config_mod
from hahooks.errors import ConfigError, UsageError
from hahooks.wiring import devd, freevrrpd, pcmk_cib
from hahooks.wiring.pcmk_ops import pacemaker_timeouts, pcmk_id

SECTIONS = ("devd", "freevrrpd", "heartbeat", "keepalived", "ucarp", "pacemaker")
XML_SECTIONS = ("pacemaker-cib",)     # only with --only: no `#` comments in XML
DEFAULT_HOOKS_DIR = "/usr/local/libexec/hahooks"
OCF_AGENT = "ocf:hahooks:hahooks"
_BLANK_OR_QUOTE = re.compile(r"[\s\"'\\]")


@dataclasses.dataclass
class Target:
    cfg: object            # hahooks.config.Config
    hahooks: str           # absolute path of the hahooks command the daemons run
    hooks_dir: str         # where hooks/ (ucarp-up, ucarp-down) is installed
    config_path: str       # the config path the daemons pass
    per_layer: bool = False  # Pacemaker: a group of one primitive per layer
    promotable: bool = False  # Pacemaker: the bottom (replication) layer a promotable clone

    @property
    def wiring(self) -> dict:
        return self.cfg.wiring

    def w(self, key: str, placeholder: str) -> str:
        value = self.wiring.get(key)
        return placeholder if value is None else str(value)


def default_hahooks() -> str:
    """The stable path scripts/bootstrap links, else whatever `hahooks` PATH finds."""
    for path in ("/usr/local/sbin/hahooks", "/usr/local/bin/hahooks"):
        if os.access(path, os.X_OK):
            return path
    return shutil.which("hahooks") or "/usr/local/sbin/hahooks"


def _plain(word: str, where: str) -> str:
    if _BLANK_OR_QUOTE.search(word):
        raise ConfigError(f"{word!r}: {where} splits its command on blanks; use a path "
                          "without blanks, quotes or backslashes")
    return word


# -- sections ------------------------------------------------------------------------------
def devd_section(t: Target) -> str:
    return devd.render_rules(t.wiring, t.hahooks, t.config_path)


def freevrrpd_section(t: Target) -> str:
    return ("# freevrrpd.conf (/usr/local/etc/freevrrpd.conf); same on both nodes but priority\n"
            + freevrrpd.render_vrid(t.wiring, t.hahooks, t.config_path))


def heartbeat_section(t: Target) -> str:
    config = _plain(t.config_path, "Heartbeat")
    if "::" in config:
        raise ConfigError(f"{config!r}: haresources splits arguments on '::'")
    return "\n".join([
        "# /etc/ha.d/haresources: identical on both nodes; the first word is the node that",
        "# owns the stack by preference (as `uname -n` prints it). Install",
        "# heartbeat-resource.d/hahooks as /etc/ha.d/resource.d/hahooks; ha.cf: crm off.",
        f"{t.cfg.node.name} hahooks::{config}", ""])


def keepalived_section(t: Target) -> str:
    iface = t.w("interface", "<interface>")
    vip = t.wiring.get("vip") or "<vip>/<prefix>"
    notify = " ".join([_plain(t.hahooks, "keepalived"), "keepalived-notify", "-c",
                       _plain(t.config_path, "keepalived")])
    return "\n".join([
        "# keepalived.conf (global_defs: script_user root, enable_script_security). The",
        "# generic notify appends INSTANCE|GROUP <name> MASTER|BACKUP|FAULT|STOP <priority>:",
        "# MASTER -> master, any other state -> slave (a graceful stop reports STOP).",
        f"vrrp_instance {t.w('instance', 'VI_1')} {{",
        "    state BACKUP",
        f"    interface {iface}",
        f"    virtual_router_id {t.w('vhid', '<vrid>')}",
        f"    priority {t.w('priority', '<priority>')}",
        "    advert_int 1",
        "    virtual_ipaddress {",
        f"        {vip} dev {iface}",
        "    }",
        f'    notify "{notify}"',
        "}", ""])


def ucarp_section(t: Target) -> str:
    vip = t.wiring.get("vip")
    words = ["ucarp", f"--interface={t.w('interface', '<interface>')}",
             "--srcip=<this node's address>", f"--vhid={t.w('vhid', '<vhid>')}",
             "--passfile=/etc/ucarp.pass", f"--addr={vip.split('/')[0] if vip else '<vip>'}",
             "--advbase=1", "--advskew=<0 on the preferred node, 100 on the other>",
             "--preempt", "--shutdown",
             f"--upscript={os.path.join(t.hooks_dir, 'ucarp-up')}",
             f"--downscript={os.path.join(t.hooks_dir, 'ucarp-down')}"]
    quoted = [w if w.startswith("--") and "<" in w else shlex.quote(w) for w in words]
    return "\n".join([
        "# ucarp (run from its service): the scripts get IFACE VIP [XPARAM], add/remove the",
        "# VIP (ucarp does not) and record master/slave; the downscript also runs at start.",
        f"HAHOOKS_CONFIG={shlex.quote(t.config_path)} \\",
        "    " + " \\\n    ".join(quoted), ""])


def pacemaker_section(t: Target) -> str:
    layers = t.cfg.resources
    config = shlex.quote(t.config_path)
    start, stop = pacemaker_timeouts(layers)
    whole_ops = (f"op start timeout={start} op stop timeout={stop} "
                 "op monitor interval=20s timeout=60s")
    lines = [
        "# Pacemaker: install ocf/hahooks as /usr/lib/ocf/resource.d/hahooks/hahooks.",
        "# The whole stack as one resource:",
        f"pcs resource create hahooks {OCF_AGENT} config={config} {whole_ops}",
        f"# crm configure primitive hahooks {OCF_AGENT} params config={config} {whole_ops}",
        "# Or one resource per layer, grouped in config order (start in order, stop in",
        "# reverse; the agent refuses a layer whose lower layers are not held):"]
    crm = []
    for r in layers:
        start, stop = pacemaker_timeouts(layers, r.name)
        ops = (f"op start timeout={start} op stop timeout={stop} "
               "op monitor interval=20s timeout=60s")
        params = f"config={config} resource={shlex.quote(r.name)}"
        lines.append(f"# pcs resource create {pcmk_id(r.name)} {OCF_AGENT} {params} {ops} "
                     "--group hahooks-stack")
        crm.append(f"# crm configure primitive {pcmk_id(r.name)} {OCF_AGENT} "
                   f"params {params} {ops}")
    lines += crm
    lines.append("# crm configure group hahooks-stack " +
                 " ".join(pcmk_id(r.name) for r in layers))
    return "\n".join(lines + _promotable_lines(layers, config)) + "\n"


def _promotable_lines(layers, config: str) -> list[str]:
    """The promotable variant (`render --only pacemaker-cib --promotable` in XML) when the
    bottom layer can run as a clone (drbd, hast)."""
    from hahooks import kinds

    repl = layers[0]
    if not kinds.get(repl.kind).PROMOTABLE:
        return []
    rid = pcmk_id(repl.name)
    start, stop = pacemaker_timeouts(layers, repl.name)
    ops = (f"op start timeout={start} op stop timeout={stop} op promote timeout={start} "
           f"op demote timeout={stop} op monitor interval=19s role=Promoted timeout=60s "
           "op monitor interval=20s role=Unpromoted timeout=60s")
    meta = "promoted-max=1 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true"
    params = f"config={config} resource={shlex.quote(repl.name)} mode=promotable"
    return [
        f"# Or {repl.name} as a promotable clone (one instance per node, the promoted one",
        "# primary), the layers above it as hahooks-stack (the group above without "
        f"{rid}),",
        "# run with the promoted instance, started after its promotion:",
        f"# pcs resource create {rid} {OCF_AGENT} {params} {ops} promotable {meta}",
        f"# pcs constraint colocation add hahooks-stack with Promoted {rid}-clone INFINITY",
        f"# pcs constraint order promote {rid}-clone then start hahooks-stack",
        f"# crm configure primitive {rid} {OCF_AGENT} params {params} {ops}",
        f"# crm configure clone {rid}-clone {rid} meta promotable=true {meta}",
        f"# crm configure colocation hahooks-stack-with-promoted inf: hahooks-stack "
        f"{rid}-clone:Promoted",
        f"# crm configure order hahooks-stack-after-promote Mandatory: {rid}-clone:promote "
        "hahooks-stack:start"]


def pacemaker_cib_section(t: Target) -> str:
    return pcmk_cib.configuration(t.cfg, t.config_path, t.per_layer, t.promotable)


RENDERERS = {"devd": devd_section, "freevrrpd": freevrrpd_section,
             "heartbeat": heartbeat_section, "keepalived": keepalived_section,
             "ucarp": ucarp_section, "pacemaker": pacemaker_section,
             "pacemaker-cib": pacemaker_cib_section}


def render(t: Target, only: list[str] | None = None) -> str:
    """All sections (a section the config cannot fill becomes a comment saying why), or
    exactly the ones asked for (then a missing piece is an error)."""
    if only and set(only) & set(XML_SECTIONS):
        if len(only) > 1:
            raise ConfigError(f"render: --only {', '.join(XML_SECTIONS)} is XML and goes alone")
        return RENDERERS[only[0]](t)
    out = []
    for name in only or SECTIONS:
        try:
            body = RENDERERS[name](t)
        except ConfigError as exc:
            if only:
                raise
            body = f"# not rendered: {exc.one_line()}\n"
        out.append(f"# ==== {name} ====\n{body}")
    return "\n".join(out)


# -- the subcommand ------------------------------------------------------------------------
def register(sub, common) -> None:
    p = sub.add_parser("render", parents=[common], help="print the daemon wiring for this "
                       "config (devd, freevrrpd, Heartbeat, keepalived, ucarp, Pacemaker)",
                       description="Print what each cluster daemon needs to call hahooks for "
                       "this config. Nothing is installed or changed.")
    p.add_argument("--only", action="append", choices=SECTIONS + XML_SECTIONS,
                   metavar="SECTION", help=f"one of {', '.join(SECTIONS)} (repeatable; "
                   "default: all), or pacemaker-cib alone: raw CIB XML for cibadmin "
                   "--replace --scope configuration")
    p.add_argument("--per-layer", action="store_true", help="pacemaker-cib: a group of one "
                   "primitive per layer instead of one for the whole stack")
    p.add_argument("--promotable", action="store_true", help="pacemaker-cib: the bottom "
                   "layer (drbd, hast) as a promotable clone, the layers above as a group "
                   "colocated with the promoted instance and started after the promotion")
    p.add_argument("--hahooks", help="absolute path of the hahooks command the daemons run "
                   "(default: /usr/local/sbin/hahooks if present, else the one on PATH)")
    p.add_argument("--hooks-dir", default=DEFAULT_HOOKS_DIR,
                   help=f"where hooks/ is installed (default {DEFAULT_HOOKS_DIR})")
    p.add_argument("--config-path", help="config path the daemons pass (default: this "
                   "config's absolute path)")
    p.set_defaults(func=run_render)


def run_render(args) -> int:
    cfg = config_mod.load(args.config)
    for flag, value in (("--hahooks", args.hahooks), ("--hooks-dir", args.hooks_dir),
                        ("--config-path", args.config_path)):
        if value is not None and not os.path.isabs(value):
            raise UsageError(f"render: {flag} {value!r} must be an absolute path")
    target = Target(cfg, args.hahooks or default_hahooks(), args.hooks_dir,
                    args.config_path or os.path.abspath(cfg.path), args.per_layer,
                    args.promotable)
    print(render(target, args.only), end="")
    return 0
