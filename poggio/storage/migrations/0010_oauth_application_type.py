"""An OAuth client's ``application_type`` (``web`` or ``native``, RFC 7591 and the MCP authorization
spec): a native app may redirect to a loopback listener or a private-use scheme, a web client to
https only. Clients registered before it are left without one (null): their redirect URIs say which."""

from peewee import CharField


def up(migrator, db):
    migrator.migrate(migrator.add_column("oauth_client", "application_type", CharField(max_length=16, null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("oauth_client", "application_type"))
