"""Poggio's core: settings, database, models, tokens, and the API that tool packs build on.

Everything a tool pack may use is importable from here (``__all__``); a pack imports nothing else of
the core. docs/pack-authors/api.md documents each name, docs/pack-authors/hooks.md every hook.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("poggio")
hookspec = pluggy.HookspecMarker("poggio")

from poggio.runtime.money import format_money  # noqa: E402
from poggio.runtime.packs import (  # noqa: E402
    Audio,
    CsvKind,
    Image,
    PackInfo,
    Resource,
    ToolContext,
    ToolError,
    ToolResult,
    tool,
)
from poggio.runtime.paging import Cursor, Limit, Page, keyset_page, page_text  # noqa: E402
from poggio.runtime.resources import (  # noqa: E402
    APP_MIME_TYPE,
    ResourceEntry,
    ResourceNotFound,
    app_view,
    resource,
)
from poggio.runtime.search import add_search_terms, query_words, replace_search_terms, search_page  # noqa: E402
from poggio.runtime.writes import IfUnmodifiedSince, Timestamp, refuse_if_modified  # noqa: E402
from poggio.storage.bulk import existing_keys, reserve_ids  # noqa: E402
from poggio.storage.bulk import insert_rows as bulk_insert  # noqa: E402
from poggio.storage.db import MAX_ID, changed_at, for_update, utcnow, writing  # noqa: E402  (hookimpl and hookspec first: the modules below import them)
from poggio.storage.models import WorkspaceModel  # noqa: E402
from poggio.storage.prepared import Prepared, loaded, slot  # noqa: E402

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
    "format_money",
    # resources, resource templates and MCP App views
    "resource",
    "ResourceNotFound",
    "ResourceEntry",
    "app_view",
    "APP_MIME_TYPE",
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
    "Prepared",
    "slot",
    "loaded",
    "add_search_terms",
    "search_page",
    "query_words",
    "CsvKind",
    "bulk_insert",
    "reserve_ids",
    "existing_keys",
    # write tools
    "changed_at",
    "for_update",
    "replace_search_terms",
    "IfUnmodifiedSince",
    "refuse_if_modified",
    "Timestamp",
]
