"""Models of the core: workspaces, users and their memberships, API tokens, token usage, audit events.

Tool packs own their own models (accounts, contacts, opportunities); every one of them carries a
``workspace`` foreign key, and every query a tool makes is scoped by it.
"""

from __future__ import annotations

from peewee import (
    BooleanField,
    CharField,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from poggio.db import BaseModel, utcnow

ROLES = ("admin", "member")


class Workspace(BaseModel):
    slug = CharField(max_length=63, unique=True)
    name = CharField(max_length=200)
    mcp_enabled = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)


class User(BaseModel):
    email = CharField(max_length=254, unique=True)
    name = CharField(max_length=200, default="")
    password_hash = CharField(max_length=100)
    is_active = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)


class Membership(BaseModel):
    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    workspace = ForeignKeyField(Workspace, backref="memberships", on_delete="CASCADE")
    role = CharField(max_length=16, default="member")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "workspace"), True),)


class ApiToken(BaseModel):
    """An API token's metadata. The secret itself is never stored: only its digest."""

    workspace = ForeignKeyField(Workspace, backref="tokens", on_delete="CASCADE")
    name = CharField(max_length=100)
    digest = CharField(max_length=64, unique=True)
    last_four = CharField(max_length=4)
    packs = TextField(null=True)  # comma-separated pack names; NULL means every pack
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(null=True)
    rotated_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    revoked_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    last_used_at = DateTimeField(null=True)
    last_used_ip = CharField(max_length=45, null=True)
    last_used_client = CharField(max_length=200, null=True)

    class Meta:
        indexes = ((("workspace", "created_at"), False),)

    @property
    def pack_list(self) -> list[str] | None:
        return None if self.packs is None else [p for p in self.packs.split(",") if p]

    @property
    def masked(self) -> str:
        return f"pgo_…{self.last_four}"


class TokenUsage(BaseModel):
    """Calls of one token on one day to one tool (or MCP method), with how many failed."""

    token = ForeignKeyField(ApiToken, backref="usage", on_delete="CASCADE")
    day = DateField()
    tool = CharField(max_length=100)
    calls = IntegerField(default=0)
    errors = IntegerField(default=0)

    class Meta:
        indexes = ((("token", "day", "tool"), True),)


class AuditEvent(BaseModel):
    workspace = ForeignKeyField(Workspace, null=True, backref="audit_events", on_delete="CASCADE")
    actor = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    actor_label = CharField(max_length=254)  # the actor's e-mail, or "cli"/"system"
    action = CharField(max_length=64)
    target = CharField(max_length=254, default="")
    detail = TextField(default="")
    ip = CharField(max_length=45, null=True)
    created_at = DateTimeField(default=utcnow, index=True)

    class Meta:
        indexes = ((("workspace", "created_at"), False),)
