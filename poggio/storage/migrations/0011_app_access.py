"""Admins decide which apps and who may ask: a workspace's app policy (any or listed apps, admins or
members too) and a member's request for an app, pending until an admin approves or denies it.

A frozen copy of the model referenced, as playhouse.migrations asks."""

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, Model, TextField


def up(migrator, db):
    class User(Model):  # referenced only
        id = AutoField()  # as peewee adds it, declared for the type checker

        class Meta:
            database = db
            table_name = "user"

    migrator.migrate(
        migrator.add_column("workspace", "app_policy", CharField(max_length=8, default="any")),
        migrator.add_column("workspace", "allowed_apps", TextField(null=True)),
        migrator.add_column("workspace", "app_access", CharField(max_length=8, default="admins")),
        migrator.add_column("oauth_grant", "approval", CharField(max_length=8, null=True)),
        migrator.add_column("oauth_grant", "decided_at", DateTimeField(null=True)),
        migrator.add_column(
            "oauth_grant", "decided_by_id", ForeignKeyField(User, field=User.id, null=True, on_delete="SET NULL")
        ),
        migrator.add_column("oauth_code", "approval", CharField(max_length=8, null=True)),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column("oauth_code", "approval"),
        migrator.drop_index("oauth_grant", "oauth_grant_decided_by_id"),
        *(migrator.drop_column("oauth_grant", c) for c in ("approval", "decided_at", "decided_by_id")),
        *(migrator.drop_column("workspace", c) for c in ("app_policy", "allowed_apps", "app_access")),
    )
