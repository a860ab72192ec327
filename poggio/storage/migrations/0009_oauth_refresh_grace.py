"""The refresh grace: the pair a refresh token was exchanged for, sealed with a key only that refresh
token gives, so a client that lost the answer gets it again for POGGIO_OAUTH_REFRESH_GRACE_SECONDS."""

from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column("oauth_token", "grace_sealed", TextField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("oauth_token", "grace_sealed"))
