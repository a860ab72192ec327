from peewee import CharField, DateTimeField, ForeignKeyField

from plugins.accounts.models import Account
from poggio import search
from poggio.db import BaseModel, utcnow
from poggio.models import Workspace

SEARCH_KIND = "contact"


class Contact(BaseModel):
    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
    account = ForeignKeyField(Account, null=True, on_delete="SET NULL", backref="+")
    email = CharField(max_length=254)
    first_name = CharField(max_length=100, default="")
    last_name = CharField(max_length=100, default="")
    title = CharField(max_length=150, default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("workspace", "email"), True),
            (("workspace", "last_name", "first_name", "id"), False),
            (("account", "last_name", "first_name", "id"), False),
        )


def insert_contacts(workspace_id: int, rows: list[dict], now=None) -> None:
    """Bulk-insert contact dicts (``account`` is an id or None) and index them for search."""
    now = now or utcnow()
    Contact.insert_many([{**r, "workspace": workspace_id, "created_at": now} for r in rows]).execute()
    ids = dict(
        Contact.select(Contact.email, Contact.id)
        .where((Contact.workspace == workspace_id) & Contact.email.in_([r["email"] for r in rows]))
        .tuples()
    )
    search.bulk_insert(
        t for r in rows
        for t in search.term_rows(SEARCH_KIND, workspace_id, ids[r["email"]], r["first_name"], r["last_name"], r["email"], r["title"])
    )
