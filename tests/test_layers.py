"""The layout is the architecture: one-way layers, no import loops, small modules (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "sbqueue"

#: bottom to top; a module may import its own layer and the layers below, never above
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("sbqueue._core", "sbqueue.errors", "sbqueue._version")),
    ("connection", ("sbqueue.connection",)),
    ("inspection", ("sbqueue.inspection",)),
    ("engine", ("sbqueue.engine",)),
    ("workbench", ("sbqueue.workbench",)),  # workbench and ops are siblings: neither imports the other
    ("ops", ("sbqueue.ops",)),
    ("cli", ("sbqueue.cli",)),
    ("public", ("sbqueue", "sbqueue.__main__", "sbqueue._public_paths", "sbqueue.history")),
]
SIBLINGS = {("workbench", "ops"), ("ops", "workbench")}
#: the command line imports each subcommand when it runs, so `sbqueue --help` stays fast
LAZY_ALLOWED = ("sbqueue.cli",)
#: modules that need an optional extra (pyarrow for history): imported where used, so the base install works
OPTIONAL = ("sbqueue.inspection.history",)
#: the inspection layer brings pandas (~0.4 s to import): the engine's few DataFrame-returning calls import it
#: where used, so producers, workers and process-pool children start without it (test_light_imports.py)
HEAVY = ("sbqueue.inspection", "sbqueue.inspection.schemas")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best, found = -1, -1
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            exact = prefix in ("sbqueue", "sbqueue.__main__", "sbqueue._public_paths", "sbqueue.history")
            hit = module == prefix if exact else (module == prefix or module.startswith(prefix + "."))
            if hit and len(prefix) > best:
                best, found = len(prefix), index
    assert found >= 0, f"{module} is in no layer: add it to tests/test_layers.py and docs/architecture.md"
    return found


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported sbqueue module, imported at module level?) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    top |= {id(n) for node in tree.body if isinstance(node, ast.If) for n in node.body}  # TYPE_CHECKING blocks
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sbqueue"):
            assert node.level == 0, f"{path}: relative import"
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.append((candidate if (PKG.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                              or (PKG.parent / candidate.replace(".", "/")).is_dir() else node.module, id(node) in top))
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names if a.name.startswith("sbqueue")]
    return found


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    mine = layer_of(module)
    for target, _ in imports(MODULES[module]):
        theirs = layer_of(target)
        pair = (LAYERS[mine][0], LAYERS[theirs][0])
        assert theirs <= mine and pair not in SIBLINGS, f"{module} ({pair[0]}) imports {target} ({pair[1]}): upward"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_imports_inside_functions(module: str) -> None:
    if module.startswith(LAZY_ALLOWED):
        return
    late = [target for target, at_top in imports(MODULES[module]) if not at_top and target not in OPTIONAL + HEAVY]
    assert not late, f"{module} imports {late} inside a function: fix the layering instead"


def test_no_import_cycles() -> None:
    graph = {m: {t for t, _ in imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    # a package's __init__ re-exporting its submodules is not a cycle of the submodules importing the package
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (> {MAX_LINES}): split it by responsibility"


@pytest.mark.parametrize("package", sorted(m for m, p in MODULES.items() if p.name == "__init__.py"))
def test_every_layer_folder_says_what_it_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    if package.count(".") == 1:
        assert "May import" in doc, f"{package}/__init__.py: say what the layer may import"
