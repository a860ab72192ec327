"""opportunity.updated_at: when an opportunity last changed (its creation for those already there)."""

from peewee import DateTimeField
from playhouse.migrate import migrate


def up(migrator, db):
    migrate(migrator.add_column("opportunity", "updated_at", DateTimeField(null=True)))
    db.execute_sql("UPDATE opportunity SET updated_at = created_at")


def down(migrator, db):
    migrate(migrator.drop_column("opportunity", "updated_at"))
