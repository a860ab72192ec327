"""What a tool pack serves besides tools: resources, read by URI (``resources/read``), and resource
templates (``poggio://accounts/{domain}``), listed by ``resources/list`` and
``resources/templates/list``. Imported by packs (``from poggio import resource, ...``); imports no
web framework and no MCP SDK: the MCP server serves these.

A resource function takes the :class:`poggio.ToolContext` of the read (the caller's workspace and
pack scope) and the template's variables, and returns its content: ``str`` (text), ``bytes``
(a blob), a pydantic model, ``dict`` or ``list`` (JSON), a :class:`poggio.ToolResult` (both its
JSON data and its text, two renderings of one record), a :class:`poggio.Resource` (content of an
explicit MIME type), or a tuple of these (several renderings, in order; a ``str`` in it is
Markdown). A template value that names nothing in the caller's workspace raises
:class:`ResourceNotFound`: the caller gets the protocol's "resource not found" error, which says
nothing of other workspaces.
"""

from __future__ import annotations

import builtins
import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from pydantic import BaseModel

from poggio.runtime.packs import ToolContext
from poggio.runtime.prompts import Completer
from poggio.runtime.results import Resource, ToolResult

# the MCP Apps extension (io.modelcontextprotocol/ui): the MIME type of a ui:// app resource
APP_MIME_TYPE = "text/html;profile=mcp-app"

_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_QUERY = re.compile(r"\{\?([a-z_][a-z0-9_]*(?:,[a-z_][a-z0-9_]*)*)\}$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


class ResourceNotFound(Exception):
    """Raised by a resource function when its URI names nothing the caller can read (no account
    with that domain in the caller's workspace). The caller gets the protocol's resource-not-found
    error with this message: word it without anything of another workspace."""


@dataclass(frozen=True)
class ResourceEntry:
    """One concrete resource a template's lister offers to ``resources/list`` (an account's URI)."""

    uri: str
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None


@dataclass(frozen=True)
class Contents:
    """One item of a read's answer: ``text`` or ``blob``, of ``mime_type``."""

    mime_type: str
    text: str | None = None
    blob: bytes | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class ResourceSpec:
    """A resource or resource template as the registry keeps it (see :func:`resource`)."""

    uri: str  # a URI, or a URI template with {variable} segments and an optional {?a,b} query
    fn: Callable[..., Any]
    name: str
    title: str | None
    description: str
    mime_type: str
    meta: dict[str, Any] | None = None
    pack: str = ""
    thread: bool = False
    lister: Callable[..., Any] | None = field(default=None, compare=False)
    variables: tuple[str, ...] = ()
    query: tuple[str, ...] = ()
    pattern: re.Pattern | None = field(default=None, compare=False, repr=False)
    # a completer per template variable, answering completion/complete (as a prompt's arguments do)
    complete: Mapping[str, Completer] | None = field(default=None, compare=False, repr=False)

    @property
    def template(self) -> bool:
        return self.pattern is not None

    def with_pack(self, pack: str) -> ResourceSpec:
        return ResourceSpec(**{**self.__dict__, "pack": pack})

    def list(self, lister: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate the function that lists this template's resources in the caller's workspace for
        ``resources/list``: ``lister(ctx, cursor, limit) -> (entries, next_cursor)`` (a list of
        :class:`ResourceEntry`, and the cursor of the next page or ``None``; :func:`poggio.keyset_page`
        pages a query). Without one, a template's resources are not listed, only read."""
        object.__setattr__(self, "lister", lister)
        return lister

    def match(self, uri: str) -> dict[str, str] | None:
        """The template's variables in ``uri`` (``{"domain": "acme.com"}``), or None when it does not
        match. A static resource matches its own URI only."""
        if self.pattern is None:
            return {} if uri == self.uri else None
        base, _, query = uri.partition("?")
        found = self.pattern.fullmatch(base)
        if found is None:
            return None
        values = {k: unquote(v) for k, v in found.groupdict().items()}
        if query:
            if not self.query:
                return None
            params = parse_qs(query, keep_blank_values=True)
            if set(params) - set(self.query) or any(len(v) != 1 for v in params.values()):
                return None
            values.update({k: v[0] for k, v in params.items()})
        return values

    def expand(self, **values: str) -> str:
        """The URI of the template with ``values`` (a variable's value is percent-encoded)."""
        uri = _QUERY.sub("", self.uri)
        uri = _VARIABLE.sub(lambda m: quote(str(values[m.group(1)]), safe="@.-_~"), uri)
        query = [(k, values[k]) for k in self.query if values.get(k) not in (None, "")]
        return uri + ("?" + "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query) if query else "")

    def read(self, ctx: ToolContext, uri: str, values: dict[str, str]) -> builtins.list[Contents]:
        """Run the resource function and turn what it returns into the read's contents (each with
        the resource's ``meta``, where an app view's CSP travels)."""
        contents = as_contents(self.fn(ctx, **values), self.mime_type)
        if self.meta:
            contents = [c if c.meta is not None else replace(c, meta=self.meta) for c in contents]
        return contents


def as_contents(value: Any, mime_type: str) -> list[Contents]:
    if isinstance(value, tuple):  # several renderings of one resource, in order; text is Markdown
        return [c for item in value for c in as_contents(item, "text/markdown" if isinstance(item, str) else mime_type)]
    if isinstance(value, ToolResult):
        out = []
        if value.data is not None:
            out.append(Contents("application/json", text=value.data.model_dump_json(by_alias=True)))
        return [*out, Contents("text/markdown", text=value.text)]
    if isinstance(value, Resource):
        return [Contents(value.mime_type, text=value.text, blob=value.blob)]
    if isinstance(value, BaseModel):
        return [Contents("application/json", text=value.model_dump_json(by_alias=True))]
    if isinstance(value, (dict, list)):
        return [Contents("application/json", text=json.dumps(value, default=str, ensure_ascii=False))]
    if isinstance(value, (bytes, bytearray)):
        return [Contents(mime_type, blob=bytes(value))]
    if isinstance(value, str):
        return [Contents(mime_type, text=value)]
    raise TypeError(f"returned {type(value).__name__}: a resource returns str, bytes, JSON or a ToolResult")


def _compile(uri: str) -> tuple[re.Pattern | None, tuple[str, ...], tuple[str, ...]]:
    query_match = _QUERY.search(uri)
    query = tuple(query_match.group(1).split(",")) if query_match else ()
    base = _QUERY.sub("", uri)
    variables = tuple(_VARIABLE.findall(base))
    if not variables and not query:
        if "{" in uri or "}" in uri:
            raise ValueError(f"resource URI {uri!r}: a template variable is {{name}} (a-z, 0-9, _) or {{?a,b}}")
        return None, (), ()
    if len(set(variables + query)) != len(variables + query):
        raise ValueError(f"resource URI template {uri!r} names a variable twice")
    parts = _VARIABLE.split(base)
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/?#]+)" for i, p in enumerate(parts))
    if "{" in _VARIABLE.sub("", base) or "}" in _VARIABLE.sub("", base):
        raise ValueError(f"resource URI template {uri!r}: a template variable is {{name}} (a-z, 0-9, _) or {{?a,b}}")
    return re.compile(regex), variables, query


def resource(
    uri: str,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    mime_type: str = "application/json",
    meta: dict[str, Any] | None = None,
    thread: bool = False,
    complete: Mapping[str, Completer] | None = None,
) -> Callable[[Callable[..., Any]], ResourceSpec]:
    """Declare a resource (``uri``) or a resource template (``poggio://accounts/{domain}``, with an
    optional query part ``{?cursor}``). The function's first parameter is the read's
    :class:`poggio.ToolContext`; the others are the template's variables, by name (a query variable
    absent from the URI gets the parameter's default). ``name`` defaults to the function's name,
    ``description`` to its docstring; ``mime_type`` is what a text or bytes answer is served as; a
    ``ui://`` resource of :data:`APP_MIME_TYPE` is an MCP App view (``meta`` carries its ``ui`` CSP,
    see :func:`poggio.app_view`). ``thread=True``: the function may block (see :func:`poggio.tool`).
    ``complete={"domain": complete_domain}``: a :data:`poggio.Completer` per template variable, which
    answers ``completion/complete`` for this template from the caller's workspace (as a prompt's do)."""
    if not isinstance(uri, str) or not _URI.match(uri) or len(uri) > 1000:
        raise ValueError(f"resource URI {uri!r} must be scheme://... without spaces")
    pattern, variables, query = _compile(uri)
    unknown = sorted(set(complete or ()) - set(variables + query))
    if unknown:
        raise ValueError(f"resource {uri!r}: complete names {', '.join(unknown)}, not variables of the template")

    def decorate(fn: Callable[..., Any]) -> ResourceSpec:
        params = list(inspect.signature(fn).parameters.values())[1:]
        names = {p.name for p in params}
        missing = [v for v in variables + query if v not in names]
        if missing:
            raise TypeError(f"resource {uri!r}: {fn.__name__} has no parameter for {', '.join(missing)}")
        extra = [p.name for p in params if p.name not in variables + query and p.default is inspect.Parameter.empty]
        if extra:
            raise TypeError(f"resource {uri!r}: {fn.__name__}'s parameter(s) {', '.join(extra)} are not in the URI")
        for q in query:
            if next(p for p in params if p.name == q).default is inspect.Parameter.empty:
                raise TypeError(f"resource {uri!r}: the query variable {q} needs a default")
        return ResourceSpec(
            uri=uri,
            fn=fn,
            name=name or fn.__name__,
            title=title,
            description=inspect.cleandoc(description or fn.__doc__ or ""),
            mime_type=mime_type,
            meta=meta,
            thread=thread,
            variables=variables,
            query=query,
            pattern=pattern,
            complete=dict(complete) if complete else None,
        )

    return decorate


def app_view(
    uri: str,
    html: str,
    *,
    name: str,
    title: str | None = None,
    description: str = "",
    connect_domains: tuple[str, ...] = (),
    resource_domains: tuple[str, ...] = (),
) -> ResourceSpec:
    """An MCP App view (the ``io.modelcontextprotocol/ui`` extension): a ``ui://`` resource of
    :data:`APP_MIME_TYPE` serving ``html`` (self-contained: inline scripts and styles), with the
    extension's CSP metadata (``_meta.ui.csp``): no origin may be fetched or loaded unless named in
    ``connect_domains`` / ``resource_domains``. Attach it to a tool with
    ``@tool(..., app="ui://...")``; a pack returns it from ``poggio_resources`` like any resource."""
    if not uri.startswith("ui://"):
        raise ValueError(f"an app view's URI starts with ui://, not {uri!r}")
    csp = {"connectDomains": list(connect_domains), "resourceDomains": list(resource_domains)}

    def serve(ctx: ToolContext) -> Resource:
        return Resource(uri, APP_MIME_TYPE, text=html)

    serve.__name__ = name
    return resource(
        uri,
        name=name,
        title=title,
        description=description or f"The {title or name} view (MCP Apps).",
        mime_type=APP_MIME_TYPE,
        meta={"ui": {"csp": csp, "prefersBorder": True}},
    )(serve)
