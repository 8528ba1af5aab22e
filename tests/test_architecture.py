"""The project's layering, read from the source (no imports executed).

- no import cycles between the project's modules (imports inside functions count too:
  a lazy import hides a cycle, it does not remove it);
- core/ imports neither ray, mlflow, ablab nor trainables (the cores run without the platform);
- ablab/ imports no trainables (the platform finds them by entry point);
- every module under trainables/ is short and imports no torch.nn (no ML logic there);
- benchmarks/ import nothing from tests/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ablab", "core", "trainables")
TRAINABLE_MAX_LINES = 40


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(*folders: str) -> dict[str, Path]:
    return {_module_name(p): p for f in folders for p in sorted((REPO / f).rglob("*.py"))}


MODULES = _sources(*PACKAGES)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file, as absolute dotted names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            # `from ablab import configs` imports the module ablab.configs
            out.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return out


def project_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        targets = set()
        for imported in imports(path):
            # the module itself, or the nearest enclosing module that exists (a package)
            parts = imported.split(".")
            while parts and ".".join(parts) not in MODULES:
                parts.pop()
            if parts and ".".join(parts) != name:
                targets.add(".".join(parts))
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
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


def _importers(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for name, path in MODULES.items():
        if name == prefix or name.startswith(prefix + "."):
            for imported in sorted(imports(path)):
                if imported.split(".")[0] in forbidden:
                    bad.append(f"{path.relative_to(REPO)} imports {imported}")
    return bad


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_inside_the_project():
    found = cycles(project_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_core_imports_neither_ray_mlflow_ablab_nor_trainables():
    bad = _importers("core", ("ray", "mlflow", "ablab", "trainables"))
    assert not bad, "\n".join(bad)


def test_ablab_imports_no_trainables():
    bad = _importers("ablab", ("trainables",))
    assert not bad, "\n".join(bad)


def test_benchmarks_import_nothing_from_tests():
    bad = []
    for path in sorted((REPO / "benchmarks").rglob("*.py")):
        bad += [f"{path.relative_to(REPO)} imports {m}" for m in sorted(imports(path)) if m.split(".")[0] == "tests"]
    assert not bad, "\n".join(bad)


TRAINABLES = sorted(p for p in (REPO / "trainables").glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", TRAINABLES, ids=[p.stem for p in TRAINABLES])
def test_trainables_are_thin(path):
    """A trainable builds its config, restores, iterates the core's `run`, reports."""
    nn = sorted(m for m in imports(path) if m == "torch.nn" or m.startswith("torch.nn."))
    assert not nn, f"{path.name} imports {nn}: networks and losses belong in core/"
    lines = len(path.read_text().splitlines())
    assert lines <= TRAINABLE_MAX_LINES, (
        f"{path.name} has {lines} lines (at most {TRAINABLE_MAX_LINES}): ML logic left in a trainable "
        "belongs in core/<pipeline>/experiment.py (this fails until the cores' refactor lands)"
    )
