"""No two modules import each other, directly or round a longer circle.

Every import statement counts: at module level, inside a function (a lazy import still ties the two
modules together: neither can be read, moved or tested without the other) and under `TYPE_CHECKING`
(the type checker follows those). A circle is where a rule sits in the wrong module; the fix is to move
the rule, not to hide the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.paths import REPO

PACKAGES = ("checks", "widgets", "tui", "lab", "bench")


def _module_names(root: Path) -> dict[str, Path]:
    names: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names[".".join(parts)] = path
    return names


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: from the module's package upwards
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [base] + [f"{base}.{alias.name}" for alias in node.names]  # `from pkg import module` names a module


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """module → the project's modules it imports (a name that is not a module counts as its module)."""
    names = _module_names(root)
    graph: dict[str, set[str]] = {}
    for module, path in names.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in _imported(module, path, node):
                while name and name not in names:
                    name = name.rpartition(".")[0]
                if name and name != module and not module.startswith(name + "."):  # a package's own __init__
                    targets.add(name)
        graph[module] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _describe(component: list[str], graph: dict[str, set[str]]) -> str:
    members = set(component)
    return "; ".join(f"{m} → {', '.join(sorted(graph[m] & members))}" for m in component)


def test_no_import_circles() -> None:
    graph = import_graph()
    assert "checks.engine" in graph and "tui.cli" in graph  # the walk found the project
    assert [_describe(c, graph) for c in circles(graph)] == []


def test_the_walk_finds_a_circle_through_a_lazy_import(tmp_path: Path) -> None:
    """The check can fail: a module-level import one way and an in-function one back is a circle."""
    package = tmp_path / "checks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from checks.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from . import a\n    return a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from checks.a import x\n")
    graph = import_graph(tmp_path)
    assert graph["checks.a"] == {"checks.b"}
    assert graph["checks.b"] == {"checks.a"}
    assert circles(graph) == [["checks.a", "checks.b"]]
