"""Helpers for a tool pack's own tests (``from poggio.testing import load_pack, tool_context``).

A pack's tests check that Poggio loads it as installed, and call its tools with the context a call
would have, on a throw-away SQLite database when the pack keeps data.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

from poggio.runtime.packs import CursorCodec, ToolContext
from poggio.runtime.plugins import Pack, PackRegistry


def load_pack(name: str) -> Pack:
    """The installed pack ``name`` as Poggio loads it (entry point, hooks, tools); fails the test with
    Poggio's reason when it would be left out."""
    registry = PackRegistry.load()
    if name in registry.errors:
        raise AssertionError(f"pack {name!r} is left out: {registry.errors[name]}")
    if name not in registry.packs:
        raise AssertionError(
            f"no pack {name!r} is installed (is the package installed, with its [project.entry-points.poggio] entry?)"
        )
    return registry.packs[name]


def tool_context(
    workspace_id: int = 1,
    tool_name: str = "",
    packs: frozenset[str] | None = None,
    registry: PackRegistry | None = None,
) -> ToolContext:
    """The context a tool gets when a token of workspace ``workspace_id`` calls it; hooks go to the
    packs of ``registry`` (none when not given)."""
    cursors = CursorCodec(secrets.token_bytes(16))
    if registry is None:
        return ToolContext(workspace_id=workspace_id, token_id=None, packs=packs, cursors=cursors, tool_name=tool_name)
    return registry.tool_context(cursors, workspace_id, None, packs, tool_name)


@contextlib.contextmanager
def workspace(folder: Path, slug: str = "test") -> Iterator[tuple[PackRegistry, int]]:
    """A SQLite database in ``folder`` with the schema of every installed pack and one workspace:
    ``(registry, workspace_id)``, bound for the duration (models and tools use it)."""
    from poggio.identity import workspaces
    from poggio.records.audit import Actor
    from poggio.runtime.schema import upgrade
    from poggio.storage.db import bind

    Path(folder).mkdir(parents=True, exist_ok=True)
    db = bind(f"sqlite:///{Path(folder) / 'poggio.db'}")
    registry = PackRegistry.load()
    with db.connection_context():
        upgrade(registry)
        ws = workspaces.create_workspace(slug, slug.title(), True, Actor.cli())
        yield registry, ws.id
    db.close()
