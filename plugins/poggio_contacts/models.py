from __future__ import annotations

from peewee import CharField, DateTimeField, ForeignKeyField

from poggio import WorkspaceModel, add_search_terms, utcnow
from poggio.advanced import bulk_insert, reserve_ids
from poggio_accounts import Account

SEARCH_KIND = "contact"


class Contact(WorkspaceModel):
    account = ForeignKeyField(Account, null=True, on_delete="SET NULL", backref="+")
    account_id: ForeignKeyField[int | None]  # for the type checker: the raw id peewee adds (a row's int)
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
    """Bulk-insert contact dicts (``account`` is an id or None) and index them for search, in the
    caller's write transaction. Advanced API: imports and the demo write millions (benchmarks/README.md,
    "Bulk import and the demo")."""
    now = now or utcnow()
    ids = reserve_ids(Contact, len(rows))
    later = len(rows) == 1  # a tool's write: on PostgreSQL sent with the transaction's next statement
    columns = (
        Contact.id,
        Contact.workspace,
        Contact.account,
        Contact.email,
        Contact.first_name,
        Contact.last_name,
        Contact.title,
        Contact.created_at,
        Contact.updated_at,
    )
    bulk_insert(
        Contact,
        columns,
        [
            (
                i,
                workspace_id,
                r.get("account"),
                r["email"],
                r.get("first_name", ""),
                r.get("last_name", ""),
                r.get("title", ""),
                now,
                r.get("updated_at", now),
            )
            for i, r in zip(ids, rows, strict=True)
        ],
        later=later,
    )
    add_search_terms(
        SEARCH_KIND, workspace_id, ((i, search_texts(r)) for i, r in zip(ids, rows, strict=True)), later=later
    )


def search_texts(contact) -> tuple:
    """What a contact is found by (a dict or a row): name, e-mail and title."""
    get = contact.get if isinstance(contact, dict) else lambda f: getattr(contact, f)
    return (get("first_name"), get("last_name"), get("email"), get("title"))
