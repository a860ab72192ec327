"""Token governance: the activity record, workspace token policy, rotation with overlap, network and
rate limits per token.

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

    class Activity(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+", index=False)
        kind = CharField(max_length=8)
        subject_id = IntegerField()
        at = DateTimeField()
        tool = CharField(max_length=100)
        outcome = CharField(max_length=16)
        latency_ms = FloatField(default=0)
        client = CharField(max_length=200, null=True)
        ip = CharField(max_length=45, null=True)

        class Meta:
            indexes = (
                (("workspace", "at"), False),
                (("workspace", "tool", "at"), False),
                (("workspace", "outcome", "at"), False),
                (("kind", "subject_id", "at"), False),
                (("kind", "subject_id", "tool", "at"), False),
                (("kind", "subject_id", "outcome", "at"), False),
            )

    migrator.migrate(
        migrator.add_column("workspace", "default_expiry_days", IntegerField(null=True, default=90)),
        migrator.add_column("workspace", "max_lifetime_days", IntegerField(null=True)),
        migrator.add_column("workspace", "allow_no_expiry", BooleanField(default=True)),
        migrator.add_column("api_token", "previous_digest", CharField(max_length=64, null=True)),
        migrator.add_column("api_token", "previous_last_four", CharField(max_length=4, null=True)),
        migrator.add_column("api_token", "previous_expires_at", DateTimeField(null=True)),
        migrator.add_column("api_token", "allowed_ips", TextField(null=True)),
        migrator.add_column("api_token", "rate_limit", CharField(max_length=40, null=True)),
        migrator.add_column("api_token", "expiry_capped_at", DateTimeField(null=True)),
        migrator.add_column("oauth_grant", "expiry_capped_at", DateTimeField(null=True)),
        migrator.add_index("api_token", ("previous_digest",), unique=True),
    )
    db.create_tables([Activity])


def down(migrator, db):
    migrator.database.execute_sql('DROP TABLE IF EXISTS "activity"')
    migrator.migrate(
        migrator.drop_index("api_token", "api_token_previous_digest"),
        *(
            migrator.drop_column("api_token", c)
            for c in (
                "previous_digest",
                "previous_last_four",
                "previous_expires_at",
                "allowed_ips",
                "rate_limit",
                "expiry_capped_at",
            )
        ),
        migrator.drop_column("oauth_grant", "expiry_capped_at"),
        *(
            migrator.drop_column("workspace", c)
            for c in ("default_expiry_days", "max_lifetime_days", "allow_no_expiry")
        ),
    )
