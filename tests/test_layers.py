"""The package's layers: imports point down only, and no two modules import each other.

Every module under src/statefulrnn is parsed with `ast` (nothing is imported), and every
`import` it contains, at the top or inside a function, becomes an edge of the import graph.
Imports under `if TYPE_CHECKING:` are left out: they never run, they only name types.
`from statefulrnn import fit` counts as an import of the module that defines `fit` (the
package resolves its public names lazily, `statefulrnn._lazy`).

The order, lowest first (docs/layers.md draws it). A unit may import units of lower layers and
modules of its own unit; never a unit of its own layer (sideways) or of a higher one:

    cli                                    the command line
    experiments                            compare and sweep runs, their result files
    tabular | tasks | reports              table workflow, seed tasks, plots and HTML of results
    train | predict | streams | keras      the uses of a model
    bundle                                 a model with its scaling and link: what train makes, the rest take
    outputs                                whole-sequence passes and scores (train and predict share them)
    model | datasets                       the recurrent model (+ ONNX export); shipped series
    data                                   sequences and schedules
    package | records | losses | modes     the lazy facade, file formats, loss functions, mode names

`reference` (the numpy oracle of the tests) imports none of the package and is imported by
no module of it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "statefulrnn"

LAYERS: list[dict[str, tuple[str, ...]]] = [  # unit -> the modules it is made of (prefixes)
    {
        "package": ("statefulrnn", "statefulrnn._lazy", "statefulrnn._openmp"),  # exact: unit_of
        "records": ("statefulrnn.records",),
        "losses": ("statefulrnn.losses",),
        "threads": ("statefulrnn.threads",),
        "modes": ("statefulrnn.modes",),
    },
    {"data": ("statefulrnn.data",)},
    {"model": ("statefulrnn.model", "statefulrnn.export"), "datasets": ("statefulrnn.datasets",)},
    {"outputs": ("statefulrnn.outputs",)},
    {"bundle": ("statefulrnn.bundle",)},
    {
        "train": ("statefulrnn.train",),
        "predict": ("statefulrnn.predict",),
        "streams": ("statefulrnn.streams",),
        "keras": ("statefulrnn.keras",),
    },
    {
        "tabular": ("statefulrnn.tabular",),
        "tasks": ("statefulrnn.tasks",),
        "reports": ("statefulrnn.reports",),
    },
    {"experiments": ("statefulrnn.experiments",)},
    {"cli": ("statefulrnn.cli", "statefulrnn.__main__")},
]
ORACLE = "statefulrnn.reference"

# The known exceptions, each an import inside one function, with the reason it stays. Keep
# this short: a new entry needs a reason a reviewer accepts, and docs/layers.md names it too.
ALLOWED_UPWARD = {
    ("statefulrnn.bundle", "statefulrnn.streams.pool"): (
        "ModelBundle.stream_pool() is a shortcut for StreamPool(bundle), which takes bundles"
    ),
}


def module_files() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = module_files()


def _lazy_exports(name: str) -> dict[str, str]:
    """A package's `_EXPORTS = {public name: module}` table, read from its source."""
    tree = ast.parse(MODULES[name].read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    return {}


def _type_checking_only(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST):
    """Every Import/ImportFrom node, at any depth, that is not under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str) -> dict[str, int]:
    """The package's modules that `name` imports when it runs: {module: first line}."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        while target and target not in MODULES:  # `import a.b.c` names module a.b.c's parents too
            target = target.rpartition(".")[0]
        if target and target != name:
            found.setdefault(target, line)

    for node in _runtime_imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    add(alias.name, node.lineno)
            continue
        source = _resolve(name, node)
        if source.split(".")[0] != PACKAGE:
            continue
        lazy = _lazy_exports(source) if source in MODULES else {}
        for alias in node.names:
            child = f"{source}.{alias.name}"
            if child in MODULES:
                add(child, node.lineno)  # `from pkg import module`
            elif alias.name in lazy:
                add(lazy[alias.name], node.lineno)  # a lazily resolved public name
            else:
                add(source, node.lineno)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def unit_of(module: str) -> tuple[int, str]:
    """(layer index, unit name) of a module; the longest matching prefix wins."""
    best: tuple[int, int, str] | None = None
    for level, units in enumerate(LAYERS):
        for unit, prefixes in units.items():
            for prefix in prefixes:
                exact = prefix == PACKAGE  # the package itself, not everything in it
                matches = module == prefix or (not exact and module.startswith(prefix + "."))
                if matches and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), level, unit)
    if best is None:
        raise KeyError(module)
    return best[1], best[2]


def test_every_module_has_a_place_in_the_order():
    unplaced = []
    for module in MODULES:
        if module == ORACLE:
            continue
        try:
            unit_of(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, f"give these modules a unit in LAYERS (and docs/layers.md): {unplaced}"


def test_imports_point_down_the_layers():
    wrong = []
    for importer, targets in GRAPH.items():
        if importer == ORACLE:
            continue
        level, unit = unit_of(importer)
        for target, line in targets.items():
            if target == ORACLE:
                continue  # checked by the oracle's own test
            t_level, t_unit = unit_of(target)
            if t_unit == unit or (importer, target) in ALLOWED_UPWARD:
                continue
            if t_level >= level:
                how = "sideways" if t_level == level else "upwards"
                wrong.append(f"{importer}:{line} imports {target} ({unit} -> {t_unit}, {how})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_the_reference_is_independent_of_the_package():
    assert not GRAPH[ORACLE], f"reference.py must import nothing of the package: {GRAPH[ORACLE]}"
    users = [m for m, targets in GRAPH.items() if ORACLE in targets]
    assert not users, f"only tests may import the numpy reference; imported by {users}"


def _cycle() -> list[str] | None:
    """One import cycle between modules (a, b, ..., a), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(t for t in GRAPH[node] if (node, t) not in ALLOWED_UPWARD):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_two_modules_import_each_other_directly_or_around_a_cycle():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# ------------------------------------------------------------------ the checker itself
@pytest.mark.parametrize(
    "source, expected",
    [
        ("from statefulrnn.predict import predict", {"statefulrnn.predict"}),
        ("from statefulrnn import fit", {"statefulrnn.train.fit"}),  # lazy name -> its module
        ("from statefulrnn import records", {"statefulrnn.records"}),
        ("def f():\n    import statefulrnn.reports.html", {"statefulrnn.reports.html"}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import statefulrnn.cli", set()),
        ("from .schedule import pack", {"statefulrnn.data.schedule"}),
    ],
)
def test_the_graph_sees_top_level_function_lazy_and_relative_imports(
    source, expected, tmp_path, monkeypatch
):
    fake = tmp_path / "sequences.py"
    fake.write_text(source)
    monkeypatch.setitem(MODULES, "statefulrnn.data.sequences", fake)
    assert set(imports_of("statefulrnn.data.sequences")) == expected


def test_every_allowed_exception_is_still_an_import_inside_a_function():
    for importer, target in ALLOWED_UPWARD:
        assert target in GRAPH[importer], f"{importer} no longer imports {target}: drop the entry"
        top = {n for n in ast.parse(MODULES[importer].read_text()).body}
        line = GRAPH[importer][target]
        assert not any(getattr(n, "lineno", None) == line for n in top), (importer, target)


def test_the_order_catches_an_upward_import():
    # model importing train would be the kind of edge the order forbids
    assert unit_of("statefulrnn.model.base")[0] < unit_of("statefulrnn.train.fit")[0]
    assert unit_of("statefulrnn.tabular.config") == unit_of("statefulrnn.tabular")
    assert unit_of("statefulrnn")[1] == "package" and unit_of("statefulrnn.export")[1] == "model"
