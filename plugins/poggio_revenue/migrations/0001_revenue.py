"""The opportunity table (a frozen copy of poggio_revenue.models.Opportunity at this version)."""

from peewee import *


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Workspace(Base):  # referenced only
        pass

    class Account(Base):  # referenced only
        pass

    class Opportunity(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        account = ForeignKeyField(Account, on_delete="CASCADE")
        name = CharField(max_length=200)
        stage = CharField(max_length=20)
        amount = DecimalField(max_digits=14, decimal_places=2)
        currency = CharField(max_length=3)
        close_date = DateField()
        created_at = DateTimeField()

        class Meta:
            indexes = (
                (("workspace", "close_date", "id"), False),
                (("account", "close_date", "id"), False),
                (("workspace", "stage", "close_date"), False),
            )

    db.create_tables([Opportunity])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS opportunity")
