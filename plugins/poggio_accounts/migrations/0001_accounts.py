"""The account table (a frozen copy of poggio_accounts.models.Account at this version)."""

from peewee import *


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Workspace(Base):  # the core's table, referenced only
        pass

    class Account(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        domain = CharField(max_length=253)
        name = CharField(max_length=200)
        industry = CharField(max_length=100, default="")
        employees = IntegerField(null=True)
        country = CharField(max_length=2, default="")
        description = TextField(default="")
        created_at = DateTimeField()

        class Meta:
            indexes = (
                (("workspace", "domain"), True),
                (("workspace", "name", "id"), False),
                (("workspace", "industry", "name", "id"), False),
            )

    db.create_tables([Account])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS account")
