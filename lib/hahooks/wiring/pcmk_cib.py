"""`hahooks render --only pacemaker-cib`: the Pacemaker configuration as raw CIB XML, for
`cibadmin --replace --scope configuration --xml-file FILE` (no crmsh or pcs needed; Debian
12 ships neither by default). docs/reference/pacemaker.md §7, docs/wiring.md.

* stonith-enabled=true always: hahooks' stacks hold storage, and Pacemaker without fencing
  starts it on a partitioned peer (docs/config.md "shared storage requires fencing").
* When [node] fence is a fence-agents agent ([node] fence_options), its stonith device:
  the options as instance attributes (password_file is not rendered: the CIB needs the
  password itself or the agent's password_script; a comment says so), pcmk_host_list = the
  peer, and a location constraint keeping the device off the node it fences.
* The stack: one ocf:hahooks:hahooks primitive, or (per_layer) a group of one primitive per
  layer in config order; op timeouts from pcmk_ops.pacemaker_timeouts() (one computation).
* promotable: the bottom layer (drbd, hast) as a promotable clone (mode=promotable: one
  instance per node, one promoted, notifications on), the layers above it as a group that
  runs only with the promoted instance and starts after the promotion, as ocf:linbit:drbd
  stacks are configured (docs/reference/pacemaker.md, docs/reference/drbd.md §5).
"""
from __future__ import annotations

import os

from hahooks.errors import ConfigError
from hahooks.fence_agents import PASSWORD_FILE
from hahooks.wiring.ocf import escape
from hahooks.wiring.pcmk_ops import pacemaker_timeouts, pcmk_id

# the clone's meta attributes: an instance on each of the two nodes, one of them promoted
CLONE_META = (("promotable", "true"), ("promoted-max", "1"), ("promoted-node-max", "1"),
              ("clone-max", "2"), ("clone-node-max", "1"), ("notify", "true"))


def _nvpairs(owner: str, pairs) -> str:
    return "".join(f'<nvpair id="{owner}-{escape(k)}" name="{escape(k)}" value="{escape(v)}"/>'
                   for k, v in pairs)


def _primitive(rid: str, params, start: str, stop: str, promotable: bool = False) -> str:
    ops = (f'<op id="{rid}-start" name="start" interval="0s" timeout="{start}"/>'
           f'<op id="{rid}-stop" name="stop" interval="0s" timeout="{stop}"/>')
    if promotable:
        # one recurring monitor per role: Pacemaker tells them apart by their interval
        ops += (f'<op id="{rid}-promote" name="promote" interval="0s" timeout="{start}"/>'
                f'<op id="{rid}-demote" name="demote" interval="0s" timeout="{stop}"/>'
                f'<op id="{rid}-notify" name="notify" interval="0s" timeout="60s"/>'
                f'<op id="{rid}-monitor-promoted" name="monitor" interval="19s" '
                'timeout="60s" role="Promoted"/>'
                f'<op id="{rid}-monitor-unpromoted" name="monitor" interval="20s" '
                'timeout="60s" role="Unpromoted"/>')
    else:
        ops += f'<op id="{rid}-monitor" name="monitor" interval="20s" timeout="60s"/>'
    return (f'<primitive id="{rid}" class="ocf" provider="hahooks" type="hahooks">'
            f'<instance_attributes id="{rid}-params">{_nvpairs(rid, params)}'
            f"</instance_attributes><operations>{ops}</operations></primitive>")


def promotable_layer(cfg):
    """The layer a promotable clone runs: the bottom one, of a kind that can (drbd, hast)."""
    from hahooks import kinds

    first = cfg.resources[0]
    if not kinds.get(first.kind).PROMOTABLE:
        raise ConfigError(f"render --promotable: the bottom layer {first.name!r} is a "
                          f"{first.kind} layer; a promotable clone takes a drbd or hast layer "
                          "at the bottom of the stack")
    return first


def _promotable_stack(cfg, config_path: str) -> tuple[str, str]:
    """(resources, constraints): the clone, the group above it, and what ties them."""
    repl = promotable_layer(cfg)
    rid = pcmk_id(repl.name)
    clone = f"{rid}-clone"
    primitive = _primitive(rid, [("config", config_path), ("resource", repl.name),
                                 ("mode", "promotable")],
                           *pacemaker_timeouts(cfg.resources, repl.name), promotable=True)
    resources = (f'<clone id="{clone}"><meta_attributes id="{clone}-meta">'
                 f"{_nvpairs(clone, CLONE_META)}</meta_attributes>{primitive}</clone>")
    above = cfg.resources[1:]
    if not above:
        return resources, ""
    resources += _layer_group(cfg, config_path, above)
    constraints = (f'<rsc_colocation id="hahooks-stack-with-promoted" score="INFINITY" '
                   f'rsc="hahooks-stack" with-rsc="{clone}" with-rsc-role="Promoted"/>'
                   f'<rsc_order id="hahooks-stack-after-promote" kind="Mandatory" '
                   f'first="{clone}" first-action="promote" then="hahooks-stack" '
                   'then-action="start"/>')
    return resources, constraints


def _layer_group(cfg, config_path: str, layers) -> str:
    members = "".join(_primitive(pcmk_id(r.name),
                                 [("config", config_path), ("resource", r.name)],
                                 *pacemaker_timeouts(cfg.resources, r.name))
                      for r in layers)
    return f'<group id="hahooks-stack">{members}</group>'


def _stonith(node) -> tuple[str, str]:
    """(primitive, constraint) for a fence-agents [node] fence, else ("", "")."""
    if not (node.fence and node.fence_options and node.peer):
        return "", ""
    agent = os.path.basename(node.fence[0])
    rid = f"hahooks-fence-{node.peer}"
    params = [(k, v) for k, v in node.fence_options.items() if k not in (PASSWORD_FILE,
                                                                          "action")]
    params += [("pcmk_host_list", node.peer)]
    note = (f"<!-- {PASSWORD_FILE} is hahooks' own: add password or password_script here -->"
            if PASSWORD_FILE in node.fence_options else "")
    primitive = (f'<primitive id="{rid}" class="stonith" type="{escape(agent)}">{note}'
                 f'<instance_attributes id="{rid}-params">{_nvpairs(rid, params)}'
                 f'</instance_attributes><operations><op id="{rid}-monitor" name="monitor" '
                 'interval="60s"/></operations></primitive>')
    constraint = (f'<rsc_location id="{rid}-not-on-its-target" rsc="{rid}" '
                  f'node="{node.peer}" score="-INFINITY"/>')
    return primitive, constraint


def configuration(cfg, config_path: str, per_layer: bool = False,
                  promotable: bool = False) -> str:
    stonith, constraint = _stonith(cfg.node)
    if promotable:
        stack, ties = _promotable_stack(cfg, config_path)
        constraint += ties
    elif per_layer:
        stack = _layer_group(cfg, config_path, cfg.resources)
    else:
        stack = _primitive("hahooks", [("config", config_path)],
                           *pacemaker_timeouts(cfg.resources))
    return ("<configuration><crm_config>"
            '<cluster_property_set id="hahooks-options">'
            '<nvpair id="hahooks-stonith-enabled" name="stonith-enabled" value="true"/>'
            "</cluster_property_set></crm_config><nodes/>"
            f"<resources>{stonith}{stack}</resources>"
            f"<constraints>{constraint}</constraints></configuration>\n")
