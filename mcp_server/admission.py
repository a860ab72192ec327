"""What the gate (:mod:`mcp_server.gate`) checks of a tool call before any tool runs, and hands the tool
wrapper (:mod:`mcp_server.binding`): the call's arguments against the tool's signature, in plain words;
the answer to a tool the caller may not know of; the name a client goes by in the record; and the
admitted call's :class:`poggio.ToolContext`, without which the wrapper runs nothing."""

from __future__ import annotations

import contextvars
import inspect
from typing import Any

from pydantic import ConfigDict, ValidationError, create_model
from pydantic_core import ErrorDetails

from poggio.runtime.packs import ToolSpec

# Set by the gate (mcp_server.gate.Gate.admit_call) when it admits a tool call: the call's ToolContext.
# The tool wrapper runs nothing without it, so no path can run a tool the gate did not admit.
admitted: contextvars.ContextVar[Any] = contextvars.ContextVar("poggio_admitted", default=None)


def unknown_tool(name: str) -> str:
    """What the SDK answers a call of a tool it does not know (``ToolManager.call_tool``): also the
    answer to a tool switched off or outside the caller's narrowing, which must not tell them apart."""
    return f"Unknown tool: {name}"


def client_name(info: Any) -> str | None:
    """``clientInfo`` (of ``initialize`` or of a 2026-07-28 ``_meta``) as usage records name a client."""
    if isinstance(info, dict) and info.get("name"):
        return f"{info.get('name')} {info.get('version') or ''}".strip()[:200]
    return None


class Arguments:
    """A tool's arguments checked before the SDK sees them: unknown names refused (the SDK drops them
    silently, so a misspelt filter would return unfiltered data), and every problem in plain words
    that name the argument and the allowed values rather than pydantic's model names and URLs."""

    def __init__(self, spec: ToolSpec):
        self.tool = spec.name
        params = spec.parameters()
        self.names = [p.name for p in params]
        fields: dict[str, Any] = {
            p.name: (p.annotation, ... if p.default is inspect.Parameter.empty else p.default) for p in params
        }
        self.model = create_model(f"{spec.name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)

    def problem(self, arguments: Any) -> str | None:
        """None when the arguments are acceptable; else a message for the caller."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return f"The arguments of {self.tool} must be an object (name: value), not {type(arguments).__name__}."
        try:
            self.model.model_validate(arguments)
        except ValidationError as exc:
            parts = [self._describe(e) for e in exc.errors(include_url=False)]
            takes = ", ".join(self.names) or "no arguments"
            return f"Invalid arguments for {self.tool}: {'; '.join(parts)}. {self.tool} takes: {takes}."
        return None

    @staticmethod
    def _describe(error: ErrorDetails) -> str:
        name = ".".join(str(part) for part in error.get("loc", ())) or "arguments"
        if error["type"] == "extra_forbidden":
            return f"unknown argument '{name}'"
        if error["type"] == "missing":
            return f"'{name}' is required"
        shown = repr(error.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        message = error["msg"].replace("Input should be", "should be").replace("Value error, ", "")
        return (
            f"'{name}' {message} (got {shown})"
            if message.startswith("should")
            else f"'{name}': {message} (got {shown})"
        )
