"""The MCP server's endpoints other than ``/mcp``: the OAuth protected resource metadata (RFC 9728),
``/healthz``, ``/readyz`` and ``/metrics``, each made from what it needs (:func:`mcp_server.app.create_app`
mounts them)."""

from __future__ import annotations

import hmac
import logging

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_server.metrics import Metrics
from mcp_server.ratelimit import TokenRateLimit
from poggio.identity.scopes import supported_oauth_scopes
from poggio.records.usage import UsageRecorder
from poggio.runtime.plugins import PackRegistry
from poggio.settings import Settings
from poggio.storage.db import database

log = logging.getLogger(__name__)


def protected_resource(settings: Settings, registry: PackRegistry):
    """The endpoint of ``/.well-known/oauth-protected-resource`` (and its ``/mcp`` form)."""

    async def endpoint(request: Request) -> Response:
        """RFC 9728: this resource, the authorization server that issues its tokens, its scopes."""
        return JSONResponse(
            {
                "resource": settings.mcp_public_url,
                "authorization_servers": [settings.portal_public_url],
                "scopes_supported": supported_oauth_scopes(registry.names),
                "bearer_methods_supported": ["header"],
                "resource_name": settings.product_name,
                "resource_documentation": f"{settings.portal_public_url}/settings/mcp/",
            },
            headers={"Cache-Control": "public, max-age=300"},
        )

    return endpoint


def healthz_and_readyz(limiter: anyio.CapacityLimiter, rate_limit: TokenRateLimit):
    """``/healthz`` (the process answers) and ``/readyz`` (the database and, when configured, Redis do)."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def _ping_db() -> None:
        with database.connection_context():
            database.execute_sql("SELECT 1")

    async def readyz(request: Request) -> Response:
        """For load balancers, which anyone may be: the status and nothing else (pack load errors
        are in the log and ``poggio packs list``)."""
        try:
            with anyio.fail_after(3):
                await anyio.to_thread.run_sync(_ping_db, limiter=limiter)
        except Exception as exc:  # the reason goes to the log, not to the caller
            log.warning("readiness check failed: %s", exc)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        with anyio.move_on_after(3):
            if await rate_limit.reachable():  # without its counters every request is refused
                return JSONResponse({"status": "ready"})
        log.warning("readiness check failed: Redis (POGGIO_REDIS_URL) does not answer")
        return JSONResponse({"status": "unavailable"}, status_code=503)

    return healthz, readyz


def metrics_endpoint(settings: Settings, metrics: Metrics, recorder: UsageRecorder):
    """``/metrics`` (Prometheus text), for the holder of ``POGGIO_METRICS_TOKEN`` only."""
    expected = f"Bearer {settings.metrics_token}".encode() if settings.metrics_token else None

    async def endpoint(request: Request) -> Response:
        """Every workspace's tool usage: only for the holder of ``POGGIO_METRICS_TOKEN``; without
        one configured, there is no metrics endpoint."""
        if expected is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        presented = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(presented, expected):
            return JSONResponse(
                {
                    "error": "invalid_token",
                    "error_description": "/metrics needs the bearer token set in POGGIO_METRICS_TOKEN.",
                },
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="Poggio metrics"'},
            )
        metrics.usage_pending.set(recorder.pending())
        return Response(metrics.render(), media_type=metrics.content_type)

    return endpoint
