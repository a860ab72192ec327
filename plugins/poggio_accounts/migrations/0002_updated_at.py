"""account.updated_at: when an account last changed (its creation for those already there)."""

from peewee import DateTimeField
from playhouse.migrate import migrate


def up(migrator, db):
    migrate(migrator.add_column("account", "updated_at", DateTimeField(null=True)))
    db.execute_sql("UPDATE account SET updated_at = created_at")


def down(migrator, db):
    migrate(migrator.drop_column("account", "updated_at"))
