"""Resources of the contacts pack: ``poggio://accounts/{domain}/contacts``, the people at one
account, 100 a page (``?cursor=`` the ``next_cursor`` of the page before; the JSON names the next
page's URI)."""

from __future__ import annotations

from poggio import ResourceNotFound, ToolContext, hookimpl, resource
from poggio_accounts import complete_domain, find_account, normalise_domain
from poggio_contacts.tools import search_contacts

PAGE = 100


@resource(
    "poggio://accounts/{domain}/contacts{?cursor}",
    name="account_contacts",
    complete={"domain": complete_domain},
    title="Contacts at an account",
    description="The people at one account, by last name, 100 a page: JSON (contacts, next_cursor and "
    "the next page's URI), then the same as text.",
)
def account_contacts(ctx: ToolContext, domain: str, cursor: str | None = None):
    clean = normalise_domain(domain)
    if find_account(ctx.workspace_id, clean) is None:
        raise ResourceNotFound(f"no account with domain {clean!r} in this workspace")
    result = search_contacts(ctx, account_domain=clean, limit=PAGE, cursor=cursor or None)
    page = result.data.model_dump(mode="json", by_alias=True)
    if page.get("next_cursor"):
        page["next"] = account_contacts.expand(domain=clean, cursor=page["next_cursor"])
    text = (
        result.text.replace("call again with the next_cursor", f"read {page['next']}")
        if "next" in page
        else result.text
    )
    return page, text  # two renderings: JSON, then text


@hookimpl
def poggio_resources():
    return [account_contacts]
