"""MkDocs hook: renders pack-authors/hooks.md's reference from the hookspecs themselves.

Every hookspec of the core (``poggio.hookspecs``) and of the installed packs that own hooks
(``PackInfo(hookspecs=...)``) gets a heading ``name(arguments)`` and its docstring, read with
:mod:`inspect` from the registry Poggio loads. The page holds the marker below where the reference
goes; a hookspec without a docstring fails the build, and tests/test_docs.py checks the built page
has an entry for every hook.
"""

from __future__ import annotations

import inspect
import re

from mkdocs.exceptions import PluginError

MARKER = "<!-- hooks-reference -->"
_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc):`~?([^`]+)`")


def _markdown(doc: str) -> str:
    """reStructuredText roles and literals of the docstrings as Markdown code."""
    doc = _ROLE.sub(r"`\1`", doc)
    return doc.replace("``", "`")


def hookspecs() -> list[tuple[str, str, list[str], str]]:
    """(owner module, hook name, argument names, docstring) of every hookspec Poggio loads, the
    core's first and then by module."""
    from poggio.runtime.plugins import PackRegistry

    registry = PackRegistry.load()
    found = []
    for name, caller in vars(registry.pm.hook).items():
        if name.startswith("_") or not caller.has_spec():
            continue
        function = caller.spec.function
        found.append((function.__module__, name, list(caller.spec.argnames), inspect.getdoc(function) or ""))
    return sorted(found, key=lambda h: (h[0] != "poggio.hookspecs", h[0], _line(h)))


def _line(hook: tuple[str, str, list[str], str]) -> int:
    import importlib

    return inspect.getsourcelines(getattr(importlib.import_module(hook[0]), hook[1]))[1]


def render() -> str:
    parts: list[str] = []
    owner = None
    for module, name, args, doc in hookspecs():
        if not doc.strip():
            raise PluginError(f"hookspec {module}.{name} has no docstring: the hooks reference needs one")
        if module != owner:
            owner = module
            pack = module.rsplit(".", 1)[0]
            title = "The core's hooks" if module == "poggio.hookspecs" else f"Hooks owned by `{pack}`"
            parts.append(f"## {title}\n\nDeclared in `{module}`.\n")
        parts.append(f"### `{name}({', '.join(args)})` {{#{name}}}\n\n{_markdown(doc)}\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
