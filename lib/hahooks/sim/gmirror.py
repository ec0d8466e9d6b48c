"""Simulated gmirror (work in progress)."""
from __future__ import annotations


def main(ctx, args):
    ctx.err.write("gmirror: not simulated yet\n")
    return 1


def node_down(store, st, node):
    pass
