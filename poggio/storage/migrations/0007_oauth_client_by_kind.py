"""An index of OAuth clients by kind and age: each new registration deletes the registered apps no
one approved in ``POGGIO_OAUTH_UNUSED_CLIENT_DAYS`` (:meth:`poggio.identity.oauth.OAuthService.forget_unused_clients`),
a walk of that index from its oldest end rather than a read of the whole table."""


def up(migrator, db):
    migrator.migrate(migrator.add_index("oauth_client", ("kind", "created_at"), unique=False))


def down(migrator, db):
    migrator.migrate(migrator.drop_index("oauth_client", "oauth_client_kind_created_at"))
