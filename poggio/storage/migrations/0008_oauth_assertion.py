"""Client assertions seen at the token endpoint (``private_key_jwt``), kept until they expire so a
replayed ``jti`` is refused by every portal worker (a frozen copy of poggio.storage.models.OAuthAssertion)."""

from peewee import *


def up(migrator, db):
    class OAuthAssertion(Model):
        digest = CharField(max_length=64, unique=True)
        expires_at = DateTimeField(index=True)

        class Meta:
            database = db
            table_name = "oauth_assertion"

    db.create_tables([OAuthAssertion])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS oauth_assertion")
