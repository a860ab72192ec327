"""A served stack for MCP end-to-end tests: an instance on SQLite or PostgreSQL with the demo
workspace ``acme`` and a second entitled workspace ``globex`` (that also has an ``example.com``),
tokens made by the test module, and a real MCP server process."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from helpers import Mcp
from instances import ServerProcess, drop_instance, make_instance

from poggio.commands import demo
from poggio.commands.csv_import import import_csv
from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import create_workspace
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade

GLOBEX_ACCOUNTS = """domain,name,industry,employees,country,description
example.com,Globex Example Division,Aerospace,77,DE,Globex's own example.com: must never show to Acme
zorblax.example,Zorblax Secret Holdings,Mining,5,NO,Only Globex knows Zorblax
"""
GLOBEX_CONTACTS = """email,first_name,last_name,title,account_domain
quentin.zorblax@zorblax.example,Quentin,Zorblax,Chief Secret Officer,zorblax.example
hidden.person@example.com,Hidden,Globexperson,Spy,example.com
"""
GLOBEX_OPPS = """account_domain,name,stage,amount,currency,close_date
zorblax.example,Zorblax Mega Deal,negotiation,987654.32,NOK,2026-03-01
example.com,Globex Example Renewal,won,111111.11,EUR,2026-02-01
"""


class Stack:
    def __init__(self, instance, server, tokens, registry):
        self.instance, self.server, self.tokens, self.registry = instance, server, tokens, registry
        self.url = server.mcp_url

    def mcp(self, key: str, mode: str = "auto") -> Mcp:
        return Mcp(self.url, self.tokens[key], mode)


def acme_and_globex(
    tmp, backend: str, make_tokens: Callable, accounts: int, seed: int, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """For a module fixture: build the stack, yield it, stop and drop it. ``make_tokens(service, cli,
    acme, globex)`` returns the module's tokens by name."""
    inst = make_instance(tmp, backend)
    db = inst.activate()
    registry = PackRegistry.load()
    service = TokenService(known_packs=set(registry.names))
    cli = Actor.cli()
    with db.connection_context():
        upgrade(registry)
        acme = demo.build(registry, "acme", accounts=accounts, seed=seed).workspace
        globex = create_workspace("globex", "Globex", True, cli)
        for kind, text in (
            ("accounts", GLOBEX_ACCOUNTS),
            ("contacts", GLOBEX_CONTACTS),
            ("opportunities", GLOBEX_OPPS),
        ):
            report = import_csv(registry, globex, kind, text.encode(), cli)
            assert not report.errors, report.errors
        tokens = make_tokens(service, cli, acme, globex)
    server = ServerProcess(inst, extra_env=extra_env)
    yield Stack(inst, server, tokens, registry)
    server.stop()
    drop_instance(inst)
