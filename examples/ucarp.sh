#!/bin/sh
# ucarp wiring for hahooks: how each node starts ucarp (e.g. from a systemd unit or rc script).
# ucarp runs  --upscript/--downscript IFACE VIP [XPARAM]  and waits for them; it never adds or
# removes the VIP itself. hooks/ucarp-up and hooks/ucarp-down (install them e.g. as
# /usr/local/libexec/hahooks/ucarp-up|down) add/remove the VIP and record master/slave for
# the stack (detached, so ucarp's adverts are not held up). The downscript also runs at
# start-up (a no-op when nothing is held) and, with --shutdown, when ucarp exits.
#
# hahooks.toml on each node:   [wiring]  interface = "eth0"  vip = "192.168.1.50/24"
# (the VIP is added with that prefix; calls for another interface/VIP are ignored).
# HAHOOKS_CONFIG in ucarp's environment selects another config file.
#
# node a (preferred): advskew 0         node b: advskew 100
# --preempt makes a take the VIP back when it returns; both nodes are then master for
# ~0.75 s (docs/reference/lab.md §3). The stack's own guards (replication layer / exclusive
# storage acquire) cover that window; leave --preempt out to avoid the second move.
set -eu
NODE_IP=${NODE_IP:-192.168.1.11}          # this node's own address on eth0
ADVSKEW=${ADVSKEW:-0}                     # 100 on node b
HOOKS=${HOOKS:-/usr/local/libexec/hahooks}
exec ucarp --interface=eth0 --srcip="$NODE_IP" --vhid=42 --passfile=/etc/ucarp.pass \
    --addr=192.168.1.50 --advbase=1 --advskew="$ADVSKEW" --preempt --shutdown \
    --upscript="$HOOKS/ucarp-up" --downscript="$HOOKS/ucarp-down"
