from peewee import CharField, DateField, DateTimeField, DecimalField, ForeignKeyField

from plugins.accounts.models import Account
from poggio.db import BaseModel, utcnow
from poggio.models import Workspace

STAGES = ("prospecting", "qualification", "proposal", "negotiation", "won", "lost")
OPEN_STAGES = STAGES[:4]


class Opportunity(BaseModel):
    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
    account = ForeignKeyField(Account, on_delete="CASCADE", backref="+")
    name = CharField(max_length=200)
    stage = CharField(max_length=20)
    amount = DecimalField(max_digits=14, decimal_places=2)
    currency = CharField(max_length=3)
    close_date = DateField()
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("workspace", "close_date", "id"), False),
            (("account", "close_date", "id"), False),
            (("workspace", "stage", "close_date"), False),
            # covers the revenue summary's count and sum per currency and stage (migration 0002)
            (("workspace", "currency", "stage", "close_date", "amount"), False),
        )
