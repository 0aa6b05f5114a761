"""The package's shape holds on every change: no import cycles (but the CLI's command registration), no
function over 60 lines, no module over 400 lines.

The import graph counts every import that runs: at module level and inside functions (a function-level
import still ties the two modules together), but not those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import grounded_sam

PACKAGE_ROOT = Path(grounded_sam.__file__).resolve().parent
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
# Sub-command modules register themselves on the typer app when `cli.app` imports them; they import the
# app to do so. That cycle is the one allowed: `cli.app._register_commands` is where it closes.
ALLOWED_CYCLE_CLOSERS = {("grounded_sam.cli.app", "_register_commands")}


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at `root`."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of the nodes under ``if TYPE_CHECKING:`` (never imported at run time)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for child in node.body for inner in ast.walk(child))
    return skipped


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package's modules `node` (in `module`) imports: ``from a import b`` names module ``a.b`` if
    there is one, else ``a``."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & modules
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    named = (f"{base}.{alias.name}" for alias in node.names)
    return {name if name in modules else base for name in named} & modules


def _enclosing_functions(tree: ast.Module) -> dict[int, str]:
    """Node id -> name of the top-level function it is in."""
    inside: dict[int, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inside.update((id(inner), node.name) for inner in ast.walk(node))
    return inside


def import_graph(root: Path, allowed: Collection[tuple[str, str]] = ()) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at run time, at any level; imports inside the
    `allowed` (module, top-level function) pairs are left out."""
    modules = module_files(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped, functions = _type_checking_only(tree), _enclosing_functions(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or id(node) in skipped:
                continue
            if (name, functions.get(id(node), "")) not in allowed:
                graph[name] |= _targets(node, name, path.name == "__init__.py", set(modules)) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other (strongly connected, more than one module)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        order[node] = low[node] = len(order)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in order:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], order[target])
        if low[node] == order[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return groups


def test_no_import_cycles_but_the_cli_registration() -> None:
    graph = import_graph(PACKAGE_ROOT, ALLOWED_CYCLE_CLOSERS)
    assert len(graph) > 150
    assert cycles(graph) == []


def test_the_cli_registration_is_the_cycle_left_out() -> None:
    groups = cycles(import_graph(PACKAGE_ROOT))
    assert len(groups) == 1
    assert {"grounded_sam.cli.app", "grounded_sam.cli.label", "grounded_sam.cli.predict"} <= set(groups[0])


def test_the_import_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from .. import a\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\nimport pkg.sub.b\n"
    )
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.a"}
    assert graph["pkg.c"] == {"pkg.sub.b"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]
    assert cycles(import_graph(package, {("pkg.a", "f")})) == []


def _functions(path: Path) -> Iterator[tuple[str, int]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            yield f"{node.name} (line {node.lineno})", node.end_lineno - node.lineno + 1


def test_no_function_over_60_lines() -> None:
    """From the ``def`` line to the last line, docstring included."""
    long = [
        f"{path.relative_to(PACKAGE_ROOT)}:{name}: {lines} lines"
        for path in module_files(PACKAGE_ROOT).values()
        for name, lines in _functions(path)
        if lines > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_no_module_over_400_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE_ROOT)}: {lines} lines"
        for path in module_files(PACKAGE_ROOT).values()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert long == []
