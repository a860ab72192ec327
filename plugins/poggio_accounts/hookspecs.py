"""The hook the accounts pack owns: other packs implement it to add a section to an account's profile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from poggio import hookspec


@dataclass
class ProfileSection:
    """One pack's part of an account profile: ``data`` for programs, ``text`` for people."""

    key: str
    title: str
    data: dict[str, Any]
    text: str


@hookspec
def poggio_account_profile(ctx, account):
    """Contribute a section to an account's profile, as ``get_account`` shows it.

    ``account`` is the accounts pack's ``Account`` row, already scoped to ``ctx.workspace_id``.
    Return a :class:`poggio_accounts.ProfileSection`, or ``None`` when the pack has nothing to say.
    Only packs in the calling token's scope are asked. A pack that implements this hook requires the
    accounts pack (``PackInfo(requires=("accounts",))``), or marks its implementation
    ``@hookimpl(optionalhook=True)`` to load without it."""


@hookspec
def poggio_note_link(ctx, account, argument, value):
    """Check what an ``add_note`` call links its note to, when ``argument`` is yours; and word the
    link for the reader of the note.

    ``argument`` is a link kind: a key of ``add_note``'s ``about`` (``about={"ticket_id": 42}``), or
    one of its two named link arguments, ``contact_email`` (the contacts pack's kind) and
    ``opportunity_id`` (the revenue pack's). Any pack can attach notes to its own records by
    answering for a kind of its own; the note keeps the link (``Note.links``), not a column of the
    accounts pack. ``add_note`` asks every pack in the caller's scope about each link given.

    Return a short label for the record ``value`` names (e.g. ``"Ada Adams <ada@example.com>"``)
    when ``argument`` is one your pack knows and the record is
    ``ctx.workspace_id``'s and at ``account``; raise :class:`poggio.ToolError` ``(argument, why)``
    when it is yours but names no such record; return ``None`` for an argument that is not yours.
    An argument no pack answers for is refused. ``get_account`` asks the same of the packs in its
    reader's scope for each link of the notes it shows: a link no pack answers for (its pack is out
    of the reader's scope, or its record is gone) shows as an opaque reference, so a note never
    shows what the reader's token may not read through the pack that holds it."""
