"""The package's layers: each imports only from the layers below it (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "osteomet"

#: Lowest first. A module may import from its own layer and the layers before it.
LAYERS: list[set[str]] = [
    {"errors", "utils", "layout", "stage", "config", "__init__"},
    {"data"},
    {"training"},
    {"evaluation"},
    {"radiomics"},
    {"models"},
    {"mri", "ct"},
    {"report"},
    {"pipeline"},
    {"cli", "__main__"},
]
#: Siblings that must not import each other even though they share a layer.
SEPARATE = [("mri", "ct")]


def _layer(top: str) -> int:
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"osteomet.{top} is in no layer of tests/test_architecture.py; add it")


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("osteomet"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("osteomet")]
    return found


def test_every_import_goes_down_the_layers() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        top = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for line, module in _imports(path):
            target = _top(module)
            if target == "__init__" and module == "osteomet":
                continue
            if _layer(target) > _layer(top):
                problems.append(f"{rel}:{line} imports {module} (layer {target} is above {top})")
            if (top, target) in SEPARATE or (target, top) in SEPARATE:
                problems.append(f"{rel}:{line} imports {module}: {top} and {target} must stay independent")
    assert not problems, "\n".join(problems)


def test_no_import_cycles_between_modules() -> None:
    """Module-level and function-level imports together form no cycle (a hidden cycle is still a cycle)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        graph[name] = {m for _, m in _imports(path)}
    modules = set(graph)

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    edges = {m: {r for t in targets if (r := resolve(t)) and r != m and not m.startswith(r + ".")}
             for m, targets in graph.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
    assert not cycles, "\n".join(cycles)
