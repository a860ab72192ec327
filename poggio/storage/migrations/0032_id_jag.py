"""Enterprise-Managed Authorization: the connected apps a workspace's identity provider made by
ID-JAG, and the employee each acts for (a frozen copy of poggio.identity.id_jag.ManagedGrant)."""

from peewee import *


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class User(Base):
        class Meta:
            table_name = "user"

    class OAuthGrant(Base):
        class Meta:
            table_name = "oauth_grant"

    class ManagedGrant(Base):
        grant = ForeignKeyField(OAuthGrant, unique=True, on_delete="CASCADE")
        user = ForeignKeyField(User, on_delete="CASCADE")
        issuer = CharField(max_length=500)
        created_at = DateTimeField()

        class Meta:
            table_name = "managed_grant"

    db.create_tables([ManagedGrant])


def down(migrator, db):
    migrator.database.execute_sql('DROP TABLE IF EXISTS "managed_grant"')
