"""The gan_mri package's import graph has no circles (issue 38), and the model core imports no TensorFlow.

The graph is read from the source with `ast`, not from a running interpreter: every ``import x`` and
``from x import y`` counts, at module level or inside a function (a function-local import is an edge that
is only taken later, not one that is not there), with relative imports resolved against the importing
module's package. ``from package import name`` is an edge to the submodule ``package.name`` when there is
one, otherwise to the package. That importing a submodule first runs its parent packages' ``__init__`` is
not counted: ``gan_mri.models`` importing its own ``gan_mri.models.unit`` is how packages work, not a circle.
Imports by a string at run time (`gan_mri.config.Family`'s "module:Class" model path) are not edges.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "gan_mri"


def _modules(package_dir: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (source file, is a package ``__init__``) for every ``.py`` under ``package_dir``."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _known(name: str | None, modules) -> str | None:
    """The longest prefix of the dotted ``name`` that is a module of the package (None: none is)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(package_dir: Path) -> dict[str, dict[str, list[int]]]:
    """Module -> {imported module of the same package -> line numbers of the imports}.

    Args:
        package_dir: the folder of the top-level package (holding its ``__init__.py``).

    Returns:
        Every module of the package, each with the package modules it imports (itself excluded).
    """
    modules = _modules(package_dir)
    graph: dict[str, dict[str, list[int]]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        edges: dict[str, list[int]] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_known(alias.name, modules) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module
                targets = [_known(f"{source}.{alias.name}", modules) or _known(source, modules)
                           for alias in node.names]
            for target in targets:
                if target is None or target == name:
                    continue
                lines = edges.setdefault(target, [])
                if node.lineno not in lines:
                    lines.append(node.lineno)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, dict]) -> list[list[str]]:
    """One circle per strongly connected group of modules, as a path ``[a, b, ..., a]``; ``[]`` for none.

    Tarjan's strongly connected components, then within each group of two or more modules the shortest
    way from its first module (alphabetically) back to itself.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for group in sorted(groups):
        members, start = set(group), group[0]
        previous: dict[str, str] = {}
        frontier, last = [start], None
        while last is None:  # breadth first: the shortest way back to `start`
            following = []
            for node in frontier:
                for successor in sorted(graph[node]):
                    if successor == start and last is None:
                        last = node
                    elif successor in members and successor != start and successor not in previous:
                        previous[successor] = node
                        following.append(successor)
            frontier = following
        path = [start, last]
        while path[-1] != start:
            path.append(previous[path[-1]])
        cycles.append(path[::-1])
    return cycles


def describe(cycle: list[str], graph: dict[str, dict[str, list[int]]]) -> str:
    """``a -> b (line 3) -> a (line 12)``: a circle with the line of each import."""
    steps = [cycle[0]] + [f"{after} (line {', '.join(map(str, graph[before][after]))} of {before})"
                          for before, after in zip(cycle, cycle[1:])]
    return " -> ".join(steps)


def test_gan_mri_has_no_import_circles():
    graph = import_graph(PACKAGE_ROOT)
    # Guards the reader itself: a parser that found no edges would find no circles either.
    assert "gan_mri.confidence" in graph["gan_mri.inference"]
    assert "gan_mri.config" in graph["gan_mri.losses"]
    cycles = find_cycles(graph)
    assert not cycles, "import circles among gan_mri modules:\n" + "\n".join(describe(c, graph) for c in cycles)


# --------------------------------------------------------------------------- the check finds circles
def test_find_cycles_on_a_synthetic_graph():
    assert find_cycles({"a": {"b": [1]}, "b": {"c": [1]}, "c": {}}) == []
    assert find_cycles({"a": {"b": [1]}, "b": {"c": [1]}, "c": {"a": [1]}, "d": {"a": [1]}}) == [["a", "b", "c", "a"]]
    two = find_cycles({"x": {"y": [1]}, "y": {"x": [1]}, "p": {"q": [1]}, "q": {"p": [1], "x": [1]}})
    assert two == [["p", "q", "p"], ["x", "y", "x"]]


def test_import_graph_finds_a_circle_through_a_function_local_relative_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import leaf\n")
    (package / "low.py").write_text("import os\n\nfrom pkg.sub.leaf import helper\n")
    (package / "sub" / "leaf.py").write_text("def helper():\n    from ..low import os\n    return os\n")
    (package / "top.py").write_text("from pkg import low, sub\n")
    graph = import_graph(package)
    assert graph["pkg.low"] == {"pkg.sub.leaf": [3]}
    assert graph["pkg.sub.leaf"] == {"pkg.low": [2]}
    assert graph["pkg.sub"] == {"pkg.sub.leaf": [1]}
    assert graph["pkg.top"] == {"pkg.low": [1], "pkg.sub": [1]}
    cycles = find_cycles(graph)
    assert cycles == [["pkg.low", "pkg.sub.leaf", "pkg.low"]]
    assert describe(cycles[0], graph) == ("pkg.low -> pkg.sub.leaf (line 3 of pkg.low) -> pkg.low "
                                          "(line 2 of pkg.sub.leaf)")


# --------------------------------------------------------------------------- no TensorFlow in the core
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs the JAX backend")
def test_model_core_imports_no_tensorflow():
    code = ("import sys; import gan_mri.config, gan_mri.losses, gan_mri.models; "
            "gan_mri.config.get_preset('unit', gan_loss='lsgan'); "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'); "
            "assert not loaded, loaded[:5]")
    environment = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
