from peewee import CharField, DateTimeField, ForeignKeyField

from poggio import WorkspaceModel, add_search_terms, utcnow
from poggio_accounts import Account

SEARCH_KIND = "contact"


class Contact(WorkspaceModel):
    account = ForeignKeyField(Account, null=True, on_delete="SET NULL", backref="+")
    email = CharField(max_length=254)
    first_name = CharField(max_length=100, default="")
    last_name = CharField(max_length=100, default="")
    title = CharField(max_length=150, default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(null=True)  # changed_at() of the last change; what if_unmodified_since compares

    class Meta:
        indexes = (
            (("workspace", "email"), True),
            (("workspace", "last_name", "first_name", "id"), False),
            (("account", "last_name", "first_name", "id"), False),
        )


def insert_contacts(workspace_id: int, rows: list[dict], now=None) -> None:
    """Bulk-insert contact dicts (``account`` is an id or None) and index them for search."""
    now = now or utcnow()
    Contact.insert_many([{"updated_at": now, **r, "workspace": workspace_id, "created_at": now}
                         for r in rows]).execute()
    ids = dict(
        Contact.select(Contact.email, Contact.id)
        .where((Contact.workspace == workspace_id) & Contact.email.in_([r["email"] for r in rows]))
        .tuples()
    )
    add_search_terms(SEARCH_KIND, workspace_id, ((ids[r["email"]], search_texts(r)) for r in rows))


def search_texts(contact) -> tuple:
    """What a contact is found by (a dict or a row): name, e-mail and title."""
    get = contact.get if isinstance(contact, dict) else lambda f: getattr(contact, f)
    return (get("first_name"), get("last_name"), get("email"), get("title"))
