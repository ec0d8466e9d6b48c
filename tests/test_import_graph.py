"""The import graph of lib/hahooks, read with ast: no import circle.

Every import counts, at module level and inside functions, absolute and relative: a
function-local import hides a circle from Python but not from the design, and issue 18 asks
for none (the circle makes the import order matter, and the local import becomes a
workaround instead of a choice).
"""
from __future__ import annotations

import ast
import os
import textwrap

from conftest import LIB

PACKAGE = "hahooks"


def modules_under(lib: str) -> dict[str, str]:
    """module name -> file, for every .py of the package under `lib`."""
    found = {}
    for dirpath, _dirs, files in os.walk(os.path.join(lib, PACKAGE)):
        for name in files:
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), lib)[:-3].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            found[".".join(rel)] = os.path.join(dirpath, name)
    return found


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from X import ...` names (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: str, modules: dict[str, str]) -> set[str]:
    """The package's modules that `module` imports anywhere in its file ("from pkg import
    sub" counts as an import of pkg.sub when sub is a module, else of pkg)."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    is_package = path.endswith("__init__.py")
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                     for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:   # "import hahooks.lab.sim.world.x" etc.
                name = name.rpartition(".")[0]
            if name and name != module and name.split(".")[0] == PACKAGE:
                targets.add(name)
    return targets


def import_graph(lib: str = LIB) -> dict[str, set[str]]:
    modules = modules_under(lib)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative: the
    graph is deep enough for Python's recursion limit to matter one day)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_circle_finder_sees_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """A function-local import, a relative one and `from pkg import module` are edges: a
    walk of module-level absolute imports alone would miss most of the circles there were."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "",
        "a.py": "def f():\n    from hahooks import b\n",
        "b.py": "from .sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "from ..a import f\nimport hahooks.sub.d.nothing\n",
        "sub/d.py": "",
    }
    for name, text in sources.items():
        (pkg / name).write_text(textwrap.dedent(text))
    graph = import_graph(str(tmp_path))
    assert graph["hahooks.a"] == {"hahooks.b"}
    assert graph["hahooks.b"] == {"hahooks.sub.c"}
    assert graph["hahooks.sub.c"] == {"hahooks.a", "hahooks.sub.d"}
    assert circles(graph) == [{"hahooks.a", "hahooks.b", "hahooks.sub.c"}]


def test_no_import_circle_in_lib_hahooks():
    graph = import_graph()
    assert "hahooks.engine" in graph and graph["hahooks.engine"], "the walk found nothing"
    found = [sorted(c) for c in circles(graph)]
    assert not found, f"import circle(s) in lib/hahooks: {found}"
