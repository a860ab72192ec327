"""Portal sessions kept on the server (so signing out, a password change or removing a user ends
them) and the sign-in throttle's counters, shared by every portal process and host.

Frozen copies of the models as they were when this migration was written (playhouse.migrations)."""

from peewee import *


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class User(Base):
        class Meta:
            table_name = "user"

    class UserSession(Base):
        user = ForeignKeyField(User, on_delete="CASCADE")
        digest = CharField(max_length=64, unique=True)
        created_at = DateTimeField()
        last_seen_at = DateTimeField(index=True)
        ip = CharField(max_length=45, null=True)

    class SignInThrottle(Base):
        key = CharField(max_length=320, unique=True)
        failures = IntegerField(default=0)
        last_failed_at = DateTimeField(index=True)
        blocked_until = DateTimeField(null=True)

    db.create_tables([UserSession, SignInThrottle])


def down(migrator, db):
    for table in ("sign_in_throttle", "user_session"):
        migrator.database.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
