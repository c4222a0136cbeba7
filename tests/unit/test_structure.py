"""The import structure: no cycle, the meta RM's runtime apart from the server, thin routes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("server", "meta_rm", "grm_eval", "grm_train")


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


# ---- the layers of server/ (README, "Layout") ----------------------------------------------------

LAYERS = ("server.api", "server.serving", "server.pipeline", "server.engines", "server.ops")
MAX_MODULE_LINES = 350


def layer_of(module: str) -> str | None:
    return next((layer for layer in LAYERS if module == layer or module.startswith(layer + ".")), None)


def crossings(graph: dict[str, set[str]], source: str, targets: tuple[str, ...]) -> dict[str, list[str]]:
    """Modules of layer ``source`` that import a module of one of ``targets``."""
    found = {m: sorted(d for d in deps if layer_of(d) in targets) for m, deps in graph.items() if layer_of(m) == source}
    return {m: deps for m, deps in found.items() if deps}


def test_every_server_module_but_the_composition_root_belongs_to_a_layer(graph):
    root = {"server", "server.__main__", "server.app", "server.cli", "server.config"}
    server = {m for m in graph if m == "server" or m.startswith("server.")}
    assert {layer_of(m) for m in server - root} == set(LAYERS)  # every layer exists
    assert sorted(m for m in server - root if layer_of(m) is None) == []


def test_the_pipeline_imports_nothing_from_the_layers_above_it(graph):
    """The GRM pipeline is pure: no HTTP contract, no serving policy, no metrics."""
    assert crossings(graph, "server.pipeline", ("server.api", "server.serving", "server.ops")) == {}


def test_the_api_reaches_the_engines_only_through_the_serving_layer(graph):
    assert crossings(graph, "server.api", ("server.engines",)) == {}


def test_the_serving_layer_knows_no_http_routes(graph):
    assert crossings(graph, "server.serving", ("server.api",)) == {}


def test_the_engines_import_nothing_above_them(graph):
    above = ("server.api", "server.serving", "server.pipeline", "server.ops")
    assert crossings(graph, "server.engines", above) == {}


def test_the_service_is_driven_without_http():
    """The serving layer's modules import no web framework, so a test drives them with plain values."""
    web = ("fastapi", "starlette")
    offenders = {}
    for path in (REPO / "server" / "serving").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            hits = [n for n in names if n.split(".")[0] in web]
            if hits:
                offenders[path.name] = hits
    assert offenders == {}


def test_no_server_module_is_over_the_size_a_reader_takes_in():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in (REPO / "server").rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_offline_tool_module_is_over_that_size_either():
    tools = [p for pkg in ("grm_eval", "grm_train") for p in (REPO / pkg).rglob("*.py")]
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in tools}
    assert len(sizes) >= 10 and {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_the_training_tool_stays_out_of_the_server(graph):
    """grm-train builds on the server's pipeline; the server never imports the training tool."""
    server = {m: d for m, d in graph.items() if m.startswith("server")}
    assert {m: d for m, d in server.items() if any(x.startswith("grm_train") for x in d)} == {}
