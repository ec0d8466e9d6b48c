"""The lab contract: the production package (everything in lib/hahooks outside hahooks.lab)
never imports the lab (simulator, sandbox, drill), so a production install without it
works. The one way in is the CLI's gate, which registers the lab's subcommands only where
importlib finds the lab (lib/hahooks/cli.py LAB_COMMAND_MODULES); see docs/architecture.md."""
from __future__ import annotations

import ast
import functools
import os
import shutil
import subprocess
import sys

import pytest

from conftest import LIB
from test_import_graph import circles, import_graph

LAB = "hahooks.lab"
PACKAGE_DIR = os.path.join(LIB, "hahooks")
# the CLI's gate names the lab's command modules as strings (never an import statement)
GATE = os.path.join(PACKAGE_DIR, "cli.py")


def module_name(path: str) -> str:
    rel = os.path.relpath(path, LIB)[:-len(".py")].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def production_modules() -> list[str]:
    found = []
    for top, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__"
                         and os.path.join(top, d) != os.path.join(PACKAGE_DIR, "lab"))
        found += [os.path.join(top, f) for f in sorted(files) if f.endswith(".py")]
    return found


def _is_lab(name: str) -> bool:
    return name == LAB or name.startswith(LAB + ".")


def lab_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import of the lab in `source` (module `module`), wherever it stands (module
    level, function, class, try/if), absolute or relative, as "line: what"."""
    return [f"{line}: {name}" for line, names, _ in imports(source, module, is_package)
            for name in [n for n in names if _is_lab(n)][:1]]


def imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, list, bool]]:
    """(line, absolute module names, is `from X import a, b`) of every import in `source`;
    for a from-import the names are X, X.a, X.b (a and b may be modules or attributes)."""
    package = module if is_package else module.rpartition(".")[0]
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and _called(node) in {"import_module", "__import__"}):
            names = [node.args[0].value]
        else:
            continue
        hits.append((node.lineno, names, isinstance(node, ast.ImportFrom)))
    return hits


def _called(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


@pytest.mark.parametrize("source, module, want", [
    ("import hahooks.lab.sim\n", "hahooks.engine", ["1: hahooks.lab.sim"]),
    ("from hahooks.lab.drill import run\n", "hahooks.cli", ["1: hahooks.lab.drill"]),
    ("from hahooks import lab\n", "hahooks.cli", ["1: hahooks.lab"]),
    ("def f():\n    from ..lab.sandbox import lab\n", "hahooks.commands.x",
     ["2: hahooks.lab.sandbox"]),
    ("class C:\n    def f(self):\n        from . import lab\n", "hahooks.engine",
     ["3: hahooks.lab"]),
    ("import importlib\nimportlib.import_module('hahooks.lab.drill.command')\n",
     "hahooks.x", ["2: hahooks.lab.drill.command"]),
    ("from hahooks import labels, engine\nimport hahooks.laboratory\n", "hahooks.cli", []),
    ("from .kinds import lab\n", "hahooks.engine", []),
])
def test_the_checker_sees_every_form_of_import(source, module, want):
    assert lab_imports(source, module) == want


def test_no_production_module_imports_the_lab():
    modules = production_modules()
    assert len(modules) > 40 and GATE in modules
    offenders = {}
    for path in modules:
        with open(path, encoding="utf-8") as fh:
            source = fh.read()
        hits = lab_imports(source, module_name(path), path.endswith("__init__.py"))
        if hits:
            offenders[os.path.relpath(path, LIB)] = hits
    assert offenders == {}


def test_only_the_cli_gate_names_the_lab():
    """A module name in a string is an import waiting to happen: only the gate may hold one."""
    named = []
    for path in production_modules():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
        if any(isinstance(n, ast.Constant) and isinstance(n.value, str) and _is_lab(n.value)
               for n in ast.walk(tree)):
            named.append(os.path.relpath(path, LIB))
    assert named == [os.path.relpath(GATE, LIB)]


@pytest.fixture(scope="module")
def without_lab(tmp_path_factory):
    """The production package alone, as a production wheel has it: a copy of lib/hahooks
    without lab/, first on PYTHONPATH (and so the only `hahooks` the interpreter finds)."""
    lib = tmp_path_factory.mktemp("production") / "lib"
    shutil.copytree(PACKAGE_DIR, lib / "hahooks",
                    ignore=lambda d, names: [n for n in names if n == "__pycache__"
                                             or os.path.join(d, n) == os.path.join(
                                                 PACKAGE_DIR, "lab")])
    env = {**os.environ, "PYTHONPATH": str(lib)}

    def run(*argv):
        return subprocess.run([sys.executable, *argv], env=env,
                              capture_output=True, text=True, timeout=60)
    return run


def test_without_the_lab_the_cli_works_and_the_drill_says_what_it_needs(without_lab):
    r = without_lab("-c", "import hahooks.lab")
    assert r.returncode == 1 and "No module named 'hahooks.lab'" in r.stderr
    without_lab = functools.partial(without_lab, "-m", "hahooks")
    r = without_lab("--help")
    assert r.returncode == 0 and "drill" in r.stdout and "status" in r.stdout, r.stderr
    for argv in (["drill"], ["drill", "--list"], ["drill", "--scenario", "seed000", "--keep"]):
        r = without_lab(*argv)
        assert r.returncode == 5, (argv, r.stdout, r.stderr)
        assert r.stderr.strip().splitlines() == [
            "hahooks: error: the drill needs a development install (scripts/bootstrap): "
            "the lab (hahooks.lab) is not installed"], argv
    r = without_lab("check", "-c", "/nonexistent/hahooks.toml")
    assert r.returncode == 6, r.stderr


def test_with_the_lab_the_cli_registers_the_real_drill():
    from hahooks import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    drill = sub.choices["drill"]
    assert {"--scenario", "--inject", "--list"} <= set(drill._option_string_actions)


def lab_modules() -> dict[str, str]:
    found = {}
    for top, dirs, files in os.walk(os.path.join(PACKAGE_DIR, "lab")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found.update({module_name(os.path.join(top, f)): os.path.join(top, f)
                      for f in files if f.endswith(".py")})
    return found


def test_the_circle_finder_finds_a_circle(tmp_path):
    """The circle finder is test_import_graph's (one walker for the whole package): a
    function-level import closes a circle too."""
    sources = {"__init__": "from hahooks.a import A\n", "a": "from hahooks import b\n",
               "b": "def f():\n    from hahooks.a import g\n", "c": "import hahooks.a\n"}
    (tmp_path / "hahooks").mkdir()
    for name, text in sources.items():
        (tmp_path / "hahooks" / f"{name}.py").write_text(text)
    assert circles(import_graph(str(tmp_path))) == [{"hahooks.a", "hahooks.b"}]
    (tmp_path / "hahooks" / "b.py").write_text("def f():\n    return 1\n")
    assert circles(import_graph(str(tmp_path))) == []


def test_the_lab_has_no_import_circle():
    graph = {m: {d for d in deps if _is_lab(d)}
             for m, deps in import_graph().items() if _is_lab(m)}
    assert "hahooks.lab.drill.cluster" in graph and "hahooks.lab.sim.world" in graph
    assert circles(graph) == []


def test_no_lab_module_is_over_400_lines():
    """The project's module size rule holds in the lab too (common review: split along a
    real seam, not to pass a count)."""
    long = {}
    for name, path in lab_modules().items():
        with open(path, encoding="utf-8") as fh:
            lines = len(fh.readlines())
        if lines > 400:
            long[name] = lines
    assert long == {}
