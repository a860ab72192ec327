"""Notes on accounts (a frozen copy of poggio_accounts.models.Note at this version)."""

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

    class Note(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        account = ForeignKeyField(Account, on_delete="CASCADE")
        text = TextField()
        contact_email = CharField(max_length=254, null=True)
        opportunity_id = IntegerField(null=True)
        links = TextField(default="")
        author = CharField(max_length=254, default="")
        created_at = DateTimeField()

        class Meta:
            indexes = ((("account", "created_at", "id"), False),)

    db.create_tables([Note])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS note")
