from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from poggio.db import BaseModel, utcnow
from poggio.models import Workspace
from poggio.prepared import Prepared, slot

SEARCH_KIND = "account"


class Account(BaseModel):
    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
    domain = CharField(max_length=253)
    name = CharField(max_length=200)
    industry = CharField(max_length=100, default="")
    employees = IntegerField(null=True)
    country = CharField(max_length=2, default="")
    description = TextField(default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("workspace", "domain"), True),
            (("workspace", "name", "id"), False),
            (("workspace", "industry", "name", "id"), False),
        )


_BY_DOMAIN = Prepared(lambda: Account.select().where(
    (Account.workspace == slot("workspace")) & (Account.domain == slot("domain"))))


def find_account(workspace_id: int, domain: str) -> Account | None:
    """The workspace's account with this domain (case-insensitive, ``www.`` and a URL's scheme ignored)."""
    return _BY_DOMAIN.first(workspace=workspace_id, domain=normalise_domain(domain))


def normalise_domain(value: str) -> str:
    text = (value or "").strip().lower()
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    text = text.split("/", 1)[0].removeprefix("www.").rstrip(".")
    return text


def insert_accounts(workspace_id: int, rows: list[dict], now) -> None:
    """Bulk-insert account dicts (no workspace key) and index their names and domains for search."""
    from poggio import search

    Account.insert_many([{**r, "workspace": workspace_id, "created_at": now} for r in rows]).execute()
    ids = dict(
        Account.select(Account.domain, Account.id)
        .where((Account.workspace == workspace_id) & Account.domain.in_([r["domain"] for r in rows]))
        .tuples()
    )
    search.bulk_insert(
        t for r in rows for t in search.term_rows(SEARCH_KIND, workspace_id, ids[r["domain"]], r["name"], r["domain"])
    )
