"""Idempotency keys of write tools (a frozen copy of poggio.storage.models.IdempotencyKey at this version).

Numbered 0005: 0004 is the activity record's (issue 14); the runner applies whatever is missing, in order."""

from peewee import *


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Workspace(Base):  # referenced only
        pass

    class IdempotencyKey(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        key = CharField(max_length=200)
        tool = CharField(max_length=64)
        fingerprint = CharField(max_length=64)
        result = TextField(default="")
        created_at = DateTimeField()

        class Meta:
            table_name = "idempotency_key"
            indexes = ((("workspace", "key"), True), (("workspace", "created_at"), False))

    db.create_tables([IdempotencyKey])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS idempotency_key")
