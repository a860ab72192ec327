"""OAuth 2.1: clients, grants (connected apps), authorization codes, tokens and grant usage.

Frozen copies of the models as they were when this migration was written, as playhouse.migrations asks.
"""

from peewee import *


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Workspace(Base):  # referenced only
        pass

    class User(Base):  # referenced only
        pass

    class OAuthClient(Base):
        client_id = CharField(max_length=500, unique=True)
        kind = CharField(max_length=16)
        name = CharField(max_length=200)
        metadata = TextField(default="{}")
        secret_digest = CharField(max_length=64, null=True)
        secret_last_four = CharField(max_length=4, null=True)
        workspace = ForeignKeyField(Workspace, null=True, on_delete="CASCADE")
        packs = TextField(null=True)
        created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
        created_at = DateTimeField()
        metadata_expires_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)
        revoked_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

        class Meta:
            table_name = "oauth_client"

    class OAuthGrant(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        client = ForeignKeyField(OAuthClient, on_delete="CASCADE")
        user = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
        packs = TextField()
        resource = CharField(max_length=500)
        created_at = DateTimeField()
        expires_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)
        revoked_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
        revoked_reason = CharField(max_length=64, null=True)
        last_used_at = DateTimeField(null=True)
        last_used_ip = CharField(max_length=45, null=True)
        last_used_client = CharField(max_length=200, null=True)

        class Meta:
            table_name = "oauth_grant"
            indexes = ((("workspace", "created_at"), False),)

    class OAuthCode(Base):
        digest = CharField(max_length=64, unique=True)
        client = ForeignKeyField(OAuthClient, on_delete="CASCADE", backref="+")
        user = ForeignKeyField(User, on_delete="CASCADE", backref="+")
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
        packs = TextField()
        redirect_uri = TextField()
        resource = CharField(max_length=500)
        code_challenge = CharField(max_length=128)
        code_challenge_method = CharField(max_length=8)
        grant_expires_at = DateTimeField(null=True)
        created_at = DateTimeField()
        expires_at = DateTimeField()
        used_at = DateTimeField(null=True)
        grant = ForeignKeyField(OAuthGrant, null=True, on_delete="CASCADE", backref="+")

        class Meta:
            table_name = "oauth_code"

    class OAuthToken(Base):
        grant = ForeignKeyField(OAuthGrant, on_delete="CASCADE")
        access_digest = CharField(max_length=64, unique=True)
        refresh_digest = CharField(max_length=64, unique=True, null=True)
        created_at = DateTimeField()
        access_expires_at = DateTimeField()
        refreshed_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)

        class Meta:
            table_name = "oauth_token"

    class GrantUsage(Base):
        grant = ForeignKeyField(OAuthGrant, on_delete="CASCADE")
        day = DateField()
        tool = CharField(max_length=100)
        calls = IntegerField(default=0)
        errors = IntegerField(default=0)

        class Meta:
            indexes = ((("grant", "day", "tool"), True),)

    db.create_tables([OAuthClient, OAuthGrant, OAuthCode, OAuthToken, GrantUsage])


def down(migrator, db):
    for table in ("grant_usage", "oauth_token", "oauth_code", "oauth_grant", "oauth_client"):
        migrator.database.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
