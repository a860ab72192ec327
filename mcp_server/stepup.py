"""The scope challenge: a tool call that an OAuth token's scope does not cover is answered
``403`` with ``WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`` (RFC 6750 §3.1, the
MCP authorization specification's scope challenge), so the app can ask its person for more.

The challenge's ``scope`` is what the call needs plus what the token already has: the client asks
for exactly that on its next authorization, and the portal adds the missing scope to the same
connected app (see :mod:`portal.oauth`). An API token (``pgo_…``) cannot be re-authorized: its
refusal stays the tool error it always was (a result with ``isError`` naming the missing scope).

Both MCP paths answer it alike: the gate (:class:`~mcp_server.gate.Gate`) asks
:meth:`ScopeChallenge.refusal` once per request, before either path is asked.
"""

from __future__ import annotations

import json

from starlette.responses import Response

from mcp_server.auth import REALM, Principal
from poggio.identity import scopes
from poggio.runtime.packs import ToolSpec

ERROR = "insufficient_scope"


class ScopeChallenge:
    """What a call out of an OAuth token's scope is answered, counted as ``refused`` like any
    refusal of scope (``rules``: the :class:`~mcp_server.gate.Gate`, which counts every request)."""

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
