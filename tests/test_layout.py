"""The package's layout: every module imports on its own, and imports only point down.

``test_every_module_imports_first`` imports each module of ``leakage_lab`` as the *first*
module of the package, under an *empty* package ``__init__`` (a stand-in module with the
package's path), so that no import order set up elsewhere can hide a cycle: a cycle
shows as a partially-initialised-module error. One fresh interpreter runs them all; it
removes every ``leakage_lab`` module from ``sys.modules`` before each import (third-party
libraries such as JAX stay loaded, which is what keeps it to one subprocess).

``test_import_graph_has_no_cycle`` reads the imports from the source (``ast``) and looks
for a cycle among the package's modules. Only imports that run when a module is loaded
count: those at module level (also inside a module-level ``if``/``try``). Imports inside
functions (lazy imports, run on first use) are *excluded*. ``leakage_lab/__init__.py``
itself, which imports every module for ``import leakage_lab as ll``, is the graph's
root and is left out; a subpackage's ``__init__`` is a node like any module, except that
a module's edges to its own packages are dropped (Python loads them before it).
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import leakage_lab

ROOT = Path(leakage_lab.__file__).parent


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(ROOT)], "leakage_lab."))


def _source(module: str) -> Path:
    rel = Path(*module.split(".")[1:])
    package = ROOT / rel / "__init__.py"
    return package if package.exists() else ROOT / rel.with_suffix(".py")


_IMPORT_EACH_FIRST = r"""
import importlib, json, sys, traceback, types
root, names = sys.argv[1], json.loads(sys.argv[2])
failures = {}
for name in names:
    for loaded in [m for m in sys.modules if m == "leakage_lab" or m.startswith("leakage_lab.")]:
        del sys.modules[loaded]
    empty = types.ModuleType("leakage_lab")
    empty.__path__ = [root]
    sys.modules["leakage_lab"] = empty
    try:
        importlib.import_module(name)
    except Exception:
        failures[name] = traceback.format_exc(limit=-3)
print(json.dumps(failures))
"""


def test_every_module_imports_first():
    names = _modules()
    assert {"leakage_lab.attacks", "leakage_lab.engine", "leakage_lab.dlg"} <= set(names)
    out = subprocess.run([sys.executable, "-c", _IMPORT_EACH_FIRST, str(ROOT), json.dumps(names)],
                         capture_output=True, text=True, timeout=600, check=True)
    failures = json.loads(out.stdout.strip().splitlines()[-1])
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


def _imports(module: str, known: set[str]) -> set[str]:
    """The package modules that ``module`` imports when it is loaded."""
    path = _source(module)
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for a in node.names:   # a submodule, or else a name of the module ``base``
                    found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(getattr(node, "finalbody", []))

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    # A module's own packages are loaded before it, whatever it imports: no edge.
    ancestors = {module.rsplit(".", k)[0] for k in range(1, module.count(".") + 1)}
    return {name for name in found if name in known and name != module} - ancestors


def test_import_graph_has_no_cycle():
    known = set(_modules())
    graph = {m: _imports(m, known) for m in known}
    assert graph["leakage_lab.attacks"], "the graph should see attacks' imports"
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)


def test_attacks_only_re_exports():
    tree = ast.parse((ROOT / "attacks.py").read_text(encoding="utf-8"))
    kinds = {type(node).__name__ for node in tree.body}
    assert kinds <= {"Expr", "ImportFrom", "Assign"}, kinds   # docstring, imports, __all__
    import leakage_lab.attacks as attacks

    assert {"dlg", "reconstruct", "bayes", "fedavg", "analytic_fc", "AttackResult"} <= set(
        attacks.__all__)
    assert all(hasattr(attacks, name) for name in attacks.__all__)
