"""The package imports in layers: no module imports itself back through others, and no package
of src/fedtextgrad does (llm below textgrad below federated below privacy and robustness).
Only imports run at import time count: those inside functions and under TYPE_CHECKING do not."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
MODULES = {
    ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): p
    for p in SRC.rglob("*.py")
}


def imported_at_import_time(module: str, path: Path) -> set[str]:
    """The modules of src/ that importing `module` imports directly."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([node.module] if node.module else [])])
                submodules = {f"{base}.{a.name}" for a in node.names} & MODULES.keys()
                found.update(submodules)
                if len(submodules) < len(node.names):  # a name defined in the package itself
                    found.add(base)
            elif isinstance(node, ast.If | ast.Try | ast.With):
                visit(node.body)
                visit(getattr(node, "orelse", []))

    visit(ast.parse(path.read_text()).body)
    return {name for name in found if name in MODULES and name != module}


def layer(module: str) -> str:
    """fedtextgrad.federated.server -> fedtextgrad.federated; fedtextgrad.config stays."""
    return ".".join(module.split(".")[:2])


def assert_acyclic(graph: dict[str, set[str]]) -> None:
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_no_module_imports_itself_back():
    assert_acyclic({m: imported_at_import_time(m, p) for m, p in MODULES.items()})


def test_the_packages_import_in_layers():
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges = {layer(m) for m in imported_at_import_time(module, path)} - {layer(module)}
        graph.setdefault(layer(module), set()).update(edges)
    assert_acyclic(graph)
    assert not graph["fedtextgrad.federated"] & {"fedtextgrad.privacy", "fedtextgrad.robustness"}


def test_a_cycle_is_reported_with_its_path():
    try:
        assert_acyclic({"a": {"b"}, "b": {"a"}})
    except AssertionError as error:
        assert str(error).startswith("import cycle: ") and "a -> b" in str(error)
    else:
        raise AssertionError("the cycle went unnoticed")
