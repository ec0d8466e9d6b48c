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
"""
from __future__ import annotations

import os

from hahooks.fence_agents import PASSWORD_FILE
from hahooks.wiring.ocf import escape
from hahooks.wiring.pcmk_ops import pacemaker_timeouts, pcmk_id


def _nvpairs(owner: str, pairs) -> str:
    return "".join(f'<nvpair id="{owner}-{escape(k)}" name="{escape(k)}" value="{escape(v)}"/>'
                   for k, v in pairs)


def _primitive(rid: str, params, start: str, stop: str) -> str:
    return (f'<primitive id="{rid}" class="ocf" provider="hahooks" type="hahooks">'
            f'<instance_attributes id="{rid}-params">{_nvpairs(rid, params)}'
            "</instance_attributes><operations>"
            f'<op id="{rid}-start" name="start" interval="0s" timeout="{start}"/>'
            f'<op id="{rid}-stop" name="stop" interval="0s" timeout="{stop}"/>'
            f'<op id="{rid}-monitor" name="monitor" interval="20s" timeout="60s"/>'
            "</operations></primitive>")


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


def configuration(cfg, config_path: str, per_layer: bool = False) -> str:
    stonith, constraint = _stonith(cfg.node)
    if per_layer:
        members = "".join(_primitive(pcmk_id(r.name),
                                     [("config", config_path), ("resource", r.name)],
                                     *pacemaker_timeouts(cfg.resources, r.name))
                          for r in cfg.resources)
        stack = f'<group id="hahooks-stack">{members}</group>'
    else:
        stack = _primitive("hahooks", [("config", config_path)],
                           *pacemaker_timeouts(cfg.resources))
    return ("<configuration><crm_config>"
            '<cluster_property_set id="hahooks-options">'
            '<nvpair id="hahooks-stonith-enabled" name="stonith-enabled" value="true"/>'
            "</cluster_property_set></crm_config><nodes/>"
            f"<resources>{stonith}{stack}</resources>"
            f"<constraints>{constraint}</constraints></configuration>\n")
