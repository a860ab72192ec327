"""OpenTelemetry traces of MCP requests: one span per request, made by the gate, and a child span
for each tool's database work. Off unless the standard ``OTEL_*`` environment variables configure
an exporter (``OTEL_TRACES_EXPORTER``, or an ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``); off, the
gate holds no :class:`Tracing` and nothing of OpenTelemetry is imported or called on a request.

A client's trace goes on into Poggio: the W3C ``traceparent`` (and ``tracestate``) of the request's
``params._meta`` (how MCP carries it, on 2026-07-28 and before), else of the HTTP headers, is the
parent of the request's span. Attributes: the MCP method, the tool, the protocol version, the
JSON-RPC id, the workspace id, the outcome (``poggio.outcome``: ok, tool_error, refused,
rate_limited, timed_out) and the HTTP status. Never the token, the arguments or the answer.
See docs/operators/tracing.md.
"""

from __future__ import annotations

import os
from typing import Any

from mcp_server.binding import tool_tracer
from poggio import __version__

SPAN_NAME = "mcp {method}"
NOT_OK = frozenset({"tool_error", "refused", "rate_limited", "timed_out"})


def wanted(environ=os.environ) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces: an exporter other than ``none``, or an
    OTLP endpoint (the exporter then defaults to ``otlp``); never with ``OTEL_SDK_DISABLED=true``."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return any(e.strip() not in ("", "none") for e in exporters.split(","))
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def provider_from_environment(environ=os.environ):
    """A ``TracerProvider`` exporting as the ``OTEL_*`` variables say (OTLP over HTTP/protobuf, or
    ``console``); the exporters read their own variables (endpoint, headers, timeout)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "poggio-mcp"}))
    names = [e.strip() for e in environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")]
    for name in names:
        if name in ("", "none"):
            continue
        if name == "otlp":
            protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            if protocol != "http/protobuf":
                raise ValueError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: Poggio exports traces over OTLP/HTTP "
                    "(http/protobuf) only; point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port (4318)"
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: Poggio knows otlp, console and none")
    return provider


class Tracing:
    """The spans of one server (see the module)."""

    @classmethod
    def configured(cls, provider=None) -> Tracing | None:
        """Tracing with ``provider``, or with one made from the environment when it asks for traces;
        None (off) otherwise."""
        if provider is None:
            if not wanted():
                return None
            provider = provider_from_environment()
        return cls(provider)

    def __init__(self, provider):
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("poggio.mcp", __version__)
        self.propagator = TraceContextTextMapPropagator()
        self._context, self._trace, self._kind, self._status = context, trace, SpanKind, StatusCode

    def start(self, passage, scope, started: int) -> None:
        """Open the request's span (begun at ``started``, before its body was read) as the passage's,
        the child of the client's trace, and make it current."""
        message = passage.message if isinstance(passage.message, dict) else {}
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        carrier: dict[str, str] = {}
        for key, value in scope["headers"]:
            if key in (b"traceparent", b"tracestate") and key.decode() not in carrier:
                carrier[key.decode()] = value.decode("latin-1")
        meta = params.get("_meta")
        if isinstance(meta, dict) and isinstance(meta.get("traceparent"), str):
            carrier = {"traceparent": meta["traceparent"]}
            if isinstance(meta.get("tracestate"), str):
                carrier["tracestate"] = meta["tracestate"]
        parent = self.propagator.extract(carrier) if carrier else None
        method = message.get("method") if isinstance(message.get("method"), str) else None
        attributes: dict[str, Any] = {"mcp.method.name": (method or "unknown")[:100]}
        name = params.get("name")
        if method == "tools/call" and isinstance(name, str):
            attributes["gen_ai.tool.name"] = name[:100]
            attributes["gen_ai.operation.name"] = "execute_tool"
        for key, value in scope["headers"]:
            if key == b"mcp-protocol-version":
                attributes["mcp.protocol.version"] = value.decode("latin-1")[:40]
                break
        request_id = message.get("id")
        if type(request_id) in (int, str):
            attributes["jsonrpc.request.id"] = str(request_id)[:100]
        if passage.principal is not None:
            token = passage.principal.token
            attributes["poggio.workspace.id"] = token.workspace_id
            attributes["poggio.credential.kind"] = token.kind
        span = self.tracer.start_span(
            SPAN_NAME.format(method=method or "request")
            + (f" {attributes['gen_ai.tool.name']}" if "gen_ai.tool.name" in attributes else ""),
            context=parent,
            kind=self._kind.SERVER,
            attributes=attributes,
            start_time=started,
        )
        passage.span = (span, self._context.attach(self._trace.set_span_in_context(span)), [None, None])
        tool_tracer.set(self)

    def outcome(self, label: str, outcome: str) -> None:
        """The request's outcome, as the gate counts it."""
        span = self._trace.get_current_span()
        if span.is_recording():
            span.set_attribute("poggio.outcome", outcome)
            if outcome in NOT_OK:
                span.set_status(self._status.ERROR, outcome)

    def watch(self, passage, send):
        """``send``, noting the HTTP status of the answer on the request's span."""
        if passage.span is None:
            return send
        span = passage.span[0]

        async def watched(message):
            if message["type"] == "http.response.start":
                status = message["status"]
                span.set_attribute("http.response.status_code", status)
                if status >= 400:
                    span.set_status(self._status.ERROR, f"HTTP {status}")
                    if status in (401, 403):
                        span.set_attribute("poggio.outcome", "refused")
                    elif status == 429:
                        span.set_attribute("poggio.outcome", "rate_limited")
            await send(message)

        return watched

    async def unauthenticated(self, scope, app, receive, send) -> None:
        """``app`` answering a request whose credentials were refused (401, 403, 429 before any
        principal), inside a span of its own: the method from the ``Mcp-Method`` header (the body
        is not read), the outcome, the status."""
        carrier, method = {}, None
        for key, value in scope["headers"]:
            if key in (b"traceparent", b"tracestate") and key.decode() not in carrier:
                carrier[key.decode()] = value.decode("latin-1")
            elif key == b"mcp-method" and method is None:
                method = value.decode("latin-1")[:100]
        span = self.tracer.start_span(
            SPAN_NAME.format(method=method or "request"),
            context=self.propagator.extract(carrier) if carrier else None,
            kind=self._kind.SERVER,
            attributes={"mcp.method.name": method or "unknown", "poggio.outcome": "refused"},
        )

        class Refused:  # what watch() needs of a passage
            span: tuple[Any, None, None] | None = None

        passage = Refused()
        passage.span = (span, None, None)
        try:
            await app(scope, receive, self.watch(passage, send))
        finally:
            span.end()

    def end(self, passage) -> None:
        if passage.span is None:
            return
        span, token, _ = passage.span
        passage.span = None
        try:
            self._context.detach(token)
        except Exception:  # detached in another context (the client went away mid-answer)
            pass
        span.end()

    def traced(self, run, name: str, database: str):
        """``run`` (a tool's database work, on this thread or a worker thread) inside a child span of
        the current request's span."""
        parent = self._context.get_current()
        attributes = {"db.system.name": database, "gen_ai.tool.name": name}

        def traced_run(*args):
            with self.tracer.start_as_current_span(
                f"db {name}", context=parent, kind=self._kind.CLIENT, attributes=attributes, record_exception=False
            ):
                return run(*args)

        return traced_run

    def close(self) -> None:
        shutdown = getattr(self.provider, "shutdown", None)
        if shutdown is not None:
            shutdown()
