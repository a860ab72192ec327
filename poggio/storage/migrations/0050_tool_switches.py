"""Admins pick tools one by one: what a workspace switched off, by (pack, kind, name) so
prompts and resources can be switched the same way, with the names of the tools off copied onto the
workspace row (read with every credential check); and the narrowing of a token, a connected app
(grant) and the authorization code between consent and grant to named tools.

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

    class ToolSwitch(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+", index=False)
        pack = CharField(max_length=100)
        kind = CharField(max_length=16)
        name = CharField(max_length=200)
        changed_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
        changed_at = DateTimeField()

        class Meta:
            indexes = ((("workspace", "kind", "name", "pack"), True),)

    db.create_tables([ToolSwitch])
    migrator.migrate(
        migrator.add_column("workspace", "tools_off", TextField(null=True)),
        migrator.add_column("api_token", "tools", TextField(null=True)),
        migrator.add_column("oauth_grant", "tools", TextField(null=True)),
        migrator.add_column("oauth_code", "tools", TextField(null=True)),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column("oauth_code", "tools"),
        migrator.drop_column("oauth_grant", "tools"),
        migrator.drop_column("api_token", "tools"),
        migrator.drop_column("workspace", "tools_off"),
    )
    migrator.database.execute_sql('DROP TABLE IF EXISTS "tool_switch"')
