"""The checks a contact's fields pass, from a CSV file (``poggio import contacts``) or a write tool
(``create_contact``, ``update_contact``): one set, each raising :class:`poggio.ToolError` that names
the field and what it accepts."""

from __future__ import annotations

import re

from poggio import ToolError

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
LIMITS = {"first_name": 100, "last_name": 100, "title": 150}


def clean_email(value) -> str:
    email = ("" if value is None else str(value)).strip().lower()
    if not _EMAIL.match(email) or len(email) > 254:
        raise ToolError("email", f"{value!r} is not an e-mail address such as ada@example.com")
    return email


def clean_text(field: str, value) -> str:
    text = ("" if value is None else str(value)).strip()
    if len(text) > LIMITS[field]:
        raise ToolError(field, f"too long: at most {LIMITS[field]} characters")
    return text


def clean_fields(values: dict) -> dict:
    """The given name and title fields cleaned (those left out stay out)."""
    return {field: clean_text(field, value) for field, value in values.items()}
