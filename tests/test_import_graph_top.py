"""The top half's import rules (issue 18): ``sjframe.core`` imports nothing above it; only the methods
(and ``train.py`` / ``test.py``) import ``sjframe.methods``; a method folder imports no other method's
folder; no import loop in ``sjframe``.

Every module is parsed with :mod:`ast` (imports inside functions and ``if TYPE_CHECKING:`` blocks
included: a lazy import is still a dependency). ``from pkg import name`` counts as an import of
``pkg.name`` when that is a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "sjframe").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The ``sjframe`` modules that module ``name`` imports (anywhere in its text)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
        for target in targets:
            if target.split(".")[0] != "sjframe":
                continue
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_core_imports_nothing_above_it() -> None:
    bad = [f"{src} imports {dst}" for src, targets in _graph().items() if _under(src, "sjframe.core")
           for dst in sorted(targets) if not _under(dst, "sjframe.core") and dst != "sjframe"]
    assert not bad, "sjframe.core may only import sjframe.core:\n" + "\n".join(bad)


def test_only_the_methods_import_the_methods() -> None:
    bad = [f"{src} imports {dst}" for src, targets in _graph().items() if not _under(src, "sjframe.methods")
           for dst in sorted(targets) if _under(dst, "sjframe.methods")]
    assert not bad, "only sjframe.methods (and train.py / test.py) may import sjframe.methods:\n" + "\n".join(bad)


def test_a_method_folder_imports_no_other_method() -> None:
    # the contract, the registry and the method-agnostic multi-seed driver (train.py --seeds) with its aggregates
    shared = {"sjframe.methods", "sjframe.methods.base", "sjframe.methods.registry", "sjframe.methods.multiseed",
              "sjframe.methods.aggregate"}
    bad = []
    for src, targets in _graph().items():
        if not _under(src, "sjframe.methods") or src in shared:
            continue
        own = ".".join(src.split(".")[:3])
        bad += [f"{src} imports {dst}" for dst in sorted(targets)
                if _under(dst, "sjframe.methods") and dst not in shared and not _under(dst, own)]
    for src in shared:  # the contract and the registry name no method module
        bad += [f"{src} imports {dst}" for dst in sorted(_graph()[src]) if _under(dst, "sjframe.methods")
                and dst not in shared]
    assert not bad, "\n".join(bad)


def test_entry_points_import_no_method_module() -> None:
    """train.py / test.py reach a method only through the registry (sjframe.methods), never a method's folder."""
    modules = _modules()
    for entry in ("train.py", "test.py"):
        found = _imports(ROOT / entry, entry[:-3], modules)
        named = [m for m in found if _under(m, "sjframe.methods") and m not in
                 ("sjframe.methods", "sjframe.methods.base", "sjframe.methods.multiseed", "sjframe.methods.aggregate")]
        assert not named, f"{entry} imports {named}"
        text = (ROOT / entry).read_text()
        code = "\n".join(line for line in text.split('"""', 2)[-1].splitlines() if not line.lstrip().startswith("#"))
        assert '"surrogate"' not in code and "'surrogate'" not in code, f"{entry} names a method"


def test_no_import_loop() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not loops, "import loops:\n" + "\n".join(" <-> ".join(loop) for loop in loops)
