"""The import graph of app/, read with `ast`: no cycle (type-only imports included), arrows that
point one way (endpoints -> core -> ports <- adapters), a transport-free core of small modules."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
CORE_MAX_LINES = 300
# What the core must not know: the web framework, the server, the transport, the endpoints.
NOT_IN_CORE = ("starlette", "uvicorn", "websockets", "app.ws", "app.endpoints")
# Adapters (feed providers, bus backends) depend on ports, never on what uses them.
NOT_IN_ADAPTERS = ("app.core", "app.endpoints", "app.ws", "app.fetcher", "app.main")


def _modules() -> dict[str, Path]:
    found = {}
    for path in APP.rglob("*.py"):
        parts = path.relative_to(APP.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, anywhere in it (under TYPE_CHECKING too), by full name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}
GRAPH = {name: {m for m in found if m in MODULES and m != name} for name, found in IMPORTS.items()}


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
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


def test_the_check_finds_a_cycle_when_there_is_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_app_has_no_import_cycle() -> None:
    assert len(GRAPH) > 50 and "app.core.hub" in GRAPH  # the walk really read the app
    assert _cycles(GRAPH) == []


def test_the_core_imports_no_framework_server_transport_or_endpoint() -> None:
    core = [name for name in IMPORTS if _within(name, ("app.core",))]
    assert "app.core.fanout" in core
    leaks = {
        name: sorted(m for m in IMPORTS[name] if _within(m, NOT_IN_CORE))
        for name in core
        if any(_within(m, NOT_IN_CORE) for m in IMPORTS[name])
    }
    assert leaks == {}


def test_adapters_import_ports_not_their_users() -> None:
    adapters = [n for n in IMPORTS if _within(n, ("app.feeds", "app.pubsub"))]
    leaks = {
        name: sorted(m for m in IMPORTS[name] if _within(m, NOT_IN_ADAPTERS))
        for name in adapters
        if any(_within(m, NOT_IN_ADAPTERS) for m in IMPORTS[name])
    }
    assert leaks == {}


def test_nothing_but_the_composition_root_and_endpoints_imports_endpoints() -> None:
    users = {
        name
        for name, found in IMPORTS.items()
        if not _within(name, ("app.endpoints",))
        and any(_within(m, ("app.endpoints",)) for m in found)
    }
    # csrf and login render the plain error page of app.endpoints.pages.
    assert users <= {"app.main", "app.csrf", "app.login"}


def test_core_modules_stay_small() -> None:
    sizes = {
        name: len(path.read_text().splitlines())
        for name, path in MODULES.items()
        if _within(name, ("app.core",))
    }
    assert sizes and {n: s for n, s in sizes.items() if s > CORE_MAX_LINES} == {}


def test_the_transport_tricks_sit_behind_one_seam() -> None:
    """Outside app/ws, the WebSocket endpoint uses only app.ws.transport, and the composition
    root only GC tuning (uvicorn finds the fast path's protocol class by its import path)."""
    users = {
        (name, m)
        for name, found in IMPORTS.items()
        if not _within(name, ("app.ws",))
        for m in found
        if _within(m, ("app.ws",)) and m in MODULES and m != "app.ws"
    }
    assert users == {
        ("app.endpoints.websocket", "app.ws.transport"),
        ("app.main", "app.ws.gctune"),
    }
