"""The contacts pack's prompt: draft a follow-up to a contact (its ``email`` argument completes
from the workspace's contacts' e-mail addresses)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from poggio import Message, ToolContext, prefix_values, prompt
from poggio_contacts.models import Contact
from poggio_contacts.tools import get_contact


def complete_email(ctx: ToolContext, value: str, arguments: dict[str, str]) -> list[str]:
    """The workspace's contacts' e-mail addresses starting with ``value`` (a range on the
    (workspace, email) index, a bounded number of rows)."""
    prefix = value.strip().lower()
    query = Contact.select(Contact.email).where(Contact.workspace == ctx.workspace_id)
    return prefix_values(query, Contact.email, prefix)


@prompt(title="Draft a follow-up", complete={"email": complete_email})
def follow_up(
    ctx: ToolContext,
    email: Annotated[str, Field(min_length=3, max_length=254, description="The contact's e-mail address.")],
    topic: Annotated[str, Field(max_length=500, description="What the follow-up is about (optional).")] = "",
):
    """Draft a short follow-up e-mail to a contact, from what the workspace knows about them."""
    who = get_contact(ctx, email=email).text
    about = f" about {topic}" if topic.strip() else ""
    return Message(
        f"Draft a short, friendly follow-up e-mail{about} to this contact:\n{who}\n\n"
        "Look at their account with get_account (its notes and open deals) first, and keep it under 150 words."
    )


PROMPTS = [follow_up]
