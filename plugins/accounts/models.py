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
    """Bulk-insert account dicts (no workspace key) and index their names and domains for search, in
    the caller's write transaction."""
    from poggio import bulk, search

    ids = bulk.reserve_ids(Account, len(rows))
    columns = (Account.id, Account.workspace, Account.domain, Account.name, Account.industry, Account.employees,
               Account.country, Account.description, Account.created_at)
    bulk.insert_rows(Account, columns, [
        (i, workspace_id, r["domain"], r["name"], r.get("industry", ""), r.get("employees"), r.get("country", ""),
         r.get("description", ""), now) for i, r in zip(ids, rows)])
    search.bulk_index(SEARCH_KIND, workspace_id, ((i, (r["name"], r["domain"])) for i, r in zip(ids, rows)))
