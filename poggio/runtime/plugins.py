"""The tool-pack registry: entry-point discovery in one place, per-pack fault isolation.

A :class:`PackRegistry` is built explicitly at process start (``PackRegistry.load()``), never as a
side effect of an import, so tests build registries with exactly the packs they want
(``PackRegistry.from_modules(...)``). A pack that fails to import, fails validation, or raises in a
hook while loading is recorded in :attr:`PackRegistry.errors` with the reason and left out; the
others keep working. Hooks are called through pluggy, one pack at a time (:meth:`call_pack`,
:meth:`call_each`), so one pack's exception never costs another pack its answer.
"""

from __future__ import annotations

import importlib.metadata
import logging
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pluggy

from poggio import hookspecs
from poggio.runtime.packs import CsvKind, CursorCodec, PackInfo, ToolContext, ToolSpec
from poggio.runtime.prompts import PromptSpec
from poggio.runtime.resources import ResourceSpec
from poggio.runtime.results import ToolError

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
    prompts: list[PromptSpec] = field(default_factory=list)
    importers: list[CsvKind] = field(default_factory=list)
    resources: list[ResourceSpec] = field(default_factory=list)
    migrations: Path | None = None
    distribution: str | None = None


class PackRegistry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("poggio")
        self.pm.add_hookspecs(hookspecs)
        self.packs: dict[str, Pack] = {}
        self.errors: dict[str, str] = {}
        self._tools: dict[str, ToolSpec] = {}
        self._prompts: dict[str, PromptSpec] = {}
        self._callers: dict[tuple[str, str], pluggy.HookCaller | Literal[False]] = {}
        self._loaded = False

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def load(cls, enabled: Iterable[str] | None = None) -> PackRegistry:
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
    def from_modules(cls, modules: dict[str, ModuleType]) -> PackRegistry:
        registry = cls()
        registry._add_all([(name, module, None) for name, module in modules.items()])
        return registry

    def _fail(self, name: str, reason: str) -> None:
        log.error("tool pack %r left out: %s", name, reason)
        self.errors[name] = reason

    def _register(self, name: str, module: ModuleType) -> bool:
        """Register ``module`` with pluggy; False (and the reason recorded) when its hooks are invalid:
        a hook whose arguments differ from the spec, or a hook nobody declares (a typo) that is not
        marked ``optionalhook``."""
        try:
            self.pm.register(module, name=name)
            unknown = sorted(
                caller.name
                for caller in self.pm.get_hookcallers(module) or []
                if not caller.has_spec()
                and any(i.plugin is module and not i.optionalhook for i in caller.get_hookimpls())
            )
            if unknown:
                raise ValueError(
                    f"unknown hook(s) {', '.join(unknown)}: not declared by the core or by a pack "
                    "this one requires (a typo? or mark it @hookimpl(optionalhook=True))"
                )
        except Exception as exc:
            if self.pm.is_registered(module):
                self.pm.unregister(module)
            self._fail(name, f"invalid hooks: {exc}")
            return False
        return True

    def _add_all(self, candidates: list[tuple[str, ModuleType, str | None]]) -> None:
        # 1. Each pack declares itself. It is registered only for that call: the hooks packs own
        #    are added before any pack is registered for good, so each pack's hooks are checked
        #    against every spec when it registers, and a mismatch is that pack's own failure.
        declared: dict[str, tuple[PackInfo, ModuleType, str | None]] = {}
        for name, module, dist in candidates:
            try:
                self.pm.register(module, name=name)
            except Exception as exc:
                self._fail(name, f"invalid hooks: {exc}")
                continue
            try:
                info = self.call_pack(name, "poggio_pack")
                if not isinstance(info, PackInfo):
                    raise TypeError("poggio_pack() must return a poggio.PackInfo")
                if info.name != name:
                    raise ValueError(f"declares name {info.name!r} but is registered as {name!r}")
            except Exception as exc:
                self._fail(name, f"poggio_pack failed: {_reason(exc)}")
                continue
            finally:
                self.pm.unregister(module)
            declared[name] = (info, module, dist)

        # 2. Dependency order; a pack whose requirement is missing or failed is left out too.
        for name in self._ordered(declared):
            info, module, dist = declared[name]
            missing = [dep for dep in info.requires if dep not in self.packs]
            if missing:
                self._fail(name, f"requires pack {missing[0]!r}, which is not loaded")
                continue
            if info.hookspecs is not None:
                try:
                    self.pm.add_hookspecs(info.hookspecs)
                except Exception as exc:
                    self._fail(name, f"invalid hookspecs: {_reason(exc)}")
                    continue
            if not self._register(name, module):
                continue
            try:
                pack = Pack(info=info, module=module, distribution=dist)
                pack.tools = [self._check_tool(name, t) for t in (self.call_pack(name, "poggio_tools") or [])]
                pack.prompts = [self._check_prompt(name, p) for p in (self.call_pack(name, "poggio_prompts") or [])]
                pack.importers = list(self.call_pack(name, "poggio_csv_importers") or [])
                bad = [i for i in pack.importers if not isinstance(i, CsvKind)]
                if bad:
                    raise TypeError(f"poggio_csv_importers() returned {bad[0]!r}, not a poggio.CsvKind")
                pack.resources = [self._check_resource(t) for t in (self.call_pack(name, "poggio_resources") or [])]
                pack.resources = [r.with_pack(name) for r in pack.resources]
                taken_uris = [r.uri for r in pack.resources if self.resource(r.uri) is not None]
                if taken_uris or len({r.uri for r in pack.resources}) != len(pack.resources):
                    raise ValueError(f"resource URI(s) already taken: {', '.join(taken_uris) or 'twice in this pack'}")
                migrations = self.call_pack(name, "poggio_migrations")
                pack.migrations = Path(migrations) if migrations else None
                clash = [t.name for t in pack.tools if t.name in self._tools]
                if clash:
                    raise ValueError(f"tool name(s) already taken by another pack: {', '.join(clash)}")
                clash = [p.name for p in pack.prompts if p.name in self._prompts]
                if clash:
                    raise ValueError(f"prompt name(s) already taken by another pack: {', '.join(clash)}")
                taken = [i.kind for i in pack.importers if self.importer(i.kind) is not None]
                if taken:
                    raise ValueError(f"CSV kind(s) already taken by another pack: {', '.join(taken)}")
            except Exception as exc:
                self.pm.unregister(module)
                self._fail(name, _reason(exc))
                continue
            self.packs[name] = pack
            for t in pack.tools:
                self._tools[t.name] = t
            for p in pack.prompts:
                self._prompts[p.name] = p
        self._callers.clear()  # built while packs were still registering
        self._loaded = True

    def _ordered(self, declared: dict[str, tuple[PackInfo, ModuleType, str | None]]) -> list[str]:
        """The declared packs, each after those it requires (a cycle or an unknown requirement leaves
        a pack after the others, where its missing requirement is reported)."""
        ordered: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in ordered or name in visiting or name not in declared:
                return
            visiting.add(name)
            for dep in declared[name][0].requires:
                visit(dep)
            visiting.discard(name)
            ordered.append(name)

        for name in sorted(declared):
            visit(name)
        return ordered

    def _check_tool(self, pack: str, spec: Any) -> ToolSpec:
        if not isinstance(spec, ToolSpec):
            raise TypeError(f"poggio_tools() returned {spec!r}, not a function decorated with @poggio.tool")
        if not spec.name or set(spec.name) - _TOOL_NAME_CHARS or len(spec.name) > 64:
            raise ValueError(f"tool name {spec.name!r} must be 1-64 characters of a-z, 0-9 and _")
        return spec.with_pack(pack)

    @staticmethod
    def _check_resource(spec: Any) -> ResourceSpec:
        if not isinstance(spec, ResourceSpec):
            raise TypeError(f"poggio_resources() returned {spec!r}, not a function decorated with @poggio.resource")
        return spec

    def _check_prompt(self, pack: str, spec: Any) -> PromptSpec:
        if not isinstance(spec, PromptSpec):
            raise TypeError(f"poggio_prompts() returned {spec!r}, not a function decorated with @poggio.prompt")
        if not spec.name or set(spec.name) - _TOOL_NAME_CHARS or len(spec.name) > 64:
            raise ValueError(f"prompt name {spec.name!r} must be 1-64 characters of a-z, 0-9 and _")
        return spec.with_pack(pack)

    # -- calling hooks, through pluggy, one pack at a time ----------------------------------------
    def call_pack(self, pack: str, hook: str, **kwargs: Any) -> Any:
        """``pack``'s implementation of ``hook`` called through pluggy; ``None`` when the pack does not
        implement it (or nobody declares the hook). Exceptions propagate."""
        caller: pluggy.HookCaller | Literal[False] | None = self._callers.get((pack, hook))
        if caller is None:
            if not hasattr(self.pm.hook, hook):
                return None
            plugin = self.pm.get_plugin(pack)
            others = [p for p in self.pm.get_plugins() if p is not plugin]
            caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
            if not caller.get_hookimpls():
                caller = False  # the pack does not implement it: nothing to call
            if self._loaded:  # the set of plugins is fixed from now on
                self._callers[(pack, hook)] = caller
        if caller is False:
            return None
        results = caller(**kwargs)
        return results[0] if results else None

    def call_each(
        self,
        hook: str,
        packs: Iterable[str] | None = None,
        on_error: Callable[[str, Exception], None] | None = None,
        **kwargs: Any,
    ) -> list[tuple[str, Any]]:
        """Call ``hook`` on each loaded pack (in dependency order; only those in ``packs`` if given):
        ``[(pack, result)]`` without ``None`` results. A pack that raises is logged, passed to
        ``on_error``, and left out of this call's answer; the others still answer. A
        :class:`ToolError` is the caller's error, not the pack's: it reaches the caller."""
        results = []
        for name in self.packs:
            if packs is not None and name not in packs:
                continue
            try:
                result = self.call_pack(name, hook, **kwargs)
            except ToolError:
                raise  # a refusal of the caller's input (poggio_note_link), not a pack's failure
            except Exception as exc:
                log.exception("tool pack %r raised in %s", name, hook)
                if on_error is not None:
                    on_error(name, exc)
                continue
            if result is not None:
                results.append((name, result))
        return results

    def tool_context(
        self,
        cursors: CursorCodec,
        workspace_id: int,
        token_id: int | None,
        packs: frozenset[str] | None,
        tool_name: str = "",
        *,
        writable: frozenset[str] = frozenset(),
        caller: str = "",
        token_kind: str = "token",
        changes: list[str] | None = None,
    ) -> ToolContext:
        """The context of one tool call: it may call hooks on the packs in ``packs``, and nothing else
        of the registry."""
        return ToolContext(
            workspace_id=workspace_id,
            token_id=token_id,
            packs=packs,
            cursors=cursors,
            tool_name=tool_name,
            hooks=self._scoped_call,
            writable=writable,
            caller=caller,
            token_kind=token_kind,
            changes=changes,
        )

    def _scoped_call(self, hook: str, packs: frozenset[str] | None, **kwargs: Any) -> list[tuple[str, Any]]:
        return self.call_each(hook, packs=packs, **kwargs)

    # -- queries -----------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.packs)

    def tools(self, packs: frozenset[str] | None = None) -> list[ToolSpec]:
        return [t for t in self._tools.values() if packs is None or t.pack in packs]

    def tool(self, name: str) -> ToolSpec | None:
        return self._tools.get(name)

    def resources(self, packs: frozenset[str] | None = None) -> list[ResourceSpec]:
        """Every loaded pack's resources and templates (only those of ``packs`` if given)."""
        return [r for p in self.packs.values() if packs is None or p.info.name in packs for r in p.resources]

    def resource(self, uri: str) -> ResourceSpec | None:
        """The resource or template declared with exactly this URI (template)."""
        return next((r for p in self.packs.values() for r in p.resources if r.uri == uri), None)

    def resource_template(self, uri: str) -> ResourceSpec | None:
        """The resource template declared with exactly this URI template (what ``completion/complete``
        names in a ``ref/resource``), or None."""
        spec = self.resource(uri)
        return spec if spec is not None and spec.template else None

    def resolve(self, uri: str) -> tuple[ResourceSpec, dict[str, str]] | None:
        """The resource that serves ``uri`` and its template's values: a static resource first,
        then the first template (in pack order) that matches."""
        specs = self.resources()
        for spec in sorted(specs, key=lambda r: r.template):
            values = spec.match(uri)
            if values is not None:
                return spec, values
        return None

    def prompts(self, packs: frozenset[str] | None = None) -> list[PromptSpec]:
        return [p for p in self._prompts.values() if packs is None or p.pack in packs]

    def prompt(self, name: str) -> PromptSpec | None:
        return self._prompts.get(name)

    @property
    def kinds(self) -> list[str]:
        """Every CSV kind the loaded packs import."""
        return sorted(i.kind for p in self.packs.values() for i in p.importers)

    def importer(self, kind: str) -> CsvKind | None:
        for pack in self.packs.values():
            for importer in pack.importers:
                if importer.kind == kind:
                    return importer
        return None

    def pack_of_kind(self, kind: str) -> str | None:
        return next((name for name, p in self.packs.items() if any(i.kind == kind for i in p.importers)), None)

    def instructions(self, product: str) -> str:
        """The MCP server's instructions: what the server is, then each loaded pack's title,
        description and instructions."""
        lines = [
            f"{product} is a sales workspace. These tools work on the workspace of the API token or "
            "OAuth approval that calls them; they come from these tool packs:"
        ]
        for pack in self.packs.values():
            info = pack.info
            lines.append(" ".join(x for x in (f"- {info.title}:", info.description, info.instructions) if x))
        return "\n".join(lines)
