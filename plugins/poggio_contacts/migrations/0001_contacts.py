"""The contact table (a frozen copy of poggio_contacts.models.Contact at this version)."""

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

    class Contact(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        account = ForeignKeyField(Account, null=True, on_delete="SET NULL")
        email = CharField(max_length=254)
        first_name = CharField(max_length=100, default="")
        last_name = CharField(max_length=100, default="")
        title = CharField(max_length=150, default="")
        created_at = DateTimeField()

        class Meta:
            indexes = (
                (("workspace", "email"), True),
                (("workspace", "last_name", "first_name", "id"), False),
                (("account", "last_name", "first_name", "id"), False),
            )

    db.create_tables([Contact])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS contact")
