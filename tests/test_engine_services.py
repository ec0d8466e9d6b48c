"""The engine/kind boundary (issue 18): a kind reaches the engine through one typed
reference, `ctx.engine` (kinds.base.EngineServices: fence, superseded, the release group's
holder scan), never through optional callbacks; a kind run alone gets services that fence
nothing and are never superseded. The engine module stays small: parallel groups live in
parallel.py."""
from __future__ import annotations

import dataclasses
import os

import pytest

from conftest import ROOT
from hahooks import config as config_mod
from hahooks.engine import Engine
from hahooks.errors import Superseded
from hahooks.kinds.base import Context, EngineServices
from hahooks.runner import Runner

LAB = ("sim", "sandbox", "drill")       # the lab, fenced off by issue 18 item 1


def stack(n: int = 2):
    return config_mod.parse({
        "node": {"platform": "linux"},
        "resource": [{"name": f"l{i}", "kind": "command", "acquire": ["true"],
                      "release": ["true"], "status": ["true"]} for i in range(n)]})


def test_a_kind_gets_the_engine_as_one_typed_reference():
    flips = []
    engine = Engine.for_config(stack(), superseded=lambda: bool(flips))
    assert isinstance(engine, EngineServices)
    ctx = engine.resource(1).ctx
    assert ctx.engine is engine
    assert {f.name for f in dataclasses.fields(Context)}.isdisjoint(
        {"fencer", "superseded", "holder_scan"})
    assert ctx.engine.superseded() is False and ctx.engine.holder_scan is None
    flips.append(1)
    with pytest.raises(Superseded):    # a wait ends as soon as the desire flips
        ctx.wait_for(lambda: False, "something that never comes", timeout=30)


def test_a_kind_run_alone_fences_nothing_and_is_never_superseded():
    cfg = stack(1)
    ctx = Context(runner=Runner(cfg.node.platform), node=cfg.node)
    assert isinstance(ctx.engine, EngineServices)
    assert ctx.engine.fence("test") is False
    assert ctx.engine.superseded() is False and ctx.engine.holder_scan is None
    assert ctx.wait_for(lambda: True, "at once") is True


def test_engine_and_module_sizes():
    """engine.py at most 300 lines, no production module over 400 (the lab is lab18's)."""
    top = os.path.join(ROOT, "lib", "hahooks")
    with open(os.path.join(top, "engine.py")) as fh:
        assert len(fh.readlines()) <= 300
    over = []
    for where, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not (where == top and d in LAB)]
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(where, name)) as fh:
                    if len(fh.readlines()) > 400:
                        over.append(os.path.relpath(os.path.join(where, name), top))
    assert over == []
