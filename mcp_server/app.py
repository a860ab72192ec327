"""The ASGI application: ``uvicorn mcp_server.app:create_app --factory``."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
from urllib.parse import urlsplit

import anyio
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import UNSUPPORTED_PROTOCOL_VERSION
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from peewee import SqliteDatabase
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from mcp_server.auth import Rejected, TokenAuthBackend, auth_error, principal_of, protect
from mcp_server.binding import STATEMENT_GRACE, build_server, label_of
from mcp_server.cors import cors_route, public_route
from mcp_server.endpoints import healthz_and_readyz, metrics_endpoint, protected_resource
from mcp_server.front import Front
from mcp_server.gate import Gate, GateMiddleware
from mcp_server.lean import LeanPath
from mcp_server.metrics import Metrics, multiprocess_dir, server_pid
from mcp_server.prompting import StreamRouter
from mcp_server.proxies import TrustedProxies, leave_forwarded_headers_to_the_app
from mcp_server.ratelimit import TokenRateLimit, WriteLimit
from mcp_server.sdk import lowlevel_server
from mcp_server.tracing import Tracing
from mcp_server.unreadable import RecordUnreadable
from poggio.identity.oauth import normalise_resource
from poggio.notices.webhook_delivery import Deliverer
from poggio.records import redaction
from poggio.records.usage import UsageRecorder
from poggio.runtime.packs import CursorCodec
from poggio.runtime.plugins import PackRegistry
from poggio.services import Services
from poggio.settings import Settings, load_settings
from poggio.storage.db import CommitWatcher, bind, database

log = logging.getLogger(__name__)


def _installation(settings: Settings) -> str:
    """A name for this installation in shared stores (Redis), derived from its secret key."""
    return "poggio:" + hashlib.sha256(settings.secret_key.encode()).hexdigest()[:12]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def protected_resource_paths(public_url: str) -> list[str]:
    """Where RFC 9728 metadata is served: at the root, and with the resource's path inserted (what
    the 401 challenge points at)."""
    path = urlsplit(public_url).path.rstrip("/")
    return ["/.well-known/oauth-protected-resource"] + (
        [f"/.well-known/oauth-protected-resource{path}"] if path else []
    )


MCP_PATH = "/mcp"
SUPPORTED_VERSIONS = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)


class KnownProtocolVersion:
    """Refuse an ``MCP-Protocol-Version`` this server does not speak with the versions it does speak
    (the SDK's answer to an unknown version complains about a missing ``_meta`` envelope)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        requested = next(
            (v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"mcp-protocol-version"), None
        )
        if requested is None or requested in SUPPORTED_VERSIONS:
            return await self.app(scope, receive, send)
        body = {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": UNSUPPORTED_PROTOCOL_VERSION,
                "message": f"Unsupported protocol version {requested[:40]!r}: this server supports "
                f"{', '.join(SUPPORTED_VERSIONS)} (MCP-Protocol-Version header)",
                "data": {"supported": list(SUPPORTED_VERSIONS), "requested": requested[:40]},
            },
        }
        await Response(json.dumps(body), status_code=400, media_type="application/json")(scope, receive, send)


def _warn_about_rate_limits_per_worker(settings: Settings) -> None:
    if server_pid() is not None and not settings.redis_url:
        log.warning(
            "POGGIO_RATE_LIMIT (%s per token) is counted per worker: this server runs several worker "
            "processes without POGGIO_REDIS_URL, so a token may make that many requests in each of "
            "them. Set POGGIO_REDIS_URL to share the counters, or run one worker per process.",
            settings.rate_limit,
        )


def _lifespan(settings: Settings, recorder: UsageRecorder, metrics: Metrics, gate: Gate, watcher, managers):
    """Start-up and shutdown of the server's workers: the usage recorder, the webhook deliverer, the SDK's
    session managers (``managers``), the SQLite connection held by the event loop's thread."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        recorder.start()
        deliverer = Deliverer.from_settings(settings).start()
        # What start-up built (modules, schemas, compiled validators) lives as long as the process:
        # frozen out of the collector's way, a full collection no longer walks it, a pause that the
        # requests waiting behind it added to their time (benchmarks/README.md has the figures)
        gc.collect()
        gc.freeze()
        # SQLite work runs on the event loop's thread (tools, token checks): it keeps one pooled
        # connection for the life of the server instead of taking and returning one per use
        held = database.connection_context() if isinstance(database.obj, SqliteDatabase) else None
        if held is not None:
            held.__enter__()
        try:
            async with contextlib.AsyncExitStack() as stack:
                for manager in managers:
                    await stack.enter_async_context(manager.run())
                yield
        finally:
            if held is not None:
                held.__exit__(None, None, None)
            await anyio.to_thread.run_sync(deliverer.close)
            await anyio.to_thread.run_sync(recorder.close)
            metrics.close()
            if gate.tracing is not None:
                gate.tracing.close()
            if watcher is not None:
                watcher.close()
            log.info("usage flushed on shutdown")

    return lifespan


def create_app(settings: Settings | None = None, registry: PackRegistry | None = None, tracer_provider=None):
    """``tracer_provider``: an OpenTelemetry ``TracerProvider`` for the request spans (else one
    made from the ``OTEL_*`` environment variables, if they configure an exporter: off otherwise)."""
    settings = settings or load_settings()
    redaction.configure_logging()
    services = Services(settings, registry)  # the composition root the portal and the command build too
    registry = services.registry
    # a statement outlives its tool call's timeout by STATEMENT_GRACE at most (PostgreSQL; SQLite per call)
    bind(settings.database_url, statement_timeout=settings.tool_timeout_seconds + STATEMENT_GRACE)
    limiter = anyio.CapacityLimiter(16)  # worker threads for database work: bounded, like the pool
    oauth = services.oauth
    recorder = UsageRecorder(
        settings.usage_flush_seconds,
        retention_days=settings.activity_retention_days,
        chores=[("OAuth codes, tokens and apps no longer of use", oauth.prune)],
    )
    metrics = Metrics([t.name for t in registry.tools()], multiprocess_dir(settings.instance_path))
    _warn_about_rate_limits_per_worker(settings)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=settings.mcp_allowed_hosts,
        allowed_origins=settings.mcp_allowed_origins,
    )
    resource = normalise_resource(settings.mcp_public_url)
    watcher = CommitWatcher.of(database.obj)
    rate_limit = TokenRateLimit(settings.rate_limit, settings.redis_url, namespace=_installation(settings))
    backend = TokenAuthBackend(
        services.tokens,
        limiter,
        rate_limit,
        inline=isinstance(database.obj, SqliteDatabase),
        oauth=oauth,
        resource=resource,
        recorder=recorder,
        label=label_of(registry),
        watcher=watcher,
    )
    metadata_paths = protected_resource_paths(settings.mcp_public_url)
    resource_metadata = f"{_origin(settings.mcp_public_url)}{metadata_paths[-1]}"
    write_limit = WriteLimit(
        TokenRateLimit(settings.write_rate_limit, settings.redis_url, namespace=_installation(settings)),
        {t.name for t in registry.tools() if not t.read_only},
    )
    gate = Gate(  # what every MCP request passes once, whichever path answers it
        registry,
        metrics,
        CursorCodec(settings.secret_key.encode()),
        backend=backend,
        write_limit=write_limit,
        resource_metadata=resource_metadata,
        max_body=settings.max_body_bytes,
        tracing=Tracing.configured(tracer_provider),
    )
    tools: dict = {}
    server = build_server(settings, registry, recorder, metrics, limiter, tools, gate)
    sessions = StreamableHTTPSessionManager(
        app=lowlevel_server(server),  # the documented way to mount MCPServer in an app of our own
        stateless=True,  # any replica answers any request: no session state to share
        json_response=True,
        security_settings=security,
        max_request_body_size=settings.max_body_bytes,
    )
    # the calls that report progress or log are answered as an event stream, by a twin of the above
    # (stateless too: the stream is the request's own response); see mcp_server/prompting.py
    streams = StreamableHTTPSessionManager(
        app=lowlevel_server(server),
        stateless=True,
        json_response=False,
        security_settings=security,
        max_request_body_size=settings.max_body_bytes,
    )

    def counted_error(conn, exc):
        metrics.auth_failures.labels(exc.reason if isinstance(exc, Rejected) else "invalid").inc()
        return auth_error(conn, exc, resource_metadata)

    mcp_app: ASGIApp = RecordUnreadable(
        StreamRouter(
            StreamableHTTPASGIApp(sessions), StreamableHTTPASGIApp(streams), registry, settings.max_body_bytes
        ),
        principal_of,
    )
    lean = None
    if settings.mcp_lean_path:  # the hot requests without the SDK's per-request machinery (same answers)
        mcp_app = lean = LeanPath(mcp_app, server, security, settings.max_body_bytes, metrics, tools, gate)
    endpoint = KnownProtocolVersion(protect(GateMiddleware(mcp_app, gate), backend, on_error=counted_error))

    healthz, readyz = healthz_and_readyz(limiter, rate_limit)
    app: ASGIApp = Starlette(
        routes=[
            # no GET: a stateless server has no stream to offer, so an idle one is not held open
            # (405, as the transport specification allows); CORS for the origins the Origin check accepts
            cors_route(MCP_PATH, endpoint, settings.mcp_allowed_origins, methods=["POST", "DELETE"]),
            *(public_route(path, protected_resource(settings, registry)) for path in metadata_paths),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint(settings, metrics, recorder), methods=["GET"]),
        ],
        lifespan=_lifespan(settings, recorder, metrics, gate, watcher, (sessions, streams)),
    )
    if lean is not None:  # the hot POSTs answered before the Starlette stack (same answers)
        app = Front(app, lean, gate, MCP_PATH, SUPPORTED_VERSIONS)
    # the client's address as POGGIO_TRUSTED_PROXIES says, whatever server runs this app
    leave_forwarded_headers_to_the_app()
    return TrustedProxies(app, settings.trusted_proxies)
