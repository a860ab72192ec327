"""SCIM provisioning: the SCIM clients' tokens (digests), the Users and Groups they provisioned, and
the API tokens flagged for review when their creator was deprovisioned (frozen copies of the
models of poggio.identity.scim)."""

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

    class ApiToken(Base):
        class Meta:
            table_name = "api_token"

    class ScimToken(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        name = CharField(max_length=100)
        digest = CharField(max_length=64, unique=True)
        last_four = CharField(max_length=4)
        created_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
        created_at = DateTimeField()
        last_used_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)

        class Meta:
            table_name = "scim_token"

    class ScimUser(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        user = ForeignKeyField(User, on_delete="CASCADE")
        user_name = CharField(max_length=254)
        external_id = CharField(max_length=254, null=True)
        active = BooleanField(default=True)
        document = TextField(default="{}")
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            table_name = "scim_user"
            indexes = ((("workspace", "user"), True), (("workspace", "user_name"), True))

    class ScimGroup(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        display_name = CharField(max_length=254)
        external_id = CharField(max_length=254, null=True)
        document = TextField(default="{}")
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            table_name = "scim_group"
            indexes = ((("workspace", "display_name"), True),)

    class TokenReview(Base):
        token = ForeignKeyField(ApiToken, unique=True, on_delete="CASCADE")
        reason = CharField(max_length=254)
        created_at = DateTimeField()

        class Meta:
            table_name = "token_review"

    db.create_tables([ScimToken, ScimUser, ScimGroup, TokenReview])


def down(migrator, db):
    for table in ("token_review", "scim_group", "scim_user", "scim_token"):
        migrator.database.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
