"""The reference: a bare `mcp` SDK server with an in-memory token check and a trivial echo tool,
served like Poggio (stateless, JSON responses, one uvicorn worker).

    .venv/bin/python -m uvicorn benchmarks.reference_server:app --port 8101
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from starlette.responses import JSONResponse

TOKEN = "Bearer reference-token"

server = MCPServer("reference")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


inner = server.streamable_http_app(stateless_http=True, json_response=True)


async def app(scope, receive, send):
    if scope["type"] == "http":
        headers = dict(scope["headers"])
        if headers.get(b"authorization", b"").decode() != TOKEN:
            await JSONResponse({"error": "invalid_token"}, status_code=401)(scope, receive, send)
            return
    await inner(scope, receive, send)
