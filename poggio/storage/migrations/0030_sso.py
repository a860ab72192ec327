"""Single sign-on: each workspace's OpenID Connect provider, and who signed in through it (a frozen
copy of poggio.identity.sso.SsoProvider and SsoIdentity)."""

from peewee import *


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Workspace(Base):
        class Meta:
            table_name = "workspace"

    class User(Base):
        class Meta:
            table_name = "user"

    class SsoProvider(Base):
        workspace = ForeignKeyField(Workspace, unique=True, on_delete="CASCADE")
        issuer = CharField(max_length=500)
        client_id = CharField(max_length=500)
        client_secret_env = CharField(max_length=100, null=True)
        client_secret_sealed = TextField(null=True)
        scopes = CharField(max_length=500, default="openid email profile")
        domains = TextField(default="")
        role_claim = CharField(max_length=100, default="groups")
        admin_group = CharField(max_length=200, null=True)
        member_group = CharField(max_length=200, null=True)
        require_sso = BooleanField(default=False)
        trust_id_jag = BooleanField(default=False)
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            table_name = "sso_provider"

    class SsoIdentity(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        user = ForeignKeyField(User, on_delete="CASCADE")
        subject = CharField(max_length=255)
        created_at = DateTimeField()
        last_signed_in_at = DateTimeField()

        class Meta:
            table_name = "sso_identity"
            indexes = ((("workspace", "subject"), True), (("workspace", "user"), True))

    db.create_tables([SsoProvider, SsoIdentity])


def down(migrator, db):
    for table in ("sso_identity", "sso_provider"):
        migrator.database.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
