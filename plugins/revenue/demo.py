"""Deterministic demo opportunities: a couple of deals per account, over two years of close dates."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from plugins.accounts.models import Account
from plugins.revenue.models import STAGES, insert_opportunities
from poggio.db import utcnow, writing

PRODUCTS = ["Platform licence", "Renewal", "Expansion", "Pilot", "Support plan", "Onboarding", "Enterprise tier"]
CURRENCIES = {"US": "USD", "CA": "USD", "GB": "GBP", "JP": "JPY", "CH": "CHF", "BR": "USD", "IN": "USD", "AU": "USD"}
CHUNK = 2000
BASE_DAY = dt.date(2026, 1, 1)  # fixed, so the demo is the same whenever it is built


def seed(workspace_id: int, rng: random.Random, accounts: int, progress) -> None:
    now = utcnow()
    done, last_id = 0, 0
    while True:
        chunk = list(
            Account.select(Account.id, Account.domain, Account.country)
            .where((Account.workspace == workspace_id) & (Account.id > last_id))
            .order_by(Account.id).limit(CHUNK).tuples()
        )
        if not chunk:
            break
        rows = []
        for account_id, domain, country in chunk:
            count = 4 if domain == "example.com" else rng.randint(0, 4)
            for n in range(count):
                stage = STAGES[n] if domain == "example.com" and n < 2 else rng.choice(STAGES)
                rows.append({
                    "account": account_id,
                    "name": f"{rng.choice(PRODUCTS)} {BASE_DAY.year + n // 2}",
                    "stage": "won" if domain == "example.com" and n >= 2 else stage,
                    "amount": Decimal(rng.randrange(1_000, 500_000, 250)),
                    "currency": CURRENCIES.get(country, "EUR"),
                    "close_date": BASE_DAY + dt.timedelta(days=rng.randrange(-365, 365)),
                })
        with writing():
            insert_opportunities(workspace_id, rows, now)
        last_id = chunk[-1][0]
        done += len(chunk)
        progress(done, accounts)
