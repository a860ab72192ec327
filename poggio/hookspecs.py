"""The hooks of the core: what every Poggio tool pack may implement. Only :func:`poggio_pack` is
required.

A pack is a module registered under the ``poggio`` entry-point group; its hook implementations are
functions named like the hooks below and marked with ``@poggio.hookimpl``. A pack may own hooks of
its own (``PackInfo(hookspecs=...)``, e.g. the accounts pack's ``poggio_account_profile``). The
registry calls each pack's implementation through pluggy one pack at a time, so a pack that raises
is reported and left out while the others keep working. The documentation's hooks reference
(docs/pack-authors/hooks.md) is rendered from these docstrings; tests/test_hooks.py exercises each hook.
"""

from __future__ import annotations

from poggio import hookspec


@hookspec
def poggio_pack():
    """Declare the pack: return a :class:`poggio.PackInfo` (name, title, version, description, the
    packs it requires, instructions for the LLM, the hooks it owns).

    The name must match the entry point's name; it is what ``POGGIO_PACKS``, a token's pack
    restriction and OAuth scopes (``NAME:read``) refer to."""


@hookspec
def poggio_tools():
    """Return the pack's tools: a list of functions decorated with :func:`poggio.tool`.

    A tool's first parameter is the :class:`poggio.ToolContext` of the call (workspace, scope,
    cursors); the other parameters are the tool's arguments, whose type hints (``Annotated`` with a
    pydantic ``Field(description=...)``) become the input schema. The return annotation, a pydantic
    model, becomes the output schema; the tool returns a :class:`poggio.ToolResult` with that model
    and a readable text rendering, optionally followed by attachments (:class:`poggio.Image`,
    :class:`poggio.Audio`, :class:`poggio.Resource`). Tools run with a database connection open and a
    time limit: on SQLite on the MCP server's event loop, on PostgreSQL in a worker thread; a tool that
    may block otherwise (a network call, a long computation) declares ``@tool(..., thread=True)``. Every
    query must be scoped by ``ctx.workspace_id``."""


@hookspec
def poggio_migrations():
    """Return the directory of the pack's schema migrations (``playhouse.migrations`` scripts,
    ``0001_name.py``, ...). ``poggio db upgrade`` applies them after the core's and those of the packs
    this one requires, and records them in a history table of the pack's own."""


@hookspec
def poggio_seed_demo(workspace_id, rng, accounts, progress):
    """Add deterministic demo data to a workspace; return ``True`` when it added data, ``False`` when
    the workspace already had data of this pack (leave it as it is then).

    ``rng`` is a :class:`random.Random` seeded for this pack alone; ``accounts`` is the number of
    accounts the demo asks for (a size: packs add data in proportion); call ``progress(done, total)``
    now and then. Packs are seeded in dependency order. Use bulk inserts: ``accounts`` may be 1,000,000."""


@hookspec
def poggio_csv_importers():
    """Return the CSV kinds this pack imports: a list of :class:`poggio.CsvKind` (kind name,
    columns, a validator that checks every row and a writer that inserts the validated rows).
    ``poggio import KIND`` takes every kind the loaded packs register; it validates the whole file
    first and writes all rows or none."""


@hookspec
def poggio_resources():
    """Return the pack's resources and resource templates: a list of functions decorated with
    :func:`poggio.resource` (and :func:`poggio.app_view` views of tools).

    The MCP server serves them as ``resources/list``, ``resources/templates/list`` and
    ``resources/read``, to a caller whose token or grant may read the pack (like its tools). A resource
    function gets the read's :class:`poggio.ToolContext` (its workspace and pack scope) and the
    template's variables, and returns text, bytes, JSON (a model, dict or list) or a
    :class:`poggio.ToolResult` (JSON and text); it raises :class:`poggio.ResourceNotFound` for a value
    that names nothing in the caller's workspace. A template may list its resources for
    ``resources/list`` (``@spec.list``, paged with a cursor). URIs are unique across packs."""


@hookspec
def poggio_prompts():
    """Return the pack's prompts: a list of functions decorated with :func:`poggio.prompt`, served
    as MCP ``prompts/list`` and ``prompts/get`` to the tokens and connected apps whose pack scope
    includes this pack (to the others a prompt of this pack does not exist).

    A prompt's first parameter is the :class:`poggio.ToolContext` of the request (its workspace and
    pack scope); the others are its arguments (strings; ``Annotated`` with a pydantic
    ``Field(description=...)``; a default makes one optional). It returns the prompt's messages: a
    string, a :class:`poggio.Message` (text, :class:`poggio.Image`, :class:`poggio.Audio` or an
    embedded :class:`poggio.Resource`, from the user or the assistant) or a list of them. It runs in
    a worker thread with a database connection open; every query must be scoped by
    ``ctx.workspace_id``. ``@prompt(..., complete={"domain": complete_domain})`` names a
    :data:`poggio.Completer` per argument, which answers ``completion/complete`` from the
    workspace's own data."""
