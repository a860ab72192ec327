"""The tool-pack registry: entry-point discovery in one place, per-pack fault isolation.

A :class:`PackRegistry` is built explicitly at process start (``PackRegistry.load()``), never as a
side effect of an import, so tests build registries with exactly the packs they want
(``PackRegistry.from_modules(...)``). A pack that fails to import, fails validation, or raises in a
hook is recorded in :attr:`PackRegistry.errors` with the reason and left out; the others keep
working.
"""

from __future__ import annotations

import importlib.metadata
import logging
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from poggio import hookspecs
from poggio.packs import CsvKind, PackInfo, ProfileSection, ToolSpec

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "poggio"
_TOOL_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def _reason(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


@dataclass
class Pack:
    info: PackInfo
    module: ModuleType
    tools: list[ToolSpec] = field(default_factory=list)
    importers: list[CsvKind] = field(default_factory=list)
    migrations: Path | None = None
    distribution: str | None = None


class PackRegistry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("poggio")
        self.pm.add_hookspecs(hookspecs)
        self.packs: dict[str, Pack] = {}
        self.errors: dict[str, str] = {}
        self._tools: dict[str, ToolSpec] = {}

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def load(cls, enabled: Iterable[str] | None = None) -> "PackRegistry":
        """Every pack installed under the ``poggio`` entry-point group, or only those named in
        ``enabled`` (``POGGIO_PACKS``)."""
        registry = cls()
        wanted = None if enabled is None else set(enabled)
        candidates: list[tuple[str, ModuleType, str | None]] = []
        seen: set[str] = set()
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in seen or (wanted is not None and ep.name not in wanted):
                continue
            seen.add(ep.name)
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else None
            try:
                module = ep.load()
            except BaseException as exc:  # noqa: BLE001 - a pack's import may raise anything
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                registry._fail(ep.name, f"import failed: {_reason(exc)}")
                continue
            candidates.append((ep.name, module, dist))
        if wanted is not None:
            for missing in sorted(wanted - seen):
                registry.errors[missing] = "not installed (named in POGGIO_PACKS)"
        registry._add_all(candidates)
        return registry

    @classmethod
    def from_modules(cls, modules: dict[str, ModuleType]) -> "PackRegistry":
        registry = cls()
        registry._add_all([(name, module, None) for name, module in modules.items()])
        return registry

    def _fail(self, name: str, reason: str) -> None:
        log.error("tool pack %r left out: %s", name, reason)
        self.errors[name] = reason

    def _add_all(self, candidates: list[tuple[str, ModuleType, str | None]]) -> None:
        declared: dict[str, tuple[PackInfo, ModuleType, str | None]] = {}
        for name, module, dist in candidates:
            try:
                self.pm.register(module, name=name)
                self.pm.check_pending()
            except Exception as exc:
                if self.pm.is_registered(module):
                    self.pm.unregister(module)
                self._fail(name, f"invalid hooks: {exc}")
                continue
            try:
                info = self.call_pack(name, "poggio_pack")
                if not isinstance(info, PackInfo):
                    raise TypeError("poggio_pack() must return a poggio.PackInfo")
                if info.name != name:
                    raise ValueError(f"declares name {info.name!r} but is registered as {name!r}")
            except Exception as exc:
                self.pm.unregister(module)
                self._fail(name, f"poggio_pack failed: {_reason(exc)}")
                continue
            declared[name] = (info, module, dist)

        # Dependency order; a pack whose requirement is missing or failed is left out too.
        ordered: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> bool:
            if name in ordered:
                return True
            if name not in declared or name in visiting:
                return False
            visiting.add(name)
            ok = True
            for dep in declared[name][0].requires:
                if not visit(dep):
                    ok = False
                    if name not in self.errors:
                        self._fail(name, f"requires pack {dep!r}, which is not loaded")
            visiting.discard(name)
            if ok:
                ordered.append(name)
            return ok

        for name in sorted(declared):
            visit(name)
        for name in declared:
            if name not in ordered:
                self.pm.unregister(declared[name][1])

        for name in ordered:
            info, module, dist = declared[name]
            try:
                pack = Pack(info=info, module=module, distribution=dist)
                pack.tools = [self._check_tool(name, t) for t in (self.call_pack(name, "poggio_tools") or [])]
                pack.importers = list(self.call_pack(name, "poggio_csv_importers") or [])
                migrations = self.call_pack(name, "poggio_migrations")
                pack.migrations = Path(migrations) if migrations else None
                clash = [t.name for t in pack.tools if t.name in self._tools]
                if clash:
                    raise ValueError(f"tool name(s) already taken by another pack: {', '.join(clash)}")
            except Exception as exc:
                self.pm.unregister(module)
                self._fail(name, _reason(exc))
                continue
            self.packs[name] = pack
            for t in pack.tools:
                self._tools[t.name] = t

    def _check_tool(self, pack: str, spec: Any) -> ToolSpec:
        if not isinstance(spec, ToolSpec):
            raise TypeError(f"poggio_tools() returned {spec!r}, not a function decorated with @poggio.tool")
        if not spec.name or set(spec.name) - _TOOL_NAME_CHARS or len(spec.name) > 64:
            raise ValueError(f"tool name {spec.name!r} must be 1-64 characters of a-z, 0-9 and _")
        return spec.with_pack(pack)

    # -- calling hooks one pack at a time ---------------------------------------------------------
    def _impl(self, pack: str, hook: str):
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if impl.plugin_name == pack:
                return impl
        return None

    def call_pack(self, pack: str, hook: str, **kwargs: Any) -> Any:
        impl = self._impl(pack, hook)
        if impl is None:
            return None
        return impl.function(*[kwargs[arg] for arg in impl.argnames])

    def call_each(self, hook: str, packs: Iterable[str] | None = None, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call ``hook`` on each loaded pack (in dependency order), attributing results; a pack that
        raises is logged and skipped for this call."""
        results = []
        for name in self.packs:
            if packs is not None and name not in packs:
                continue
            try:
                results.append((name, self.call_pack(name, hook, **kwargs)))
            except Exception:
                log.exception("tool pack %r raised in %s", name, hook)
        return results

    # -- queries -----------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.packs)

    def tools(self, packs: frozenset[str] | None = None) -> list[ToolSpec]:
        return [t for t in self._tools.values() if packs is None or t.pack in packs]

    def tool(self, name: str) -> ToolSpec | None:
        return self._tools.get(name)

    def importer(self, kind: str) -> CsvKind | None:
        for pack in self.packs.values():
            for importer in pack.importers:
                if importer.kind == kind:
                    return importer
        return None

    def account_profile(self, ctx, account) -> list[ProfileSection]:
        sections = []
        for name, section in self.call_each("poggio_account_profile", packs=ctx.packs, ctx=ctx, account=account):
            if isinstance(section, ProfileSection):
                sections.append(section)
            elif section is not None:
                log.error("tool pack %r returned %r from poggio_account_profile, not a ProfileSection", name, section)
        return sections
