"""Webhooks: a workspace's endpoints, the outbox of messages to deliver to them (written in the
transaction of the change that causes each), and the log of delivery attempts.

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

    class WebhookEndpoint(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
        url = CharField(max_length=2000)
        secret = TextField()  # sealed (poggio.security.sealing)
        events = TextField()
        created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
        created_at = DateTimeField()
        paused_at = DateTimeField(null=True)
        failing_since = DateTimeField(null=True)

    class WebhookMessage(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+", index=False)
        endpoint = ForeignKeyField(WebhookEndpoint, on_delete="CASCADE", backref="+", index=False)
        msg_id = CharField(max_length=40)
        event_type = CharField(max_length=40)
        data = TextField()
        dedupe = CharField(max_length=120, null=True)
        created_at = DateTimeField()
        status = CharField(max_length=12)
        attempts = IntegerField(default=0)
        next_attempt_at = DateTimeField()
        last_status = IntegerField(null=True)
        last_error = CharField(max_length=300, null=True)

        class Meta:
            indexes = (
                (("status", "next_attempt_at"), False),
                (("endpoint", "created_at"), False),
                (("endpoint", "dedupe"), True),
            )

    class WebhookAttempt(Base):
        message = ForeignKeyField(WebhookMessage, on_delete="CASCADE", backref="+")
        endpoint = ForeignKeyField(WebhookEndpoint, on_delete="CASCADE", backref="+", index=False)
        at = DateTimeField()
        status_code = IntegerField(null=True)
        error = CharField(max_length=300, null=True)
        duration_ms = FloatField(default=0)

        class Meta:
            indexes = ((("endpoint", "at"), False),)

    db.create_tables([WebhookEndpoint, WebhookMessage, WebhookAttempt])


def down(migrator, db):
    for table in ("webhook_attempt", "webhook_message", "webhook_endpoint"):
        migrator.database.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
