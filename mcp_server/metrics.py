"""Prometheus metrics of one MCP server process, served at ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, tool_names: list[str]) -> None:
        self.registry = CollectorRegistry()
        self.known_labels = set(tool_names) | {
            "initialize", "ping", "tools/list", "server/discover", "tools/call:unknown",
        }
        self.requests = Counter("poggio_mcp_requests", "Authenticated MCP requests by method or tool and outcome",
                                ["method", "outcome"], registry=self.registry)
        self.auth_failures = Counter("poggio_mcp_auth_failures", "Requests refused before MCP handling",
                                     ["reason"], registry=self.registry)
        self.tool_seconds = Histogram("poggio_mcp_tool_seconds", "Time spent in tools", ["tool"],
                                      registry=self.registry,
                                      buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
        self.usage_pending = Gauge("poggio_usage_pending_calls", "Calls counted but not yet written",
                                   registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
