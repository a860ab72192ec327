"""Core schema: workspaces, users, memberships, API tokens, token usage, audit events, search terms.

Frozen copies of the models as they were when this migration was written, as playhouse.migrations
asks: later changes to poggio.storage.models come as new numbered migrations, never as edits here.
"""

from peewee import *


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Workspace(Base):
        slug = CharField(max_length=63, unique=True)
        name = CharField(max_length=200)
        mcp_enabled = BooleanField(default=False)
        created_at = DateTimeField()

    class User(Base):
        email = CharField(max_length=254, unique=True)
        name = CharField(max_length=200, default="")
        password_hash = CharField(max_length=100)
        is_active = BooleanField(default=True)
        created_at = DateTimeField()

    class Membership(Base):
        user = ForeignKeyField(User, on_delete="CASCADE")
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        role = CharField(max_length=16, default="member")
        created_at = DateTimeField()

        class Meta:
            indexes = ((("user", "workspace"), True),)

    class ApiToken(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        name = CharField(max_length=100)
        digest = CharField(max_length=64, unique=True)
        last_four = CharField(max_length=4)
        packs = TextField(null=True)
        created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
        created_at = DateTimeField()
        expires_at = DateTimeField(null=True)
        rotated_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)
        revoked_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
        last_used_at = DateTimeField(null=True)
        last_used_ip = CharField(max_length=45, null=True)
        last_used_client = CharField(max_length=200, null=True)

        class Meta:
            indexes = ((("workspace", "created_at"), False),)

    class TokenUsage(Base):
        token = ForeignKeyField(ApiToken, on_delete="CASCADE")
        day = DateField()
        tool = CharField(max_length=100)
        calls = IntegerField(default=0)
        errors = IntegerField(default=0)

        class Meta:
            indexes = ((("token", "day", "tool"), True),)

    class AuditEvent(Base):
        workspace = ForeignKeyField(Workspace, null=True, on_delete="CASCADE")
        actor = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
        actor_label = CharField(max_length=254)
        action = CharField(max_length=64)
        target = CharField(max_length=254, default="")
        detail = TextField(default="")
        ip = CharField(max_length=45, null=True)
        created_at = DateTimeField(index=True)

        class Meta:
            indexes = ((("workspace", "created_at"), False),)

    class SearchTerm(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
        kind = CharField(max_length=32)
        term = CharField(max_length=40)
        ref_id = IntegerField()

        class Meta:
            indexes = (
                (("workspace", "kind", "term", "ref_id"), False),
                (("kind", "ref_id"), False),
            )

    db.create_tables([Workspace, User, Membership, ApiToken, TokenUsage, AuditEvent, SearchTerm])
    db.execute_sql(
        "CREATE UNIQUE INDEX api_token_active_name ON api_token (workspace_id, name) WHERE revoked_at IS NULL"
    )


def down(migrator, db):
    for table in ("search_term", "audit_event", "token_usage", "api_token", "membership", "user", "workspace"):
        migrator.database.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
