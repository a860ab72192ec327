"""Poggio's core: settings, database, models, tokens, and the plugin API that tool packs use."""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("poggio")

from poggio.packs import (  # noqa: E402  (hookimpl first: packs import it from here)
    Audio,
    CsvKind,
    Image,
    PackInfo,
    ProfileSection,
    Resource,
    ToolContext,
    ToolError,
    ToolResult,
    tool,
)
from poggio.money import format_money  # noqa: E402


__all__ = [
    "__version__", "hookimpl", "tool", "PackInfo", "ToolContext", "ToolError", "ToolResult",
    "ProfileSection", "CsvKind", "Image", "Audio", "Resource", "format_money",
]
