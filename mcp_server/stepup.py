"""The scope challenge: a tool call that an OAuth token's scope does not cover is answered
``403`` with ``WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`` (RFC 6750 §3.1, the
MCP authorization specification's scope challenge), so the app can ask its person for more.

The challenge's ``scope`` is what the call needs plus what the token already has: the client asks
for exactly that on its next authorization, and the portal adds the missing scope to the same
connected app (see :mod:`portal.oauth`). An API token (``pgo_…``) cannot be re-authorized: its
refusal stays the tool error it always was (a result with ``isError`` naming the missing scope).

Both MCP paths answer it alike: :class:`~mcp_server.lean.LeanPath` asks :meth:`ScopeChallenge.refusal`
for the calls it answers, and :class:`ScopeChallengeMiddleware` stands in front of the SDK for every
other request.
"""

from __future__ import annotations

import json

from mcp_types import CLIENT_INFO_META_KEY
from starlette.responses import Response

from mcp_server.asgi import read_body, replay
from mcp_server.auth import REALM, Principal
from poggio.identity import scopes
from poggio.runtime.packs import ToolSpec

ERROR = "insufficient_scope"


class ScopeChallenge:
    """What a call out of an OAuth token's scope is answered, counted as ``refused`` like any
    refusal of scope (``rules``: the :class:`~mcp_server.binding.ScopeMiddleware`, whose counting
    both paths share)."""

    def __init__(self, rules, resource_metadata: str | None):
        self.rules = rules
        self.registry = rules.registry
        self.resource_metadata = resource_metadata

    def refusal(self, principal: Principal, spec: ToolSpec, client: str | None) -> Response | None:
        token = principal.token
        if token.kind != "grant":  # an API token: the tool error, in the SDK's answer
            return None
        if scopes.switched_away(spec.name, token.scope):  # answered as an unknown tool, by the SDK path
            return None
        refused = scopes.refusal(spec.name, spec.pack, spec.read_only, token.scope)
        if refused is None:
            return None
        needed = f"{spec.pack}:{scopes.READ if spec.read_only else scopes.WRITE}"
        wanted = " ".join(sorted(set(scopes.oauth_scope(token.scope.levels).split()) | {needed}))
        description = (
            f"{refused} To go on the app needs {needed}: an app people sign in to authorizes again "
            f"asking for '{wanted}', and a workspace admin approves the addition; a workspace's own "
            "client (client_credentials) has its packs changed by an admin."
        ).replace('"', "'")
        challenge = f'Bearer realm="{REALM}", error="{ERROR}", scope="{wanted}"'
        if self.resource_metadata:
            challenge += f', resource_metadata="{self.resource_metadata}"'
        challenge += f', error_description="{description}"'
        self.rules.count(principal, spec.name, False, client, "refused")
        body = {"error": ERROR, "error_description": description, "scope": wanted}
        return Response(
            json.dumps(body), status_code=403, media_type="application/json", headers={"WWW-Authenticate": challenge}
        )


def _called(body: bytes, registry) -> tuple[ToolSpec, str | None] | None:
    """The tool a single ``tools/call`` message calls, and the client it names (2026-07-28)."""
    if b"tools/call" not in body:
        return None
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested too deep: the SDK answers -32700
        return None
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return None
    params = message.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("name"), str):
        return None
    spec = registry.tool(params["name"])
    if spec is None:
        return None
    meta = params.get("_meta")
    info = meta.get(CLIENT_INFO_META_KEY) if isinstance(meta, dict) else None
    client = (
        f"{info.get('name')} {info.get('version') or ''}".strip()[:200]
        if isinstance(info, dict) and info.get("name")
        else None
    )
    return spec, client


class ScopeChallengeMiddleware:
    """ASGI middleware behind authentication: the challenge for a call out of an OAuth token's
    scope. Requests with an API token pass untouched, their body unread."""

    def __init__(self, app, challenge: ScopeChallenge, principal_of, max_body: int):
        self.app = app
        self.challenge = challenge
        self.principal_of = principal_of
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        principal = self.principal_of(scope)
        if principal is None or principal.token.kind != "grant":
            return await self.app(scope, receive, send)
        read = await read_body(receive, self.max_body)
        if read is None:
            return
        body, trailing, whole = read
        called = _called(body, self.challenge.registry) if whole else None
        refused = self.challenge.refusal(principal, *called) if called is not None else None
        if refused is not None:
            await refused(scope, receive, send)
            return
        await self.app(scope, replay(body, trailing, whole, receive), send)
