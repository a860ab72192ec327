"""contact.updated_at: when a contact last changed (its creation for those already there)."""

from peewee import DateTimeField
from playhouse.migrate import migrate


def up(migrator, db):
    migrate(migrator.add_column("contact", "updated_at", DateTimeField(null=True)))
    db.execute_sql("UPDATE contact SET updated_at = created_at")


def down(migrator, db):
    migrate(migrator.drop_column("contact", "updated_at"))
