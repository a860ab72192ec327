"""Bearer-token authentication on the SDK's auth layer.

The token is checked by :class:`poggio.identity.tokens.TokenService` (digest look-up, expiry, revocation,
entitlement), in a worker thread unless the database is SQLite; on success the SDK's
``AuthenticatedUser``/``AccessToken`` land in
the request scope and the SDK's ``AuthContextMiddleware`` puts them in the context variable that
``mcp.server.auth.middleware.auth_context.get_access_token()`` reads. On failure the answer is a 401
with ``WWW-Authenticate: Bearer`` (or a 403 for a workspace without the MCP entitlement) and a JSON
body that says what was wrong, never whether a token existed.

Why not the SDK's ``BearerAuthBackend`` + ``RequireAuthMiddleware`` alone: they answer every
failure with the same "Authentication required" and cannot produce the 403 our contract needs, so
the backend here raises the reason and Starlette's ``on_error`` renders it; the SDK's
``RequireAuthMiddleware`` still guards the endpoint behind it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from time import monotonic

import anyio.to_thread
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware, get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import Response

from mcp_server.ratelimit import StoreUnavailable
from poggio.identity.oauth import OAuthService
from poggio.identity.tokens import TokenRejected, TokenService, VerifiedToken, ip_allowed, utcnow
from poggio.records.usage import UsageRecorder
from poggio.security.token_format import ACCESS_PREFIX, well_formed
from poggio.storage.db import CommitWatcher, database

# the key of the expiry warning in a result's _meta
EXPIRY_META_KEY = "io.poggio/token-expiry"
REFUSALS = {
    "ip_not_allowed": "This token may be used only from the networks its administrator listed; this request "
    "came from {ip}. Ask a Poggio administrator (Settings > MCP Server) to add it.",
}

REALM = "Poggio"
# scope key: the verdict on this request's credentials, reached before the Starlette stack (by
# mcp_server.front.Front): the credentials, or the refusal to raise
VERDICT = "poggio.auth_verdict"


class Rejected(AuthenticationError):
    def __init__(self, reason: str, retry_after: int | None = None, detail: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.detail = detail


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified token, from where, with which client; and the one hook by which
    every request path (the SDK's, and any leaner one) puts the request on record: :meth:`record`."""

    token: VerifiedToken
    ip: str | None
    user_agent: str | None = None
    started: float = field(default_factory=time.perf_counter, compare=False)
    recorder: UsageRecorder | None = field(default=None, compare=False, repr=False)

    def record(self, tool: str, outcome: str, client: str | None = None) -> None:
        """Count the request and write it to the activity record (batched, off the request path):
        ``outcome`` is one of ok, tool_error, refused, rate_limited, timed_out; ``client`` the MCP
        client's name and version when the request tells it, else its User-Agent is used."""
        if self.recorder is None:
            return
        token = self.token
        self.recorder.record(
            token.token_id,
            tool,
            ip=self.ip,
            client=client or self.user_agent,
            kind=token.kind,
            workspace_id=token.workspace_id,
            outcome=outcome,
            latency_ms=(time.perf_counter() - self.started) * 1000,
        )

    def expiry_meta(self) -> dict | None:
        """``{EXPIRY_META_KEY: warning}`` for a result's ``_meta`` when the credential stops working
        within 7 days, else None."""
        warning = self.token.expiry_warning()
        return None if warning is None else {EXPIRY_META_KEY: warning}


def principal_of(scope) -> Principal | None:
    """The caller of an authenticated ASGI request (``scope``), for middleware outside the SDK."""
    user = scope.get("user")
    access = getattr(user, "access_token", None)
    return access.claims.get("principal") if access is not None and access.claims else None


def current_principal() -> Principal | None:
    access = get_access_token()
    if access is None or not access.claims:
        return None
    return access.claims.get("principal")


class VerifiedCache:
    """Verified credentials, kept while the database has not changed: every verdict the database
    could give differently after a change (revoked, expired early, the workspace's entitlement, the
    token's limits, an approver's role) is a commit, and any commit by anyone empties the cache
    (:class:`poggio.storage.db.CommitWatcher`), so a revocation still takes effect on the next request. What
    changes with the clock is checked at every use: the credential's expiry and, after a rotation,
    the end of the old secret's overlap (as a deadline on the monotonic clock: the cache is emptied
    at every flush of the usage counters anyway, long before the two clocks could drift apart).
    Keyed by the token's SHA-256, never the token itself. For one thread (the event loop's)."""

    SIZE = 10_000

    def __init__(self, watcher: CommitWatcher):
        self.watcher = watcher
        self._version: int | None = None
        self._verified: dict[bytes, tuple[VerifiedToken, float | None]] = {}

    def lookup(self, presented: str) -> VerifiedToken | None:
        """The kept verdict on ``presented``, if the database has not changed since and it has not
        expired; else None."""
        version = self.watcher.version()
        if version != self._version:
            self._verified.clear()
            self._version = version
            return None
        hit = self._verified.get(hashlib.sha256(presented.encode()).digest())
        if hit is not None and (hit[1] is None or hit[1] > monotonic()):
            return hit[0]
        return None

    def keep(self, presented: str, verified: VerifiedToken) -> None:
        if len(self._verified) >= self.SIZE:
            self._verified.clear()
        ends = [t for t in (verified.expires_at, verified.ends_at) if t is not None]
        deadline = monotonic() + (min(ends) - utcnow()).total_seconds() if ends else None
        self._verified[hashlib.sha256(presented.encode()).digest()] = (verified, deadline)


class TokenAuthBackend(AuthenticationBackend):
    def __init__(
        self,
        service: TokenService,
        limiter: anyio.CapacityLimiter,
        rate_limit=None,
        *,
        inline: bool = False,
        oauth: OAuthService | None = None,
        resource: str = "",
        recorder: UsageRecorder | None = None,
        label=None,
        watcher: CommitWatcher | None = None,
    ):
        """``inline``: verify on the event loop rather than in a worker thread. Right for SQLite,
        where the look-up is an in-process index read of some 30 µs, less than the hop to a thread
        costs; wrong for a database across a network, whose round trip must not stall the loop.
        ``oauth`` verifies OAuth access tokens (``pgoa_…``), which must be bound to ``resource``.
        ``watcher`` (inline only): keep verdicts while the database is unchanged (:class:`VerifiedCache`)."""
        self.cache = VerifiedCache(watcher) if watcher is not None and inline else None
        self.service = service
        self.limiter = limiter
        self.rate_limit = rate_limit
        self.inline = inline
        self.oauth = oauth or OAuthService(service.pepper)
        self.resource = resource
        self.recorder = recorder
        # (Mcp-Method, Mcp-Name) headers -> the name a refused request is counted under
        self.label = label or (lambda method, name: "other")

    def _verify(self, presented: str) -> VerifiedToken:
        with database.connection_context():
            if presented.startswith(ACCESS_PREFIX):
                return self.oauth.verify_access(presented, self.resource)
            return self.service.verify(presented)

    async def authenticate(self, conn: HTTPConnection):
        verdict = conn.scope.get(VERDICT)
        if verdict is not None:  # checked (and counted) once, by the front
            if isinstance(verdict, BaseException):
                raise verdict
            return verdict
        header = conn.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if not header:
            raise Rejected("missing")
        if scheme.lower() != "bearer":
            # another scheme (Basic, ...) carries no bearer token at all: a bare challenge, without
            # an error code (RFC 6750 section 3.1)
            raise Rejected("missing")
        presented = presented.strip()
        if not presented:
            raise Rejected("missing")
        verified = self.cache.lookup(presented) if self.cache is not None else None
        if verified is None:  # (a kept verdict is on a well-formed token)
            if not (well_formed(presented) or well_formed(presented, ACCESS_PREFIX)):
                raise Rejected("malformed")  # shape and checksum: junk costs no database work
            try:
                if self.inline:
                    verified = self._verify(presented)
                else:
                    verified = await anyio.to_thread.run_sync(self._verify, presented, limiter=self.limiter)
            except TokenRejected as exc:
                raise Rejected(exc.reason) from None
            if self.cache is not None:
                self.cache.keep(presented, verified)
        # the peer's address, or the client's as a proxy in POGGIO_TRUSTED_PROXIES forwarded it
        # (mcp_server.proxies): never a raw X-Forwarded-For
        ip = conn.client.host if conn.client else None
        principal = Principal(verified, ip, conn.headers.get("user-agent", "")[:200] or None, recorder=self.recorder)
        if verified.allowed_ips is not None and not ip_allowed(verified.allowed_ips, ip):
            principal.record(self._label(conn), "refused")
            raise Rejected("ip_not_allowed", detail=REFUSALS["ip_not_allowed"].format(ip=ip or "an unknown address"))
        if self.rate_limit is not None:
            try:
                wait = await self.rate_limit.retry_after(f"{verified.kind}:{verified.token_id}", verified.rate_limit)
            except StoreUnavailable:
                raise Rejected("unavailable") from None
            if wait is not None:
                principal.record(self._label(conn), "rate_limited")
                raise Rejected("rate_limited", retry_after=wait)
        access = AccessToken(
            token=f"{presented.split('_', 1)[0]}_…{presented[-4:]}",  # never the secret itself
            client_id=f"{verified.kind}:{verified.token_id}",
            scopes=sorted(verified.packs) if verified.packs is not None else ["*"],
            expires_at=int(verified.expires_at.timestamp()) if verified.expires_at else None,
            subject=f"workspace:{verified.workspace_id}",
            claims={"principal": principal},
        )
        return AuthCredentials(access.scopes), AuthenticatedUser(access)

    def _label(self, conn: HTTPConnection) -> str:
        """What a request refused before its body is read is counted under: its ``Mcp-Method`` and
        ``Mcp-Name`` headers (protocol 2026-07-28) when they name something served, else ``other``."""
        return self.label(conn.headers.get("mcp-method"), conn.headers.get("mcp-name"))


def auth_error(conn: HTTPConnection, exc: Exception, resource_metadata: str | None = None) -> Response:
    """The refusal: 429 with ``Retry-After``, 403 for a workspace without the entitlement, else 401
    with a ``WWW-Authenticate: Bearer`` challenge. The challenge always names the protected resource
    metadata (RFC 9728 §5.1; the MCP authorization spec), so an OAuth client can find the portal and
    sign in; it carries ``error="invalid_token"`` only when a token was presented (RFC 6750 §3.1),
    so a client configured with a fixed header can tell its person that the token is the problem."""
    rejected = exc if isinstance(exc, Rejected) else Rejected("invalid")
    reason = rejected.reason
    message = TokenRejected.MESSAGES.get(reason, TokenRejected.MESSAGES["invalid"])
    if reason == "rate_limited":
        body = {
            "error": "rate_limited",
            "error_description": "Too many requests with this token; slow down.",
            "retry_after": rejected.retry_after,
        }
        return Response(
            json.dumps(body),
            status_code=429,
            media_type="application/json",
            headers={"Retry-After": str(rejected.retry_after)},
        )
    if reason == "unavailable":  # the rate limits' store (Redis) is unreachable: refused, not let through
        return StoreUnavailable().response()
    if reason in ("not_entitled", "approval_pending"):  # a valid token the workspace does not serve (yet)
        body = {"error": reason, "error_description": message}
        return Response(json.dumps(body), status_code=403, media_type="application/json")
    if reason in REFUSALS:  # a valid token, used where its limits do not allow
        body = {"error": "forbidden", "reason": reason, "error_description": rejected.detail}
        return Response(json.dumps(body), status_code=403, media_type="application/json")
    error = "invalid_request" if reason == "missing" else "invalid_token"
    challenge = f'Bearer realm="{REALM}"'
    if resource_metadata:
        challenge += f', resource_metadata="{resource_metadata}"'
    if reason != "missing":
        challenge += f', error="{error}", error_description="{message}"'
    body = {"error": error, "reason": reason, "error_description": message}
    return Response(
        json.dumps(body), status_code=401, media_type="application/json", headers={"WWW-Authenticate": challenge}
    )


def protect(app, backend: TokenAuthBackend, on_error=auth_error):
    """Wrap the MCP endpoint: authenticate, require a user, expose it to the SDK's context variable."""
    inner = RequireAuthMiddleware(AuthContextMiddleware(app), required_scopes=[])
    return AuthenticationMiddleware(inner, backend=backend, on_error=on_error)
