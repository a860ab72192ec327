"""Poggio's core: settings, database, models, tokens, and the API that tool packs build on.

Everything a tool pack may use is importable from here (``__all__``), and the fast primitives a
benchmark may call for from :mod:`poggio.advanced` (its ``__all__``); a pack imports nothing else of
the core. docs/pack-authors/api.md documents each name, docs/pack-authors/advanced.md the advanced
ones, docs/pack-authors/hooks.md every hook.
"""

from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("poggio")
hookspec = pluggy.HookspecMarker("poggio")

from poggio.runtime.money import format_money  # noqa: E402
from poggio.runtime.packs import CsvKind, PackInfo, ToolContext, tool  # noqa: E402
from poggio.runtime.paging import Cursor, Limit, Page, keyset_page, page_text  # noqa: E402
from poggio.runtime.prompts import Completer, Message, prefix_values, prompt  # noqa: E402
from poggio.runtime.resources import (  # noqa: E402
    APP_MIME_TYPE,
    ResourceEntry,
    ResourceNotFound,
    app_view,
    resource,
)
from poggio.runtime.results import Audio, Icon, Image, Resource, ToolError, ToolResult  # noqa: E402
from poggio.runtime.search import (  # noqa: E402
    SearchQuery,
    add_search_terms,
    query_words,
    replace_search_terms,
    search_page,
)
from poggio.runtime.writes import IfUnmodifiedSince, Timestamp, refuse_if_modified  # noqa: E402
from poggio.storage.bulk import existing_keys  # noqa: E402
from poggio.storage.db import MAX_ID, changed_at, for_update, utcnow, writing  # noqa: E402  (hookimpl and hookspec first: the modules below import them)
from poggio.storage.models import WorkspaceModel  # noqa: E402

__all__ = [
    "__version__",
    # declaring a pack and its hooks
    "hookimpl",
    "hookspec",
    "PackInfo",
    # tools
    "tool",
    "ToolContext",
    "ToolResult",
    "ToolError",
    "Image",
    "Audio",
    "Resource",
    "Icon",
    "format_money",
    # resources, resource templates and MCP App views
    "resource",
    "ResourceNotFound",
    "ResourceEntry",
    "app_view",
    "APP_MIME_TYPE",
    # prompts and argument completion
    "prompt",
    "Message",
    "Completer",
    "prefix_values",
    # paged list tools
    "Limit",
    "Cursor",
    "Page",
    "page_text",
    "keyset_page",
    # data: models, queries, search, CSV import
    "WorkspaceModel",
    "MAX_ID",
    "utcnow",
    "writing",
    "add_search_terms",
    "search_page",
    "SearchQuery",
    "query_words",
    "CsvKind",
    "existing_keys",
    # write tools
    "changed_at",
    "for_update",
    "replace_search_terms",
    "IfUnmodifiedSince",
    "refuse_if_modified",
    "Timestamp",
]

# the fast primitives live in poggio.advanced; packs written before it import them from here still
_MOVED = frozenset({"Prepared", "slot", "loaded", "bulk_insert", "reserve_ids"})


if not TYPE_CHECKING:  # hidden from type checkers, which would take any name of poggio for this

    def __getattr__(name: str) -> Any:
        if name in _MOVED:
            import warnings

            from poggio import advanced

            warnings.warn(f"import {name} from poggio.advanced", DeprecationWarning, stacklevel=2)
            return getattr(advanced, name)
        raise AttributeError(f"module 'poggio' has no attribute {name!r}")
