"""Deterministic demo contacts: a few people at every account."""

from __future__ import annotations

import random

from poggio import hookimpl, utcnow, writing
from poggio_accounts import Account, account_chunks
from poggio_contacts.models import Contact, insert_contacts

FIRST = [
    "Ada",
    "Ben",
    "Chloe",
    "David",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kara",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Wei",
    "Yara",
    "Zoe",
]
LAST = [
    "Adams",
    "Bauer",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ito",
    "Jensen",
    "Khan",
    "Larsen",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Patel",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Umeh",
    "Varga",
    "Weber",
    "Young",
    "Zimmer",
]
TITLES = [
    "CEO",
    "CFO",
    "CTO",
    "VP Sales",
    "Head of Procurement",
    "IT Director",
    "Operations Manager",
    "Account Manager",
    "Engineering Manager",
    "Finance Director",
    "Buyer",
    "Office Manager",
]


@hookimpl
def poggio_seed_demo(workspace_id: int, rng: random.Random, accounts: int, progress) -> bool:
    if Contact.select().where(Contact.workspace == workspace_id).exists():
        return False
    now = utcnow()
    done = 0
    for chunk in account_chunks(workspace_id, Account.domain):
        rows = []
        for account_id, domain in chunk:
            for n in range(3 if domain == "example.com" else rng.randint(1, 5)):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                rows.append(
                    {
                        "account": account_id,
                        "email": f"{first}.{last}{'' if n == 0 else n}@{domain}".lower(),
                        "first_name": first,
                        "last_name": last,
                        "title": rng.choice(TITLES),
                    }
                )
        unique = list({r["email"]: r for r in rows}.values())
        with writing():
            insert_contacts(workspace_id, unique, now)
        done += len(chunk)
        progress(done, accounts)
    return True
