"""Demo opportunities, a couple of deals per account, dated from today so the demo looks alive: won and
lost deals closed in the past year and a half, open ones close in the coming weeks and months, and
some are overdue. The same seed on the same day builds the same deals."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from poggio import hookimpl, utcnow, writing
from poggio_accounts import Account, account_chunks
from poggio_revenue.models import OPEN_STAGES, STAGES, Opportunity, insert_opportunities

PRODUCTS = ["Platform licence", "Renewal", "Expansion", "Pilot", "Support plan", "Onboarding", "Enterprise tier"]
CURRENCIES = {"US": "USD", "CA": "USD", "GB": "GBP", "JP": "JPY", "CH": "CHF", "BR": "USD", "IN": "USD", "AU": "USD"}
OVERDUE_SHARE = 0.15  # of the open deals


def close_date(rng: random.Random, stage: str, today: dt.date, overdue: bool | None = None) -> dt.date:
    """Closed deals: up to 540 days ago. Open ones: mostly in the coming weeks (most within three
    months, none past ten), or, for about one in seven (or when ``overdue`` says so), up to 60 days late."""
    if stage not in OPEN_STAGES:
        return today - dt.timedelta(days=rng.randrange(1, 541))
    if overdue is None:
        overdue = rng.random() < OVERDUE_SHARE
    if overdue:
        return today - dt.timedelta(days=rng.randrange(1, 61))
    return today + dt.timedelta(days=int(rng.triangular(3, 300, 20)))


@hookimpl
def poggio_seed_demo(workspace_id: int, rng: random.Random, accounts: int, progress) -> bool:
    if Opportunity.select().where(Opportunity.workspace == workspace_id).exists():
        return False
    now = utcnow()
    today = now.date()
    done = 0
    for chunk in account_chunks(workspace_id, Account.domain, Account.country):
        rows = []
        for account_id, domain, country in chunk:
            count = 4 if domain == "example.com" else rng.randint(0, 4)
            for n in range(count):
                example = domain == "example.com"  # two open deals (one of them late) and two won
                stage = (STAGES[n] if n < 2 else "won") if example else rng.choice(STAGES)
                product, amount = rng.choice(PRODUCTS), Decimal(rng.randrange(1_000, 500_000, 250))
                day = close_date(rng, stage, today, overdue=(n == 1) if example else None)
                rows.append(
                    {
                        "account": account_id,
                        "name": f"{product} {day.year}",
                        "stage": stage,
                        "amount": amount,
                        "currency": CURRENCIES.get(country, "EUR"),
                        "close_date": day,
                    }
                )
        with writing():
            insert_opportunities(workspace_id, rows, now)
        done += len(chunk)
        progress(done, accounts)
    return True
