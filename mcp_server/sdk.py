"""The one private attribute of the MCP SDK the server reads (``mcp>=2.3,<2.4``, pinned in pyproject.toml).

``MCPServer._lowlevel_server`` is the low-level ``Server`` an ``MCPServer`` builds: the SDK's own
``streamable_http_app`` mounts it, and its documentation shows mounting it in an app of one's own the
same way. Everything else the lean path needs of it is in :class:`mcp_server.lean.SdkAdapter`; both are
checked against the installed SDK by tests/test_adapters.py and tests/test_lean_path.py.
"""

from __future__ import annotations

from typing import Any

from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer


def lowlevel_server(server: MCPServer) -> Server[Any]:
    """``server``'s low-level server, to mount in a session manager and to read its middleware."""
    return server._lowlevel_server


def check() -> None:
    """Raise ``RuntimeError`` when the installed SDK's ``MCPServer`` no longer keeps a low-level ``Server``."""
    lowlevel = getattr(MCPServer("check"), "_lowlevel_server", None)
    if not isinstance(lowlevel, Server):
        raise RuntimeError(f"mcp: MCPServer._lowlevel_server is {type(lowlevel).__name__}, not a low-level Server")
    if not isinstance(getattr(lowlevel, "middleware", None), list):
        raise RuntimeError("mcp: the low-level Server no longer keeps its middleware in a list")
