"""The house rules of the package, checked on its source: imports point one way (no circle), modules and functions
stay small, each package says what it owns, and tests share helpers through conftest only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

SOURCE = ROOT / "src"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted((SOURCE / "embedft").rglob("*.py"))}


def imported_modules(path: Path) -> set[str]:
    """embedft's own modules that ``path`` imports anywhere (top, inside functions, under TYPE_CHECKING)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "embedft":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                imported.add(submodule if submodule in MODULES else node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names if alias.name.split(".")[0] == "embedft")
    return {name for name in imported if name in MODULES}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk of ``graph`` meets, as the modules along it."""
    state: dict[str, str] = {}
    path: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for dependency in sorted(graph[module]):
            if state.get(dependency) == "open":
                cycles.append([*path[path.index(dependency) :], dependency])
            elif dependency not in state:
                visit(dependency)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def test_the_package_has_no_import_circle():
    graph = {name: imported_modules(path) - {name} for name, path in MODULES.items()}
    assert import_cycles(graph) == []


def test_a_circle_is_found():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_floor_imports_nothing_above_it():
    floor = {"embedft.errors", "embedft.columns", "embedft.io", "embedft.masking", "embedft.logs", "embedft.text"}
    for name in floor:
        assert imported_modules(MODULES[name]) <= floor, name


def test_the_config_imports_only_the_floor():
    for name, path in MODULES.items():
        if name.startswith("embedft.config"):
            above = {m for m in imported_modules(path) if not m.startswith(("embedft.config", "embedft.errors"))}
            assert above <= {"embedft.columns", "embedft.masking", "embedft.io"}, (name, above)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_stay_small(name):
    text = MODULES[name].read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno - node.lineno + 1 <= MAX_FUNCTION_LINES, f"{name}.{node.name}"


def test_each_package_says_what_it_owns():
    for name, path in MODULES.items():
        if path.name == "__init__.py":
            assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), name


def test_tests_share_helpers_through_conftest_only():
    for path in (ROOT / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests."):
                assert node.module == "tests.conftest", f"{path.relative_to(ROOT)} imports {node.module}"
