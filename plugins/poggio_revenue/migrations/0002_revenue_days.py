"""Opportunity totals per day: count and amount per workspace, currency, stage and close date, kept
as opportunities are written (poggio_revenue.models.insert_opportunities), so the workspace's
revenue summary reads a few thousand totals instead of every opportunity. Filled here from the
opportunities already in the database. A frozen copy of the model, as playhouse.migrations asks."""

from peewee import *


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Workspace(Base):  # referenced only
        pass

    class RevenueDay(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        currency = CharField(max_length=3)
        stage = CharField(max_length=20)
        close_date = DateField()
        count = IntegerField()
        amount = DecimalField(max_digits=18, decimal_places=2)

        class Meta:
            indexes = ((("workspace", "currency", "stage", "close_date"), True),)

    db.create_tables([RevenueDay])
    db.execute_sql(
        "INSERT INTO revenue_day (workspace_id, currency, stage, close_date, count, amount) "
        "SELECT workspace_id, currency, stage, close_date, COUNT(*), SUM(amount) FROM opportunity "
        "GROUP BY workspace_id, currency, stage, close_date"
    )


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS revenue_day")
