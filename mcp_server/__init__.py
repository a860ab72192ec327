"""Poggio's MCP server: Streamable HTTP at /mcp, bearer tokens decide the workspace, tools come from
the tool packs. ``mcp_server.app:create_app`` is the ASGI application factory."""
