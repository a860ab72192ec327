"""Admins pick tools one by one: a workspace's switched-off tools, and the narrowing of a
token or a connected app to named tools within its packs.

A row of :class:`ToolSwitch` is one thing a workspace switched off, named by ``(pack, kind, name)``:
``kind`` is ``tool`` today; prompts and resources can be switched the same way later. Switching on
deletes the row. The names of the tools off are also written, in the same transaction, to the
workspace row (``Workspace.tools_off``), which the statement that verifies every MCP request's
credential reads already: a switch takes effect from the next request in every process, as a
revocation does, at no extra cost (a subquery of ``tool_switch`` there cost 4 µs on SQLite and
30-80 µs on PostgreSQL per request).

:func:`visible_tools` is the one decision "which tools may this caller see and call": its pack scope
(read or write per pack, :mod:`poggio.identity.scopes`), its narrowing to named tools, and its workspace's
switches.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from peewee import CharField, DateTimeField, ForeignKeyField

from poggio.errors import InvalidInput
from poggio.identity import scopes
from poggio.records import audit
from poggio.storage.db import BaseModel, for_update, utcnow, writing
from poggio.storage.models import User, Workspace

if TYPE_CHECKING:
    from poggio.runtime.packs import ToolSpec

TOOL = "tool"
KINDS = (TOOL,)  # prompts and resources come later, switched the same way
SEPARATOR = ","


class ToolSwitch(BaseModel):
    """One tool (or, later, prompt or resource) a workspace switched off."""

    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+", index=False)
    pack = CharField(max_length=100)
    kind = CharField(max_length=16)
    name = CharField(max_length=200)
    changed_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    changed_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "tool_switch"
        indexes = ((("workspace", "kind", "name", "pack"), True),)


def names_of(text: str | None) -> frozenset[str] | None:
    """The stored comma-separated names as a set; ``None`` for NULL (no narrowing)."""
    if text is None:
        return None
    return frozenset(n for n in text.split(SEPARATOR) if n)


def off_of(text: str | None) -> frozenset[str]:
    """The stored comma-separated names as a set; empty for NULL."""
    return names_of(text) or frozenset()


def visible_tools(registry, scope: scopes.PackScope) -> list:
    """The tools (``ToolSpec``) of ``registry`` that a caller with ``scope`` may see and call: within
    its packs (write tools only with write access), its narrowing to named tools, and not switched off
    in its workspace. The MCP server asks :func:`poggio.identity.scopes.may_see` per tool, which is this."""
    return [t for t in registry.tools() if scopes.may_see(t.pack, t.read_only, scope, t.name)]


def clean_narrowing(tools, registry, levels: dict[str, str] | None, field: str = "tools") -> str | None:
    """The stored text of a narrowing to named tools (a comma-separated string or a list), checked
    against the packs chosen (``levels``: ``{pack: level}``; ``None``: every pack, read only): an
    unknown tool, or one outside those packs or their level, raises :class:`InvalidInput` naming it.
    Nothing given: ``None`` (every tool of the packs)."""
    if tools is None:
        return None
    items = tools.replace(" ", SEPARATOR).split(SEPARATOR) if isinstance(tools, str) else list(tools)
    names = sorted({(n or "").strip() for n in items} - {""})
    if not names:
        return None
    scope = scopes.PackScope(
        None if levels is None else frozenset(levels),
        frozenset(p for p, lvl in (levels or {}).items() if lvl == scopes.WRITE),
    )
    known = {t.name: t for t in registry.tools()}
    unknown = [n for n in names if n not in known]
    if unknown:
        loaded = ", ".join(sorted(known))
        raise InvalidInput(field, f"unknown tool(s): {', '.join(unknown)}; the loaded tools are {loaded}")
    outside = [n for n in names if not scopes.may_see(known[n].pack, known[n].read_only, scope)]
    if outside:
        chosen = scopes.describe(levels)
        raise InvalidInput(
            field,
            f"tool(s) outside the chosen packs: {', '.join(outside)} "
            f"(the packs chosen are {chosen}; a write tool needs write access to its pack)",
        )
    return SEPARATOR.join(names)


class SwitchService:
    """Every change to a workspace's switches goes through here, and leaves an audit event."""

    def __init__(self, registry):
        self.registry = registry

    def off(self, workspace: Workspace, kind: str = TOOL) -> set[tuple[str, str]]:
        """``{(pack, name)}`` switched off in ``workspace``."""
        query = ToolSwitch.select(ToolSwitch.pack, ToolSwitch.name).where(
            (ToolSwitch.workspace == workspace) & (ToolSwitch.kind == kind)
        )
        return {(row.pack, row.name) for row in query}

    def tools(self, workspace: Workspace) -> list[tuple[ToolSpec, bool]]:
        """Every loaded tool with whether it is on in ``workspace``, by pack then name."""
        off = {name for _, name in self.off(workspace)}
        return [(t, t.name not in off) for t in sorted(self.registry.tools(), key=lambda t: (t.pack, t.name))]

    def _spec(self, name: str):
        spec = self.registry.tool(name) if isinstance(name, str) else None
        if spec is None:
            known = ", ".join(sorted(t.name for t in self.registry.tools()))
            raise InvalidInput("tool", f"unknown tool {name!r}; the loaded tools are {known}")
        return spec

    def switch(
        self, workspace: Workspace, actor: audit.Actor, off: Iterable[str] = (), on: Iterable[str] = ()
    ) -> list[tuple[str, bool]]:
        """Switch the tools named in ``off`` off and those in ``on`` on, in one transaction, from the
        next request on; returns what changed as ``[(name, now_on)]``. A name in both is refused."""
        off, on = list(dict.fromkeys(off)), list(dict.fromkeys(on))
        both = sorted(set(off) & set(on))
        if both:
            raise InvalidInput("tool", f"switched both off and on: {', '.join(both)}")
        specs_off = [self._spec(n) for n in off]
        specs_on = [self._spec(n) for n in on]
        changed: list[tuple[str, bool]] = []
        with writing():
            # one switch of a workspace at a time (PostgreSQL: the row lock), so the copy on the
            # workspace row is always what its tool_switch rows say
            for_update(Workspace.select(Workspace.id).where(Workspace.id == workspace.id)).first()
            already = {name for _, name in self.off(workspace)}
            for spec in specs_off:
                if spec.name in already:
                    continue
                ToolSwitch.create(workspace=workspace, pack=spec.pack, kind=TOOL, name=spec.name, changed_by=actor.user)
                audit.record("workspace.tool_switched", actor, workspace, target=spec.name, pack=spec.pack, on=False)
                changed.append((spec.name, False))
            for spec in specs_on:
                if spec.name not in already:
                    continue
                ToolSwitch.delete().where(
                    (ToolSwitch.workspace == workspace) & (ToolSwitch.kind == TOOL) & (ToolSwitch.name == spec.name)
                ).execute()
                audit.record("workspace.tool_switched", actor, workspace, target=spec.name, pack=spec.pack, on=True)
                changed.append((spec.name, True))
            if changed:
                off_now = sorted(name for _, name in self.off(workspace))
                Workspace.update(tools_off=SEPARATOR.join(off_now) or None).where(
                    Workspace.id == workspace.id
                ).execute()
        return changed


def annotations_of(spec) -> list[str]:
    """The tool's annotations in words, for people: read-only or write, destructive, idempotent,
    open-world."""
    words = ["read-only" if spec.read_only else "write"]
    if spec.destructive:
        words.append("destructive")
    if spec.idempotent:
        words.append("idempotent")
    if spec.open_world:
        words.append("open-world")
    return words
