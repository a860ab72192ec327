"""Every hook of the pack API, exercised through third-party packs installed like any other
(``test_hook_<name>``), and the meta-tests that keep it so: each hookspec, the core's and those packs
own, has a test here, a docstring the hooks reference is rendered from, and a link from the pack
author's guide in docs/ (as datasette checks its own)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import install_pack
from instances import ROOT

from poggio.commands.cli import main
from poggio.runtime.plugins import PackRegistry
from poggio.testing import tool_context, workspace

NOTES = """
import datetime as dt
from pathlib import Path
from peewee import CharField, ForeignKeyField, TextField
from poggio import CsvKind, PackInfo, WorkspaceModel, hookimpl, utcnow, writing
from poggio_accounts import Account, ProfileSection, normalise_domain

class Note(WorkspaceModel):
    account = ForeignKeyField(Account, on_delete="CASCADE", backref="+")
    text = TextField()

    class Meta:
        table_name = "notes_note"

@hookimpl
def poggio_pack():
    return PackInfo(name="notes", title="Notes", version="0.3", requires=("accounts",),
                    description="Notes on accounts.", instructions="Notes show in get_account.")

@hookimpl
def poggio_migrations():
    return Path(__file__).parent / "notes_migrations"

@hookimpl
def poggio_account_profile(ctx, account):
    notes = [n.text for n in Note.select().where((Note.workspace == ctx.workspace_id) & (Note.account == account.id))]
    return ProfileSection(key="notes", title="Notes", data={"notes": notes}, text="\\n".join(notes) or "No notes.")

def validate(workspace_id, rows):
    accounts = dict(Account.select(Account.domain, Account.id).where(Account.workspace == workspace_id).tuples())
    cleaned, errors = [], []
    for line, row in rows:
        domain = normalise_domain(row["account_domain"])
        if domain not in accounts:
            errors.append((line, "account_domain", f"no account {domain}"))
        else:
            cleaned.append({"account": accounts[domain], "text": row["text"]})
    return cleaned, errors

def write(workspace_id, cleaned):
    Note.insert_many([{**c, "workspace": workspace_id} for c in cleaned]).execute()
    return len(cleaned)

@hookimpl
def poggio_csv_importers():
    return [CsvKind(kind="notes", columns=("account_domain", "text"), validate=validate, write=write)]

@hookimpl
def poggio_seed_demo(workspace_id, rng, accounts, progress):
    if Note.select().where(Note.workspace == workspace_id).exists():
        return False
    account = Account.get((Account.workspace == workspace_id) & (Account.domain == "example.com"))
    with writing():
        Note.create(workspace=workspace_id, account=account, text="Met at the trade fair.")
    progress(1, 1)
    return True
"""

NOTES_MIGRATION = """
from peewee import *

def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False
    class Workspace(Base):
        pass
    class Account(Base):
        pass
    class Note(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        account = ForeignKeyField(Account, on_delete="CASCADE")
        text = TextField()
        class Meta:
            table_name = "notes_note"
    db.create_tables([Note])

def down(migrator, db):
    db.execute_sql("DROP TABLE notes_note")
"""

# raises in every hook it implements after declaring itself
GREMLIN = """
from poggio import CsvKind, PackInfo, hookimpl

@hookimpl
def poggio_pack():
    return PackInfo(name="gremlin", title="Gremlin", version="0.1", requires=("accounts",))

@hookimpl
def poggio_account_profile(ctx, account):
    raise RuntimeError("gremlin profile")

@hookimpl
def poggio_seed_demo(workspace_id, rng, accounts, progress):
    raise RuntimeError("gremlin seed")

def validate(workspace_id, rows):
    raise RuntimeError("gremlin validate")

@hookimpl
def poggio_csv_importers():
    return [CsvKind(kind="gremlins", columns=("name",), validate=validate, write=lambda w, rows: 0)]
"""

# implements the accounts pack's hook without requiring the pack: loads only while accounts does,
# unless the implementation is optional
LOOSE = """
from poggio import PackInfo, hookimpl

@hookimpl
def poggio_pack():
    return PackInfo(name="{name}", title="Loose", version="0.1")

@hookimpl{marker}
def poggio_account_profile(ctx, account):
    return None
"""

MISNAMED = """
from poggio import PackInfo, hookimpl

@hookimpl
def poggio_pack():
    return PackInfo(name="somebody_else", title="Misnamed", version="0.1")
"""

TOOLS = '''
from pydantic import BaseModel
from poggio import PackInfo, ToolResult, hookimpl, tool

class Echo(BaseModel):
    said: str

@tool(title="Echo", read_only=False)
def echo(ctx, text: str) -> Echo:
    """Says it back."""
    return ToolResult(Echo(said=text), text)

@hookimpl
def poggio_pack():
    return PackInfo(name="echo", title="Echo", version="2.0")

@hookimpl
def poggio_tools():
    return [echo, "not a tool"]
'''

# links notes to the people of an outside CRM: the accounts pack's poggio_note_link, without the contacts pack
LINKER = """
from poggio import PackInfo, ToolError, hookimpl

@hookimpl
def poggio_pack():
    return PackInfo(name="linker", title="Linker", version="0.1", requires=("accounts",))

@hookimpl
def poggio_note_link(ctx, account, argument, value):
    if argument != "contact_email":
        return None
    if value != f"pat@{account.domain}":
        raise ToolError("contact_email", f"the CRM knows nobody {value!r} at {account.domain}")
    return "Pat (from the CRM)"
"""

PACK_MODULES = (
    "poggio_notes",
    "poggio_gremlin",
    "poggio_loose",
    "poggio_optional",
    "poggio_misnamed",
    "poggio_echo",
    "poggio_linker",
)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """Third-party packs installed (a dist-info with entry points) in a folder on sys.path."""
    site = install_pack(
        tmp_path / "site",
        "poggio-extras",
        "0.3",
        {
            "poggio_notes": NOTES,
            "poggio_gremlin": GREMLIN,
            "poggio_misnamed": MISNAMED,
            "poggio_loose": LOOSE.format(name="loose", marker=""),
            "poggio_optional": LOOSE.format(name="optional", marker="(optionalhook=True)"),
            "poggio_linker": LINKER,
        },
        {
            "notes": "poggio_notes",
            "gremlin": "poggio_gremlin",
            "loose": "poggio_loose",
            "optional": "poggio_optional",
            "misnamed": "poggio_misnamed",
            "linker": "poggio_linker",
        },
    )
    (site / "notes_migrations").mkdir()
    (site / "notes_migrations" / "0001_notes.py").write_text(NOTES_MIGRATION)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    for name in PACK_MODULES:
        sys.modules.pop(name, None)


@pytest.fixture
def run(site, instance):
    """The ``poggio`` command in-process, on a fresh SQLite instance, with the packs of ``site``."""
    runner = CliRunner()

    def invoke(*args, env=None):
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


def test_hook_poggio_pack(site):
    registry = PackRegistry.load()
    assert registry.packs["notes"].info.version == "0.3"
    assert registry.packs["notes"].distribution == "poggio-extras 0.3"
    assert "declares name 'somebody_else' but is registered as 'misnamed'" in registry.errors["misnamed"]
    # the pack's instructions reach the MCP server's
    assert "- Notes: Notes on accounts. Notes show in get_account." in registry.instructions("Poggio")
    # a pack loads after those it requires, and is left out without them
    assert list(registry.packs).index("notes") > list(registry.packs).index("accounts")
    without = PackRegistry.load(["notes", "contacts"])
    assert without.names == [] and "requires pack 'accounts'" in without.errors["notes"]


def test_hook_poggio_tools(tmp_path, monkeypatch):
    site = install_pack(tmp_path / "site", "poggio-echo", "2.0", {"poggio_echo": TOOLS}, {"echo": "poggio_echo"})
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    try:
        registry = PackRegistry.load()
        assert (
            "'not a tool'" in registry.errors["echo"]
            and "not a function decorated with @poggio.tool" in registry.errors["echo"]
        )
        module = importlib.import_module("poggio_echo")
        monkeypatch.setattr(module, "poggio_tools", module.hookimpl(lambda: [module.echo]))
        registry = PackRegistry.from_modules({"echo": module})
        spec = registry.tool("echo")
        assert spec.pack == "echo" and not spec.read_only and spec.description == "Says it back."
        with workspace(tmp_path / "db") as (_, workspace_id):  # a write tool: it runs in a write transaction
            assert spec(tool_context(workspace_id), text="hi").data.said == "hi"
    finally:
        sys.modules.pop("poggio_echo", None)


GREETER = """
from typing import Annotated
from pydantic import Field
from poggio import Message, PackInfo, Resource, hookimpl, prompt

NAMES = ["ada", "adele", "bob"]


def complete_name(ctx, value, arguments):
    return [n for n in NAMES if n.startswith(value)] + ["not a match"]


@prompt(title="Greet", complete={"name": complete_name})
def greet(ctx, name: Annotated[str, Field(description="Whom to greet.")], mood: str = "glad"):
    \"\"\"Greets someone.\"\"\"
    return [
        Message(Resource(f"greeter://{name}", "text/plain", text=f"workspace {ctx.workspace_id}")),
        Message(f"Greet {name}, {mood}.", role="assistant"),
    ]


@hookimpl
def poggio_pack():
    return PackInfo(name="greeter", title="Greeter", version="1.0")


@hookimpl
def poggio_prompts():
    return [greet, "not a prompt"]
"""


def test_hook_poggio_prompts(tmp_path, monkeypatch):
    from poggio.runtime.prompts import PromptArgumentError, completions

    site = install_pack(
        tmp_path / "site", "poggio-greeter", "1.0", {"poggio_greeter": GREETER}, {"greeter": "poggio_greeter"}
    )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    try:
        registry = PackRegistry.load()
        assert "not a function decorated with @poggio.prompt" in registry.errors["greeter"]
        module = importlib.import_module("poggio_greeter")
        monkeypatch.setattr(module, "poggio_prompts", module.hookimpl(lambda: [module.greet]))
        registry = PackRegistry.from_modules({"greeter": module})
        spec = registry.prompt("greet")
        assert spec.pack == "greeter" and registry.prompts(frozenset({"accounts"})) == []
        assert spec.arguments() == [
            {"name": "name", "description": "Whom to greet.", "required": True},
            {"name": "mood", "description": None, "required": False},
        ]
        ctx = tool_context(7)
        first, second = spec.render(ctx, {"name": "ada"})
        assert first.content.text == "workspace 7" and (second.role, second.content) == (
            "assistant",
            "Greet ada, glad.",
        )
        with pytest.raises(PromptArgumentError, match="argument 'name' is required"):
            spec.render(ctx, {})
        with pytest.raises(PromptArgumentError, match="unknown argument 'nmae'"):
            spec.render(ctx, {"name": "ada", "nmae": "x"})
        # completion keeps the values that start with what was typed, and says how many
        assert completions(spec.complete["name"], ctx, "ad", {}) == {
            "values": ["ada", "adele"],
            "hasMore": False,
            "total": 2,
        }
    finally:
        sys.modules.pop("poggio_greeter", None)


def test_hook_poggio_migrations(run):
    from poggio.storage.db import database

    assert run("db", "upgrade").exit_code == 0
    assert "notes_note" in database.get_tables() and "poggio_migration_notes" in database.get_tables()
    assert "up to date" in run("db", "upgrade").output


def test_hook_poggio_seed_demo(run):
    """Each pack seeds its own data, the one that raises is reported and skipped, the rest still seed;
    a second run leaves the workspace as it is."""
    from poggio.storage.db import database
    from poggio_accounts import Account

    first = run("demo", "--accounts", "20")
    assert first.exit_code == 0, first.output
    assert "Tool pack gremlin failed to add demo data and was skipped: RuntimeError: gremlin seed" in first.stderr
    assert Account.select().count() == 20
    assert database.execute_sql("SELECT text FROM notes_note").fetchall() == [("Met at the trade fair.",)]
    again = run("demo", "--accounts", "20")
    assert "already has data" in again.output and Account.select().count() == 20


def test_hook_poggio_csv_importers(run, tmp_path):
    """`poggio import` takes a third-party pack's kind; a pack whose importer raises is reported in one
    line, writes nothing, and the other kinds import as before."""
    from poggio.storage.db import database

    assert run("workspace", "create", "acme", "--name", "Acme").exit_code == 0
    accounts = tmp_path / "accounts.csv"
    accounts.write_text("domain,name,industry,employees,country,description\nexample.com,Example,,,,\n")
    assert run("import", "accounts", str(accounts), "--workspace", "acme").exit_code == 0
    notes = tmp_path / "notes.csv"
    notes.write_text("account_domain,text\nexample.com,Likes golf\nnowhere.example,Lost\n")
    bad = run("import", "notes", str(notes), "--workspace", "acme")
    assert bad.exit_code == 1 and "notes.csv:3: account_domain: no account nowhere.example" in bad.stderr
    notes.write_text("account_domain,text\nexample.com,Likes golf\n")
    good = run("import", "notes", str(notes), "--workspace", "acme")
    assert good.exit_code == 0 and "Imported 1 notes" in good.output
    assert database.execute_sql("SELECT text FROM notes_note").fetchall() == [("Likes golf",)]
    gremlins = tmp_path / "gremlins.csv"
    gremlins.write_text("name\nGizmo\n")
    failed = run("import", "gremlins", str(gremlins), "--workspace", "acme")
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    assert (
        "the gremlin pack failed while importing gremlins (RuntimeError: gremlin validate); nothing was imported"
    ) in failed.output
    unknown = run("import", "widgets", str(gremlins), "--workspace", "acme")
    assert unknown.exit_code == 1
    assert (
        "unknown kind 'widgets'; the loaded packs import accounts, contacts, gremlins, notes, opportunities"
    ) in unknown.output
    listing = run("packs", "list").output
    assert "poggio import notes" in listing and "poggio import accounts" in listing


def test_hook_poggio_account_profile(run, site):
    """A third-party pack adds its section to get_account; one that raises is left out of that answer
    and the others still answer; a pack implementing the accounts pack's hook loads only with it,
    unless its implementation is optional."""
    from poggio_accounts import Account

    assert run("demo", "--accounts", "5").exit_code == 0
    registry = PackRegistry.load()
    ws = Account.get(Account.domain == "example.com").workspace_id
    ctx = tool_context(ws, "get_account", registry=registry)
    result = registry.tool("get_account")(ctx, domain="example.com")
    assert sorted(result.data.sections) == ["contacts", "notes", "revenue"]
    assert "## Notes\nMet at the trade fair." in result.text
    # only the packs in the token's scope are asked
    scoped = tool_context(ws, "get_account", packs=frozenset({"accounts", "notes"}), registry=registry)
    assert list(registry.tool("get_account")(scoped, domain="example.com").data.sections) == ["notes"]
    assert "loose" in registry.names and "optional" in registry.names
    alone = PackRegistry.load(["loose", "optional"])
    assert "unknown hook(s) poggio_account_profile" in alone.errors["loose"]
    assert alone.names == ["optional"]


def test_hook_poggio_note_link(run, site):
    """add_note asks the packs in the caller's scope about what a note links to: the one that knows the
    argument names the record or refuses it (its ToolError reaches the caller); an argument no pack
    in scope knows is refused."""
    from poggio import ToolError
    from poggio_accounts import Account

    assert run("demo", "--accounts", "3").exit_code == 0
    registry = PackRegistry.load(["accounts", "linker"])
    ws = Account.get(Account.domain == "example.com").workspace_id
    add_note = registry.tool("add_note")
    ctx = tool_context(ws, "add_note", registry=registry)
    note = add_note(ctx, domain="example.com", text="Called Pat.", contact_email="pat@example.com").data
    assert note.links == "Pat (from the CRM)"
    with pytest.raises(ToolError, match="the CRM knows nobody 'kim@example.com'"):
        add_note(ctx, domain="example.com", text="x", contact_email="kim@example.com")
    with pytest.raises(ToolError, match="opportunity_id: no tool pack in this token's scope knows it"):
        add_note(ctx, domain="example.com", text="x", opportunity_id=1)
    outside = tool_context(ws, "add_note", packs=frozenset({"accounts"}), registry=registry)
    with pytest.raises(ToolError, match="contact_email: no tool pack"):
        add_note(outside, domain="example.com", text="x", contact_email="pat@example.com")


def test_hooks_are_called_through_pluggy(site):
    """Hook calls go through pluggy (its tracing sees them), one pack at a time."""
    registry = PackRegistry.load()
    seen: list[tuple[str, list[str]]] = []
    registry.pm.add_hookcall_monitoring(
        lambda hook, impls, kwargs: seen.append((hook, [i.plugin_name for i in impls])), lambda *a: None
    )
    registry.call_each("poggio_migrations")
    assert {hook for hook, _ in seen} == {"poggio_migrations"}
    assert all(len(plugins) <= 1 for _, plugins in seen)
    assert sorted(p for _, plugins in seen for p in plugins) == ["accounts", "contacts", "notes", "revenue"]


SHELF = """
from poggio import PackInfo, ResourceEntry, ResourceNotFound, app_view, hookimpl, resource

BOOKS = {1: {"w": "Dune"}, 2: {"w": "Emma"}}

@resource("shelf://about", name="about", mime_type="text/plain")
def about(ctx):
    \"\"\"What the shelf is.\"\"\"
    return f"A shelf of workspace {ctx.workspace_id}"

@resource("shelf://books/{book_id}", name="book", title="A book")
def book(ctx, book_id):
    \"\"\"One book.\"\"\"
    if not book_id.isdigit() or int(book_id) not in BOOKS:
        raise ResourceNotFound(f"no book {book_id}")
    return BOOKS[int(book_id)]

@book.list
def books(ctx, cursor, limit):
    return [ResourceEntry(uri=f"shelf://books/{i}", name=b["w"]) for i, b in BOOKS.items()], None

view = app_view("ui://shelf/view.html", "<p>shelf</p>", name="view")

@hookimpl
def poggio_pack():
    return PackInfo(name="shelf", title="Shelf", version="1.0")

@hookimpl
def poggio_resources():
    return [about, book, view]
"""
CLASH = """
from poggio import PackInfo, hookimpl, resource

@resource("poggio://revenue/summary", name="mine")
def mine(ctx):
    return "mine"

@hookimpl
def poggio_pack():
    return PackInfo(name="clash", title="Clash", version="1.0")

@hookimpl
def poggio_resources():
    return [mine, "not a resource"]
"""


def test_hook_poggio_resources(tmp_path, monkeypatch):
    """A third party's resources: static, a template with its lister, an app view; served as the
    registry resolves them; a pack returning something else, or a URI another pack serves, is left out."""
    site = install_pack(
        tmp_path / "site",
        "poggio-shelf",
        "1.0",
        {"poggio_shelf": SHELF, "poggio_clash": CLASH},
        {"shelf": "poggio_shelf", "clash": "poggio_clash"},
    )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    try:
        registry = PackRegistry.load()
        assert "not a function decorated with @poggio.resource" in registry.errors["clash"]
        assert {r.uri for r in registry.resources(frozenset({"shelf"}))} == {
            "shelf://about",
            "shelf://books/{book_id}",
            "ui://shelf/view.html",
        }
        spec, values = registry.resolve("shelf://books/2")
        assert spec.pack == "shelf" and values == {"book_id": "2"} and spec.title == "A book"
        ctx = tool_context(7)
        (content,) = spec.read(ctx, "shelf://books/2", values)
        assert content.mime_type == "application/json" and content.text == '{"w": "Emma"}'
        with pytest.raises(Exception, match="no book 9"):
            spec.read(ctx, "shelf://books/9", {"book_id": "9"})
        entries, cursor = spec.lister(ctx, None, 100)
        assert [e.uri for e in entries] == ["shelf://books/1", "shelf://books/2"] and cursor is None
        about, _ = registry.resolve("shelf://about")
        assert about.read(ctx, "shelf://about", {})[0].text == "A shelf of workspace 7"
        view, _ = registry.resolve("ui://shelf/view.html")
        (html,) = view.read(ctx, "ui://shelf/view.html", {})
        assert html.mime_type == "text/html;profile=mcp-app" and html.meta["ui"]["csp"]["connectDomains"] == []
        assert registry.resolve("shelf://books/1/pages") is None and registry.resolve("shelf://nothing") is None
        # a URI another pack serves: the pack that loads later (in dependency, then name order) is left out
        module = importlib.import_module("poggio_clash")
        monkeypatch.setattr(module, "poggio_resources", module.hookimpl(lambda: [module.mine]))
        modules = {name: importlib.import_module(f"poggio_{name}") for name in ("accounts", "revenue")}
        clash = PackRegistry.from_modules({**modules, "clash": module})
        assert clash.resolve("poggio://revenue/summary")[0].pack == "clash"
        assert "already taken: poggio://revenue/summary" in clash.errors["revenue"]
    finally:
        sys.modules.pop("poggio_shelf", None)
        sys.modules.pop("poggio_clash", None)


def test_write_tools_say_which_resources_they_changed(tmp_path):
    """``ctx.changed(uri)``: what a write tool changed, gathered for the server (which cannot deliver
    it while stateless, see docs/pack-authors/resources.md)."""
    from poggio.runtime.packs import CursorCodec
    from poggio_accounts.tools import create_account, update_account

    with workspace(tmp_path / "db") as (registry, workspace_id):
        changes: list[str] = []
        ctx = registry.tool_context(CursorCodec(b"k" * 16), workspace_id, None, None, "create_account", changes=changes)
        create_account(ctx, domain="acme.example", name="Acme")
        update_account(ctx, domain="acme.example", name="Acme Inc")
        assert changes == ["poggio://accounts/acme.example"]
        quiet = tool_context(workspace_id, registry=registry)  # no one listening: nothing gathered
        update_account(quiet, domain="acme.example", name="Acme Ltd")
        assert quiet.changes is None


# -- the meta-tests ------------------------------------------------------------------------------------------
def _hookspecs() -> dict[str, list[str]]:
    """Every hookspec of the loaded packs and the core: name -> argument names."""
    registry = PackRegistry.load()
    return {
        name: list(caller.spec.argnames)
        for name, caller in vars(registry.pm.hook).items()
        if not name.startswith("_") and caller.has_spec()
    }


HOOKS = _hookspecs()


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hook_is_documented_in_the_guide(hook):
    """The hooks reference (docs/pack-authors/hooks.md) is rendered from each hookspec's docstring
    (tests/test_docs.py checks the built page); the pack author's guide links every hook to it."""
    registry = PackRegistry.load()
    assert (getattr(registry.pm.hook, hook).spec.function.__doc__ or "").strip(), f"{hook} has no docstring"
    guide = (ROOT / "docs" / "pack-authors" / "tools.md").read_text()
    assert f"(hooks.md#{hook})" in guide, f"docs/pack-authors/tools.md does not link {hook} to the reference"


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hook_has_a_test(hook):
    tests = "".join(p.read_text() for p in Path(__file__).parent.rglob("test_*.py"))
    assert f"def test_hook_{hook}(" in tests, f"no test_hook_{hook} exercises the {hook} hook"


def test_the_meta_tests_see_every_hook():
    assert set(HOOKS) == {
        "poggio_pack",
        "poggio_tools",
        "poggio_migrations",
        "poggio_seed_demo",
        "poggio_csv_importers",
        "poggio_account_profile",
        "poggio_note_link",
        "poggio_resources",
        "poggio_prompts",
    }


# a fourth pack that attaches notes to its own records (tickets), through the accounts pack's hook alone
TICKETS = """
from pathlib import Path
from peewee import CharField, ForeignKeyField
from poggio import PackInfo, ToolError, WorkspaceModel, hookimpl
from poggio_accounts import Account

class Ticket(WorkspaceModel):
    account = ForeignKeyField(Account, on_delete="CASCADE", backref="+")
    subject = CharField(max_length=200)

    class Meta:
        table_name = "tickets_ticket"

@hookimpl
def poggio_pack():
    return PackInfo(name="tickets", title="Tickets", version="0.1", requires=("accounts",))

@hookimpl
def poggio_migrations():
    return Path(__file__).parent / "tickets_migrations"

@hookimpl
def poggio_note_link(ctx, account, argument, value):
    if argument != "ticket_id":
        return None
    ticket = Ticket.get_or_none((Ticket.workspace == ctx.workspace_id) & (Ticket.id == value))
    if ticket is None or ticket.account_id != account.id:
        raise ToolError("ticket_id", f"no ticket {value} of {account.domain}")
    return f"ticket #{ticket.id}: {ticket.subject}"
"""

TICKETS_MIGRATION = """
from peewee import *

def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False
    class Workspace(Base):
        pass
    class Account(Base):
        pass
    class Ticket(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        account = ForeignKeyField(Account, on_delete="CASCADE")
        subject = CharField(max_length=200)
        class Meta:
            table_name = "tickets_ticket"
    db.create_tables([Ticket])

def down(migrator, db):
    db.execute_sql("DROP TABLE tickets_ticket")
"""


def test_a_fourth_pack_attaches_notes_to_its_own_records(tmp_path, monkeypatch, instance):
    """A pack the accounts pack has never heard of (tickets) links notes to its own records: add_note's
    ``about`` takes its link kind, the note keeps the link, get_account words it through the pack's
    ``poggio_note_link``, and a reader whose scope lacks the pack sees an opaque reference, no id."""
    from poggio import ToolError
    from poggio.storage.db import writing
    from poggio_accounts import Account
    from poggio_accounts.tools import OUT_OF_SCOPE

    site = install_pack(
        tmp_path / "site", "poggio-tickets", "0.1", {"poggio_tickets": TICKETS}, {"tickets": "poggio_tickets"}
    )
    (site / "tickets_migrations").mkdir()
    (site / "tickets_migrations" / "0001_tickets.py").write_text(TICKETS_MIGRATION)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    try:
        runner = CliRunner()
        assert runner.invoke(main, ["db", "upgrade"], catch_exceptions=False).exit_code == 0  # the tickets table
        assert runner.invoke(main, ["demo", "--accounts", "3"], catch_exceptions=False).exit_code == 0
        registry = PackRegistry.load(["accounts", "tickets"])
        from poggio_tickets import Ticket

        account = Account.get(Account.domain == "example.com")
        ws = account.workspace_id
        with writing():
            ticket = Ticket.create(workspace=ws, account=account.id, subject="Printer on fire")
        ctx = tool_context(ws, "add_note", registry=registry)
        note = registry.tool("add_note")(
            ctx, domain="example.com", text="Sent a technician.", about={"ticket_id": ticket.id}
        )
        assert note.data.links == f"ticket #{ticket.id}: Printer on fire"
        assert note.data.about == {"ticket_id": ticket.id} and note.data.contact_email is None
        with pytest.raises(ToolError, match=f"ticket_id: no ticket {ticket.id + 1} of example.com"):
            registry.tool("add_note")(ctx, domain="example.com", text="x", about={"ticket_id": ticket.id + 1})
        with pytest.raises(ToolError, match="widget_id: no tool pack in this token's scope knows it"):
            registry.tool("add_note")(ctx, domain="example.com", text="x", about={"widget_id": 3})

        reader = tool_context(ws, "get_account", registry=registry)
        shown = registry.tool("get_account")(reader, domain="example.com")
        mine = [n for n in shown.data.notes if n.text == "Sent a technician."]
        assert len(mine) == 1 and mine[0].about == {"ticket_id": ticket.id}
        assert f"(about ticket #{ticket.id}: Printer on fire): Sent a technician." in shown.text
        outside = tool_context(ws, "get_account", packs=frozenset({"accounts"}), registry=registry)
        hidden = [
            n for n in registry.tool("get_account")(outside, domain="example.com").data.notes if n.id == mine[0].id
        ]
        assert hidden[0].about == {"ticket_id": None} and hidden[0].links == OUT_OF_SCOPE
    finally:
        sys.modules.pop("poggio_tickets", None)
