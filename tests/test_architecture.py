"""The house's rules, read from the code's own imports: no module imports another that imports it back
(directly or around a circle), and the core's rooms stand on each other in one order.

The core (``poggio/``) is grouped by concern. From the ground up: ``adapters`` (the one place each
library's private attributes are reached, :mod:`tests.test_adapters`), ``storage`` (the database), ``security``
(token format, sealing, address checks), ``records`` (audit log, activity, usage, webhook outbox),
``runtime`` (the tool-pack runtime), ``identity`` (who may do what, which tools included), ``notices``
(attention, webhooks),
``commands`` (the ``poggio`` command). A room may import the rooms below it and the leaves at the top
level (``settings``, ``errors``, ``display``), never one above it. Imports inside functions count: a
circle is not opened by hiding one of its imports in a function. Imports under ``if TYPE_CHECKING:``
(annotations only) do not: they tie nothing at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from instances import ROOT

ROOMS = ["adapters", "storage", "security", "records", "runtime", "identity", "notices", "commands"]
FLOOR = {room: floor for floor, room in enumerate(ROOMS)}
LEAVES = {"poggio.settings", "poggio.errors", "poggio.display"}
PACKAGES = ["poggio", "portal", "mcp_server", "plugins"]


def _modules() -> dict[str, Path]:
    found = {}
    for top in PACKAGES:
        for path in (ROOT / top).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[0] == "plugins":
                parts = parts[1:]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project's modules ``name`` imports, anywhere in it (a function's body included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # an import for the type checker alone ties nothing at run time
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _room(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "poggio" and len(parts) > 2 and parts[1] in FLOOR else None


# the two package faces: `poggio` hands the pack API on (its hookspec marker is imported back by the one
# hookspec module), `portal` builds the app from its blueprints; neither is a circle of behaviour
FACES = {"poggio", "portal"}


def test_no_module_imports_one_that_imports_it_back():
    graph = {name: {t for t in targets if t not in FACES} for name, targets in GRAPH.items()}
    assert _circles(graph) == []


def test_the_checker_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("room", ROOMS)
def test_a_room_imports_only_the_rooms_below_it(room):
    wrong = []
    for name, targets in GRAPH.items():
        if _room(name) != room:
            continue
        for target in targets:
            other = _room(target)
            if other is not None and other != room and FLOOR[other] >= FLOOR[room]:
                wrong.append(f"{name} imports {target} ({other} is not below {room})")
            elif other is None and target.startswith("poggio.") and target not in LEAVES and room != "commands":
                if target not in ("poggio.hookspecs",) or room != "runtime":
                    wrong.append(f"{name} imports {target} (not a room below, nor a leaf)")
    assert wrong == []


def test_every_core_module_is_in_a_room_or_a_known_leaf_or_face():
    top = {name for name in MODULES if name.startswith("poggio.") and name.count(".") == 1}
    public = {"poggio.hookspecs", "poggio.testing", "poggio.advanced", "poggio.services", "poggio.__main__"}
    assert top - set(f"poggio.{r}" for r in ROOMS) - LEAVES - public == set()


def test_neither_the_core_nor_a_pack_imports_a_web_framework_or_the_mcp_sdk():
    third_party = {"flask", "flask_login", "flask_wtf", "werkzeug", "starlette", "mcp", "mcp_types", "uvicorn"}
    wrong = []
    for name, path in MODULES.items():
        if not (name.startswith("poggio") and not name.startswith("poggio_")) and not name.startswith("poggio_"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            roots = []
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                roots = [node.module.split(".")[0]]
            wrong += [f"{name} imports {r}" for r in roots if r in third_party]
    assert wrong == []
