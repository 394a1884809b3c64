"""The package's import structure, read from the source (ast), not by importing it.

Every ``import`` / ``from ... import`` in bench/ and models/ counts, at module level and inside
functions: a function-level import only delays a dependency, it does not remove it. The graph
must be acyclic, and no module may import one of a higher layer (bottom to top below).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "models")

# Bottom to top; groups in one layer must not import each other. `bench` itself (the package
# root) holds only the version.
LAYERS = [
    {"bench", "bench.core"},
    {"bench.data", "models"},
    {"bench.metrics"},
    {"bench.results"},
    {"bench.harness"},
    {"bench.analysis"},
    {"bench.tools"},
    {"bench.cli"},
]


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module of bench/ or models/
    line: int
    in_function: bool


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The most specific known module that ``name`` names (a.b.func -> a.b)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the importing module's package
        is_package = MODULES[module].name == "__init__.py"
        package = module.split(".")[: len(module.split(".")) - (not is_package)]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    # `from pkg import sub` depends on pkg.sub when that is a module, else on pkg itself
    return [f"{base}.{alias.name}" for alias in node.names]


def _imports_of(module: str) -> list[Import]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for name in _imported_names(child, module):
                    target = _resolve(name)
                    if target is not None and target != module:
                        out.append(Import(module, target, child.lineno, in_function))
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            visit(child, inner)

    visit(tree, False)
    return list(dict.fromkeys(out))  # one per alias otherwise


IMPORTS = [imp for module in MODULES for imp in _imports_of(module)]


def _group(module: str) -> tuple[int, str]:
    """(layer, group) of a module: the longest group name that is it or a package above it."""
    matches = [
        (len(group), layer, group)
        for layer, groups in enumerate(LAYERS)
        for group in groups
        if module == group or module.startswith(group + ".")
    ]
    assert matches, f"{module} is in no layer: add its package to LAYERS"
    _, layer, group = max(matches)
    return layer, group


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None (iterative DFS)."""
    state = dict.fromkeys(edges, 0)  # 0 new, 1 on the current path, 2 done
    for start in edges:
        if state[start]:
            continue
        path, stack = [start], [iter(sorted(edges[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state[nxt] == 1:
                return path[path.index(nxt) :] + [nxt]
            elif state[nxt] == 0:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges[nxt])))
    return None


def test_the_scan_sees_the_known_structure():
    """Guards the scanner itself: a parser that found nothing would pass every test below."""
    assert {"bench.cli", "bench.harness.train", "models.base", "bench.metrics.evaluate"} <= set(
        MODULES
    )
    edges = {(i.source, i.target, i.in_function) for i in IMPORTS}
    assert ("bench.harness.train", "bench.metrics.evaluate", False) in edges
    assert ("models.vae", "bench.core.errors", False) in edges
    assert ("bench.cli", "bench.harness.sweep", True) in edges  # function-level, lazy
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_is_acyclic():
    edges = {module: set() for module in MODULES}
    for imp in IMPORTS:
        edges[imp.source].add(imp.target)
    cycle = _find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_a_higher_layer_or_a_sibling_group():
    wrong = []
    for imp in IMPORTS:
        (src_layer, src_group), (dst_layer, dst_group) = _group(imp.source), _group(imp.target)
        if dst_layer > src_layer or (dst_layer == src_layer and dst_group != src_group):
            wrong.append(f"{imp.source}:{imp.line} imports {imp.target}")
    assert not wrong, "layering broken:\n" + "\n".join(wrong)


def test_models_use_only_the_core_of_bench():
    outside = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in IMPORTS
        if _group(i.source)[1] == "models" and _group(i.target)[1] not in ("models", "bench.core")
    ]
    assert not outside, "\n".join(outside)


@pytest.mark.parametrize("module", ["bench.metrics.evaluate"])
def test_no_function_level_imports_of_the_project(module):
    """They existed only to hide an import cycle; the imports belong at the top."""
    hidden = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in IMPORTS
        if i.source == module and i.in_function
    ]
    assert not hidden, "\n".join(hidden)
