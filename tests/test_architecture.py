"""The layout's contracts, read from the source: layers point one way, the torch-free core stays
torch-free, functions stay short. Imports inside functions count: a lazy import is still a
dependency."""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgekd"
TORCH_FREE = ("edgekd.runtime", "edgekd.bench", "edgekd.folders", "edgekd.roles", "edgekd.methods", "edgekd.targets",
              "edgekd.data.config", "edgekd.distill.result", "edgekd.qad.result", "edgekd.runfolder", "edgekd.task", "edgekd.paired")
LONGEST_FUNCTION = 60  # lines, decorators excluded


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[tuple[str, int]]]:
    """Every edgekd module → the edgekd modules it imports (with the line), anywhere in the file."""
    found: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = _module(path)
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found[module] |= {(a.name, node.lineno) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                target = ".".join(base[: len(base) - node.level + 1] + [node.module or ""]).strip(".") if node.level else node.module
                names = [f"{target}.{a.name}" for a in node.names] if target == "edgekd" else [target]
                found[module] |= {(n, node.lineno) for n in names}
    return found


def _layer(module: str) -> str:
    """The unit the one-way rule is about: a subpackage (edgekd.export) or a top-level module."""
    return ".".join(module.split(".")[:2])


def _package_graph() -> dict[str, dict[str, list[str]]]:
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for module, imported in _imports().items():
        if module == "edgekd":  # the API façade above everything: it names every stage by design
            continue
        for name, line in imported:
            if name.startswith("edgekd.") and _layer(name) != _layer(module) and _layer(name) != "edgekd":
                graph[_layer(module)][_layer(name)].append(f"{module}:{line} imports {name}")
    return graph


def _cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one layer (Tarjan)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return components


def test_no_cycle_between_packages():
    graph = _package_graph()
    cycles = _cycles(graph)
    evidence = [line for cycle in cycles for a in cycle for b in cycle if b in graph.get(a, {}) for line in graph[a][b][:2]]
    assert not cycles, f"import cycles between {cycles}:\n" + "\n".join(evidence)


@pytest.mark.parametrize("importer, imported", [("edgekd.export", "edgekd.bench"), ("edgekd.bench", "edgekd.export")])
def test_export_and_bench_never_import_each_other(importer, imported):
    assert not _package_graph()[importer].get(imported), _package_graph()[importer][imported]


def test_the_cycle_check_finds_a_cycle():
    """The check itself can fail: a made-up graph with a loop is caught, a chain is not."""
    assert _cycles({"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": ["x"]}, "b": {"c": ["y"]}}) == []


def test_the_torch_free_core_imports_no_torch_even_lazily():
    offenders = []
    for module, imported in _imports().items():
        if module.startswith(TORCH_FREE):
            offenders += [f"{module}:{line} imports {name}" for name, line in imported if name.split(".")[0] == "torch"]
    assert not offenders, "\n".join(offenders)


def test_the_torch_free_core_reaches_no_torch_module_through_edgekd():
    """What a torch-free module imports from edgekd is torch-free too (at import time)."""
    import subprocess
    import sys

    modules = sorted({m for m in _imports() if m.startswith(TORCH_FREE)})
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_function_is_short():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION:
                long.append(f"{_module(path)}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, "split these into named steps:\n" + "\n".join(long)
