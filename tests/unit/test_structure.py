"""The import structure: no cycle, the meta RM's runtime apart from the server, thin routes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("server", "meta_rm", "grm_eval")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name in modules:
                found.add(name)
    # ``from pkg import module`` names the module; ``from module import function`` names the module.
    return {n for n in found if not any(o != n and o.startswith(n + ".") and o in found for o in found)} | {
        n for n in found if n in modules and Path(modules[n]).name != "__init__.py"
    }


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_the_meta_rm_runtime_imports_nothing_from_the_server(graph):
    runtime = {m: deps for m, deps in graph.items() if m.startswith("meta_rm") and not m.startswith("meta_rm.training")}
    assert "meta_rm.base" in runtime and "meta_rm.loading" in runtime
    offenders = {m: sorted(d for d in deps if d.startswith("server")) for m, deps in runtime.items()}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_no_route_imports_another_and_engines_do_not_read_settings(graph):
    routes = [m for m in graph if m.startswith("server.api.routes.")]
    assert len(routes) >= 4
    for m in routes:
        assert not {d for d in graph[m] if d.startswith("server.api.routes.")}, m
    for m in (m for m in graph if m.startswith("server.engines")):
        assert "server.config" not in graph[m], m


def test_the_module_graph_has_no_cycle(graph):
    state: dict[str, int] = {}  # 1 visiting, 2 done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(d) :], d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
