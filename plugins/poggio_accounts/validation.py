"""The checks an account's fields pass, wherever they come from: a CSV file (``poggio import
accounts``) or a write tool (``create_account``, ``update_account``). Each cleans one value or raises
:class:`poggio.ToolError` naming the field and what it accepts; the importer reports the message with
the line number, a tool answers it as a tool error."""

from __future__ import annotations

import re

from poggio import ToolError
from poggio_accounts.models import normalise_domain

_DOMAIN = re.compile(r"^(?=.{3,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
MAX_DESCRIPTION = 5000


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def clean_domain(value, field: str = "domain") -> str:
    domain = normalise_domain(_text(value))
    if not _DOMAIN.match(domain):
        raise ToolError(field, f"{value!r} is not a domain such as example.com")
    return domain


def clean_name(value) -> str:
    name = _text(value)
    if not name or len(name) > 200:
        raise ToolError("name", "required, at most 200 characters")
    return name


def clean_industry(value) -> str:
    industry = _text(value)
    if len(industry) > 100:
        raise ToolError("industry", "at most 100 characters")
    return industry


def clean_employees(value) -> int | None:
    if isinstance(value, bool):
        raise ToolError("employees", f"{value!r} is not a whole number")
    if isinstance(value, int):
        if value < 0:
            raise ToolError("employees", f"{value!r} is not a whole number of 0 or more")
        return value
    text = _text(value).replace(",", "")
    if not text:
        return None
    if not text.isdigit():
        raise ToolError("employees", f"{value!r} is not a whole number")
    return int(text)


def clean_country(value) -> str:
    country = _text(value).upper()
    if country and not re.fullmatch(r"[A-Z]{2}", country):
        raise ToolError("country", f"{value!r} is not a two-letter country code (ISO 3166, e.g. US, DE) or empty")
    return country


def clean_description(value) -> str:
    text = _text(value)
    if len(text) > MAX_DESCRIPTION:
        raise ToolError("description", f"at most {MAX_DESCRIPTION:,} characters")
    return text


FIELDS = {
    "name": clean_name,
    "industry": clean_industry,
    "employees": clean_employees,
    "country": clean_country,
    "description": clean_description,
}


def clean_fields(values: dict) -> dict:
    """The given fields (of ``FIELDS``) cleaned; fields left out stay out (an update changes only those)."""
    return {field: FIELDS[field](value) for field, value in values.items()}
