"""The import graph of ``sjframe`` and ``cupy_neurons``: no import loop, imports only go down the layers;
``sjframe.core`` imports only itself; a method folder imports no other method; the entry points name none.

Every module of both packages is parsed with :mod:`ast` (imports inside functions included, since
a lazy import is still a dependency; ``if TYPE_CHECKING:`` blocks too). ``from pkg import name``
counts as an import of ``pkg.name`` when that is a module. A module's *unit* is ``cupy_neurons`` or
the sub-package / root module of ``sjframe`` it belongs to (``sjframe.neurons``, ``sjframe.core``,
...), and each unit has a layer in :data:`LAYERS` (lowest first). An import from a unit to another
unit of a higher layer fails the test, and so does any import loop between modules.

:data:`ALLOWED` would list exceptions, each with its reason; it is empty and stays so.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cupy_neurons", "sjframe")

#: the layers, lowest first; a unit may import units of its own layer or lower ones (never higher)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cupy_neurons",),  # kernels, build, launch, generated ops: imports nothing of sjframe
    ("sjframe", "sjframe.core"),  # core: typed configs, runtime, run dirs, errors, distributed context, registry
    ("sjframe.spike",),  # surrogate, GradientSpec, LocalZO, Philox
    ("sjframe.neurons",),  # base, registry, one folder per neuron
    ("sjframe.layers",),  # common layers, the sparse Linear + LIF layer
    ("sjframe.models",),  # network builders (no neuron type named)
    ("sjframe.coding", "sjframe.data", "sjframe.speech"),  # codings and losses, data sets, the digit generator
    ("sjframe.methods",),  # one folder per method, the Method contract, the multi-seed driver
)

#: exceptions ``{(importer module, imported module): reason}``; the list only shrinks, and is empty: with the layer
#: order above no import goes up and none closes a loop (the tests at the end add the rules inside
#: ``methods``: no method folder imports another, only the entry points and the registry name them).
ALLOWED: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The modules of both packages that module ``name`` imports (anywhere in its text)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                       for alias in node.names]
        for target in targets:
            if target.split(".")[0] not in PACKAGES:
                continue
            while target not in modules and "." in target:  # `import a.b.c` of a name inside a module
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                found.add(target)
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "cupy_neurons" or len(parts) == 1 else ".".join(parts[:2])


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _layer_of() -> dict[str, int]:
    return {unit: i for i, units in enumerate(LAYERS) for unit in units}


def test_every_unit_has_a_layer() -> None:
    layer = _layer_of()
    missing = sorted({_unit(m) for m in _modules()} - set(layer))
    assert not missing, f"units without a layer in LAYERS (add them, lowest first): {missing}"


def test_imports_only_go_down() -> None:
    layer = _layer_of()
    upward = []
    for src, targets in _graph().items():
        for dst in sorted(targets):
            a, b = _unit(src), _unit(dst)
            if layer.get(b, -1) > layer.get(a, -1) and (src, dst) not in ALLOWED:
                upward.append(f"{src} ({a}, layer {layer.get(a)}) imports {dst} ({b}, layer {layer.get(b)})")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_cupy_neurons_imports_nothing_of_sjframe() -> None:
    bad = [f"{src} imports {dst}" for src, targets in _graph().items() if src.startswith("cupy_neurons")
           for dst in targets if dst.split(".")[0] == "sjframe"]
    assert not bad, "\n".join(bad)


def test_no_import_loop() -> None:
    graph = _graph()
    graph = {src: {dst for dst in targets if (src, dst) not in ALLOWED} for src, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components (iterative enough for this graph)
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
    assert not loops, "import loops (modules importing each other, directly or through others):\n" + "\n".join(
        " <-> ".join(loop) for loop in loops)


def test_allowed_exceptions_are_still_needed() -> None:
    """An exception that no longer occurs is removed from ALLOWED (the list only shrinks)."""
    graph = _graph()
    stale = [pair for pair in ALLOWED if pair[1] not in graph.get(pair[0], set())]
    assert not stale, f"ALLOWED lists imports that no longer exist: {stale}"


def test_the_checker_sees_function_level_and_from_imports(tmp_path: Path) -> None:
    """The parser counts imports inside functions and ``from pkg import module``."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from sjframe import engine\n    import cupy_neurons.build\n")
    modules = {"sjframe.engine": Path(), "cupy_neurons.build": Path(), "sjframe.x": src}
    assert _imports(src, "sjframe.x", modules) == {"sjframe.engine", "cupy_neurons.build"}


# ------------------------------------------------------------------ inside the top layer (issue 18, rule 3)
def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_core_imports_nothing_above_it() -> None:
    bad = [f"{src} imports {dst}" for src, targets in _graph().items() if _under(src, "sjframe.core")
           for dst in sorted(targets) if not _under(dst, "sjframe.core") and dst != "sjframe"]
    assert not bad, "sjframe.core may only import sjframe.core:\n" + "\n".join(bad)


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
