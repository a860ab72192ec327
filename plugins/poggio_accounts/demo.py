"""Deterministic demo accounts: ``example.com`` first, then as many plausible companies as asked."""

from __future__ import annotations

import random

from poggio import hookimpl, utcnow, writing
from poggio_accounts.models import Account, insert_accounts

INDUSTRIES = [
    "Software",
    "Manufacturing",
    "Financial Services",
    "Healthcare",
    "Retail",
    "Logistics",
    "Energy",
    "Media",
    "Education",
    "Telecommunications",
    "Biotech",
    "Construction",
]
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "SE", "ES", "IT", "CA", "AU", "JP", "BR", "IN", "CH"]
_FIRST = [
    "Acme",
    "Globex",
    "Initech",
    "Umbra",
    "Vertex",
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Wide",
    "Blue",
    "Silver",
    "Bright",
    "Iron",
    "Nimbus",
    "Quantum",
    "Cobalt",
    "Summit",
    "Harbor",
    "Aurora",
    "Pioneer",
    "Granite",
    "Lumen",
    "Evergreen",
    "Atlas",
    "Orbit",
    "Crimson",
    "Polar",
    "Falcon",
    "Maple",
    "Cedar",
    "Redwood",
    "Sterling",
    "Beacon",
    "Horizon",
    "Keystone",
    "Meridian",
]
_SECOND = [
    "Industries",
    "Labs",
    "Systems",
    "Logistics",
    "Health",
    "Retail",
    "Energy",
    "Media",
    "Works",
    "Dynamics",
    "Analytics",
    "Foods",
    "Capital",
    "Robotics",
    "Networks",
    "Bio",
    "Motors",
    "Studios",
    "Partners",
    "Solutions",
    "Software",
    "Holdings",
    "Supply",
    "Telecom",
    "Learning",
    "Builders",
]
_TLDS = ["com", "io", "co", "net", "de", "co.uk", "fr", "ai"]
BATCH = 2000


def example_account() -> dict:
    return {
        "domain": "example.com",
        "name": "Example Corp",
        "industry": "Software",
        "employees": 1200,
        "country": "US",
        "description": "Example Corp builds the software behind example.com, a long-time "
        "customer and the account every demo starts with.",
    }


def generate(rng: random.Random, count: int):
    """``count`` account dicts; the first is always example.com."""
    if count <= 0:
        return
    yield example_account()
    for i in range(1, count):
        first, second = rng.choice(_FIRST), rng.choice(_SECOND)
        name = f"{first} {second}" if i < 400 else f"{first} {second} {i}"
        slug = name.lower().replace(" ", "")
        yield {
            "domain": f"{slug}.{rng.choice(_TLDS)}" if i < 400 else f"{slug}.com",
            "name": name,
            "industry": rng.choice(INDUSTRIES),
            "employees": int(rng.lognormvariate(4.5, 1.6)) + 1,
            "country": rng.choice(COUNTRIES),
            "description": f"{name} is a "
            f"{rng.choice(['fast-growing', 'established', 'family-owned', 'venture-backed'])} "
            f"{rng.choice(INDUSTRIES).lower()} company.",
        }


@hookimpl
def poggio_seed_demo(workspace_id: int, rng: random.Random, accounts: int, progress) -> bool:
    if Account.select().where(Account.workspace == workspace_id).exists():
        return False
    now = utcnow()
    seen: set[str] = set()
    done, batch = 0, []

    def write(rows: list[dict]) -> None:
        with writing():
            insert_accounts(workspace_id, rows, now)

    for row in generate(rng, accounts):
        if row["domain"] in seen:  # a rare collision among the first generated names
            row["domain"] = f"{len(seen)}-{row['domain']}"
        seen.add(row["domain"])
        batch.append(row)
        if len(batch) >= BATCH:
            write(batch)
            done += len(batch)
            batch = []
            progress(done, accounts)
    if batch:
        write(batch)
        done += len(batch)
    progress(done, accounts)
    return True
