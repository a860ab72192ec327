"""Access per tool pack: read, or write (which includes read). One parser and one set of decisions,
used by the CLI, the portal, OAuth and the MCP server (both of its request paths).

A scope is stored as text, the same for an API token, an OAuth grant, code or client:
``accounts:write,contacts`` (a pack without a suffix, or with ``:read``, is read). For API tokens
``NULL`` means every pack, read only: rows written before write access existed keep their meaning.
OAuth spells the same as space-separated scopes: ``accounts:write contacts:read``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from poggio.errors import InvalidInput

READ, WRITE = "read", "write"
LEVELS = (READ, WRITE)


@dataclass(frozen=True)
class PackScope:
    """What one caller may do: ``packs`` it may read (``None``: every pack) and ``writable`` packs;
    ``tools``: the named tools it is narrowed to within those packs (``None``: every tool of them);
    ``off``: the tools its workspace's admins switched off (:mod:`poggio.identity.switches`), for every caller."""

    packs: frozenset[str] | None
    writable: frozenset[str] = frozenset()
    tools: frozenset[str] | None = None
    off: frozenset[str] = frozenset()

    @property
    def levels(self) -> dict[str, str]:
        return {p: WRITE if p in self.writable else READ for p in sorted(self.packs or ())}


def parse(
    value: str | Iterable[str] | Mapping[str, str] | None, known: Iterable[str] | None = None, field: str = "packs"
) -> dict[str, str] | None:
    """``{pack: "read" | "write"}`` from ``accounts:write,contacts`` (or a list of such items, or a
    mapping); ``None`` for nothing given. An unknown pack or level raises :class:`InvalidInput`
    naming both and what is allowed. A pack named twice keeps its higher level."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        items = [f"{p}:{level}" for p, level in value.items()]
    elif isinstance(value, str):
        items = value.replace(" ", ",").split(",")
    else:
        items = list(value)
    out: dict[str, str] = {}
    known_set = set(known) if known is not None else None
    for raw in items:
        item = (raw or "").strip()
        if not item:
            continue
        pack, _, level = item.partition(":")
        pack, level = pack.strip(), (level.strip().lower() or READ)
        if level not in LEVELS:
            raise InvalidInput(field, f"{item!r}: the access level is read or write (accounts:write), not {level!r}")
        if known_set is not None and pack not in known_set:
            raise InvalidInput(
                field, f"unknown tool pack(s): {pack}; the loaded packs are {', '.join(sorted(known_set)) or 'none'}"
            )
        if out.get(pack) != WRITE:
            out[pack] = level
    return out or None


def format_levels(levels: Mapping[str, str] | None) -> str | None:
    """The stored text: ``accounts:write,contacts`` (sorted; read without a suffix)."""
    if not levels:
        return None
    return ",".join(p if levels[p] == READ else f"{p}:{WRITE}" for p in sorted(levels))


def of_text(text: str | None, all_when_empty: bool = True) -> PackScope:
    """The scope a stored text grants. ``None`` (or empty) is every pack, read only, when
    ``all_when_empty`` (API tokens); otherwise no pack."""
    levels = parse(text) if text else None
    if levels is None:
        return PackScope(None if all_when_empty else frozenset())
    return PackScope(frozenset(levels), frozenset(p for p, lvl in levels.items() if lvl == WRITE))


def describe(levels: Mapping[str, str] | None) -> str:
    """For people: ``accounts (read and write), contacts (read)``; ``all packs (read)`` for none."""
    if not levels:
        return "all packs (read)"
    return ", ".join(f"{p} ({'read and write' if levels[p] == WRITE else 'read'})" for p in sorted(levels))


# -- OAuth's spelling -----------------------------------------------------------------------------------
def oauth_scope(levels: Mapping[str, str]) -> str:
    """``accounts:write contacts:read``: OAuth's space-separated scope for ``levels``."""
    return " ".join(f"{p}:{levels[p]}" for p in sorted(levels))


def supported_oauth_scopes(known: Iterable[str]) -> list[str]:
    return [f"{p}:{level}" for p in sorted(known) for level in LEVELS]


def of_oauth_scope(scope: str | None, known: Iterable[str]) -> dict[str, str]:
    """The levels an OAuth scope string asks for; no scope at all asks to read every known pack
    (write is never implied). ``offline_access`` is ignored; anything else unknown raises."""
    known = set(known)
    if not scope or not scope.strip():
        return {p: READ for p in known}
    out: dict[str, str] = {}
    for item in scope.split():
        if item == "offline_access":
            continue
        pack, _, level = item.partition(":")
        if pack not in known or level not in LEVELS:
            raise InvalidInput(
                "scope", f"unknown scope {item!r}; this server grants {', '.join(supported_oauth_scopes(known))}"
            )
        if out.get(pack) != WRITE:
            out[pack] = level
    return out


# -- the MCP server's decisions (the SDK path and any other path call these) -----------------------------
def switched_away(tool_name: str, scope: PackScope) -> bool:
    """Whether the tool is hidden from this caller by name: switched off in its workspace, or outside
    the tools its token or grant is narrowed to. Such a tool is absent from ``tools/list`` and a call
    of it gets the answer an unknown tool gets."""
    return tool_name in scope.off or (scope.tools is not None and tool_name not in scope.tools)


def may_see(tool_pack: str, read_only: bool, scope: PackScope, tool_name: str | None = None) -> bool:
    """Whether ``tools/list`` shows the tool to this caller (``tool_name`` given: also whether it is
    switched off or outside the caller's narrowing, :func:`switched_away`)."""
    if tool_name is not None and switched_away(tool_name, scope):
        return False
    if scope.packs is not None and tool_pack not in scope.packs:
        return False
    return read_only or tool_pack in scope.writable


def refusal(tool_name: str, tool_pack: str, read_only: bool, scope: PackScope) -> str | None:
    """Why this caller may not call the tool (a message naming the missing scope), or ``None``."""
    if read_only:
        if scope.packs is not None and tool_pack not in scope.packs:
            return (
                f"Tool {tool_name} is not available to this token: it is restricted to the "
                f"{', '.join(sorted(scope.packs)) or 'no'} tool pack(s)."
            )
        return None
    if tool_pack in scope.writable:
        return None
    has = (
        f"{tool_pack}:{READ}"
        if scope.packs is None or tool_pack in scope.packs
        else f"no access to the {tool_pack} pack"
    )
    return f"{tool_name} needs the {tool_pack}:{WRITE} scope; this token has {has}."
