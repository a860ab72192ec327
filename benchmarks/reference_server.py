"""The reference: a bare `mcp` SDK server with an in-memory token check, served like Poggio
(stateless, JSON responses, one uvicorn worker).

    .venv/bin/python -m uvicorn benchmarks.reference_server:app --port 8101             # one echo tool
    .venv/bin/python -m uvicorn benchmarks.reference_server:same_tools_app --port 8102  # + Poggio's tools

``app`` has one trivial ``echo`` tool, as the issue's reference figures were measured. ``same_tools_app``
also lists Poggio's six tools with their exact input and output schemas (stub bodies), so its
``tools/list`` answer is as large as Poggio's: the like-for-like comparison for ``tools/list``.
"""

from __future__ import annotations

import inspect

from mcp.server.mcpserver import MCPServer
from starlette.responses import JSONResponse

from poggio.runtime.plugins import PackRegistry

TOKEN = "Bearer reference-token"


def echo(text: str) -> str:
    """Echo the text back."""
    return text


def _stub(spec):
    """A function with the signature (arguments and output model) of a Poggio tool; never called."""
    params = list(inspect.signature(spec.fn, eval_str=True).parameters.values())[1:]

    def stub(**arguments):
        raise NotImplementedError

    stub.__name__, stub.__doc__ = spec.name, spec.description
    stub.__signature__ = inspect.Signature(params, return_annotation=spec.output_model or inspect.Signature.empty)
    return stub


def _server(with_poggio_tools: bool) -> MCPServer:
    server = MCPServer("reference")
    server.add_tool(echo)
    if with_poggio_tools:
        for spec in PackRegistry.load().tools():
            server.add_tool(_stub(spec), name=spec.name, title=spec.title, description=spec.description)
    return server


def _guarded(inner):
    async def guarded(scope, receive, send):
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization", b"").decode() != TOKEN:
            await JSONResponse({"error": "invalid_token"}, status_code=401)(scope, receive, send)
            return
        await inner(scope, receive, send)

    return guarded


app = _guarded(_server(False).streamable_http_app(stateless_http=True, json_response=True))
same_tools_app = _guarded(_server(True).streamable_http_app(stateless_http=True, json_response=True))
