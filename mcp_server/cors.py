"""CORS for the MCP server's routes, on Starlette's CORSMiddleware, per route.

``/mcp`` answers the browser origins the Origin check (DNS-rebinding protection) accepts, and only
those: both read ``Settings.mcp_allowed_origins`` (the public URL's origin, loopback on any port,
``POGGIO_CORS_ORIGINS``), so an origin CORS allows passes the Origin check and the other way round.
Public metadata (the OAuth discovery documents) answers any origin: :func:`public_route`.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeGuard

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response
from starlette.types import ASGIApp

# what a browser-based MCP client sends, and what it must be able to read of the answer
REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Accept",
    "MCP-Protocol-Version",
    "Mcp-Method",
    "Mcp-Name",
    "Last-Event-ID",
]
EXPOSED_HEADERS = ["WWW-Authenticate", "Mcp-Session-Id", "Retry-After"]


def origin_regex(patterns: Iterable[str]) -> str:
    """One regular expression for origin patterns in the MCP SDK's form: exact origins, or
    ``scheme://host:*`` for any port of a host."""
    alternatives = []
    for pattern in patterns:
        if pattern.endswith(":*"):
            alternatives.append(re.escape(pattern[:-2]) + r":[0-9]+")
        else:
            alternatives.append(re.escape(pattern))
    return "(?:" + "|".join(alternatives) + ")" if alternatives else r"(?!)"


def with_cors(app: ASGIApp, origins: Sequence[str] | None, methods: Sequence[str]) -> ASGIApp:
    """``app`` answering CORS preflights and decorating answers for ``origins`` (patterns as
    :func:`origin_regex` reads them), or for any origin when ``origins`` is None."""
    if origins is None:
        return CORSMiddleware(
            app,
            allow_origins=["*"],
            allow_methods=list(methods),
            allow_headers=REQUEST_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=3600,
        )
    return CORSMiddleware(
        app,
        allow_origin_regex=origin_regex(origins),
        allow_methods=list(methods),
        allow_headers=REQUEST_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        max_age=3600,
    )


def cors_route(
    path: str, endpoint: Callable | ASGIApp, origins: Sequence[str] | None, methods: Sequence[str] = ("GET",)
) -> Route:
    """A route whose answers carry CORS headers for ``origins`` (None: any origin); OPTIONS is
    answered as the preflight."""
    if _is_request_function(endpoint):
        endpoint = request_response(endpoint)
    return Route(path, with_cors(endpoint, origins, methods), methods=[*methods, "OPTIONS"])


def public_route(path: str, endpoint: Callable | ASGIApp, methods: Sequence[str] = ("GET",)) -> Route:
    """A route of public metadata (e.g. ``/.well-known/oauth-protected-resource``): CORS for any origin."""
    return cors_route(path, endpoint, None, methods)


def _is_request_function(endpoint: object) -> TypeGuard[Callable[[Request], Awaitable[Response] | Response]]:
    """What Starlette's Route takes for a request -> response function (not an ASGI app)."""
    while isinstance(endpoint, functools.partial):
        endpoint = endpoint.func
    return inspect.isfunction(endpoint) or inspect.ismethod(endpoint)
