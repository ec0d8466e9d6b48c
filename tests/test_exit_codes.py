"""The exit codes are defined once (errors.ExitCode, the OCF numbers): the OCF agent and
every command import them rather than writing the numbers again (issue 18 item 4)."""
from __future__ import annotations

import ast
import os
import re

from conftest import ROOT

from hahooks import errors
from hahooks.wiring import ocf

# an OCF code name bound to a number literal: `OCF_SUCCESS = 0`, `A, B = 0, 1`
NUMBERED = re.compile(r"^\s*(OCF_[A-Z_]+\s*(,\s*OCF_[A-Z_]+\s*)*)=\s*\d", re.M)


def test_the_ocf_agent_speaks_in_the_one_table():
    names = {"OCF_SUCCESS": errors.ExitCode.OK, "OCF_ERR_GENERIC": errors.ExitCode.GENERIC,
             "OCF_ERR_UNIMPLEMENTED": errors.ExitCode.UNIMPLEMENTED,
             "OCF_ERR_PERM": errors.ExitCode.PERM,
             "OCF_ERR_INSTALLED": errors.ExitCode.NOT_INSTALLED,
             "OCF_NOT_RUNNING": errors.ExitCode.NOT_RUNNING}
    for name, member in names.items():
        assert getattr(ocf, name) is member, name


def test_no_module_writes_the_numbers_again():
    """Only ocf/hahooks keeps its own 5: it is what it answers when hahooks itself cannot
    be imported; it must still be ExitCode.NOT_INSTALLED."""
    found = []
    for top, _, files in os.walk(os.path.join(ROOT, "lib", "hahooks")):
        for name in files:
            if name.endswith(".py") and name != "errors.py":
                path = os.path.join(top, name)
                with open(path) as fh:
                    found += [f"{os.path.relpath(path, ROOT)}: {m.group(0).strip()}"
                              for m in NUMBERED.finditer(fh.read())]
    assert found == []
    with open(os.path.join(ROOT, "ocf", "hahooks")) as fh:
        tree = ast.parse(fh.read())
    own = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
           for t in node.targets if isinstance(t, ast.Name) and t.id.startswith("OCF_")}
    assert own == {"OCF_ERR_INSTALLED": errors.ExitCode.NOT_INSTALLED}
