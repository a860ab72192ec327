"""Deterministic demo contacts: a few people at every account."""

from __future__ import annotations

import random

from plugins.accounts.models import Account
from plugins.contacts.models import insert_contacts
from poggio.db import utcnow, writing

FIRST = ["Ada", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kara", "Liam",
         "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wei", "Yara", "Zoe"]
LAST = ["Adams", "Bauer", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen", "Khan",
        "Larsen", "Moreau", "Nakamura", "Okafor", "Patel", "Rossi", "Schmidt", "Tanaka", "Umeh", "Varga",
        "Weber", "Young", "Zimmer"]
TITLES = ["CEO", "CFO", "CTO", "VP Sales", "Head of Procurement", "IT Director", "Operations Manager",
          "Account Manager", "Engineering Manager", "Finance Director", "Buyer", "Office Manager"]
CHUNK = 2000


def seed(workspace_id: int, rng: random.Random, accounts: int, progress) -> None:
    now = utcnow()
    done, last_id = 0, 0
    while True:
        chunk = list(
            Account.select(Account.id, Account.domain)
            .where((Account.workspace == workspace_id) & (Account.id > last_id))
            .order_by(Account.id).limit(CHUNK).tuples()
        )
        if not chunk:
            break
        rows = []
        for account_id, domain in chunk:
            for n in range(3 if domain == "example.com" else rng.randint(1, 5)):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                rows.append({"account": account_id, "email": f"{first}.{last}{'' if n == 0 else n}@{domain}".lower(),
                             "first_name": first, "last_name": last, "title": rng.choice(TITLES)})
        unique = list({r["email"]: r for r in rows}.values())
        with writing():
            insert_contacts(workspace_id, unique, now)
        last_id = chunk[-1][0]
        done += len(chunk)
        progress(done, accounts)
