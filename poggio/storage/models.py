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
    FloatField,
    ForeignKeyField,
    IntegerField,
    ModelSelect,
    TextField,
)

from poggio.storage.db import BaseModel, utcnow

ROLES = ("admin", "member")


class Workspace(BaseModel):
    slug = CharField(max_length=63, unique=True)
    name = CharField(max_length=200)
    mcp_enabled = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)
    # token policy: what a new token's expiry defaults to, the longest any token or OAuth grant may
    # live (NULL: no maximum) and whether "no expiry" is allowed (only without a maximum)
    default_expiry_days = IntegerField(null=True, default=90)
    max_lifetime_days = IntegerField(null=True)
    allow_no_expiry = BooleanField(default=True)
    # app policy (poggio.identity.app_access): which apps may connect ("any", or only those "listed" in
    # allowed_apps, one per line) and who may connect them ("admins", or "members" too, each member's
    # request approved by an admin)
    app_policy = CharField(max_length=8, default="any")
    allowed_apps = TextField(null=True)
    app_access = CharField(max_length=8, default="admins")
    # the tools switched off, comma-separated (NULL: none): a copy of the workspace's tool_switch rows
    # of kind "tool" written with them (poggio.identity.switches), read with every credential check for free
    tools_off = TextField(null=True)


class WorkspaceModel(BaseModel):
    """The base of a tool pack's models: each row belongs to one workspace (deleted with it), and every
    query a tool makes is scoped by ``Model.workspace == ctx.workspace_id``. The table itself is
    created by the pack's migrations."""

    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
    # for the type checker: the raw id peewee adds beside each foreign key (a row's int, the class's field)
    workspace_id: ForeignKeyField[int]


class User(BaseModel):
    email = CharField(max_length=254, unique=True)
    name = CharField(max_length=200, default="")
    password_hash = CharField(max_length=100)
    is_active = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)
    memberships: ModelSelect[Membership]  # for the type checker: the backref of Membership.user


class Membership(BaseModel):
    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    workspace = ForeignKeyField(Workspace, backref="memberships", on_delete="CASCADE")
    workspace_id: ForeignKeyField[int]
    role = CharField(max_length=16, default="member")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "workspace"), True),)


class ApiToken(BaseModel):
    """An API token's metadata. The secret itself is never stored: only its digest."""

    workspace = ForeignKeyField(Workspace, backref="tokens", on_delete="CASCADE")
    workspace_id: ForeignKeyField[int]
    name = CharField(max_length=100)
    digest = CharField(max_length=64, unique=True)
    last_four = CharField(max_length=4)
    packs = TextField(null=True)  # comma-separated pack names; NULL means every pack
    tools = TextField(null=True)  # comma-separated tool names it is narrowed to; NULL: every tool of its packs
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(null=True)
    rotated_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    revoked_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    last_used_at = DateTimeField(null=True)
    last_used_ip = CharField(max_length=45, null=True)
    last_used_client = CharField(max_length=200, null=True)
    # rotation with overlap: the secret before the last rotation keeps working until previous_expires_at
    previous_digest = CharField(max_length=64, unique=True, null=True)
    previous_last_four = CharField(max_length=4, null=True)
    previous_expires_at = DateTimeField(null=True)
    allowed_ips = TextField(null=True)  # comma-separated networks (CIDR); NULL: from anywhere
    rate_limit = CharField(max_length=40, null=True)  # a `limits` string below the installation's; NULL: that one
    expiry_capped_at = DateTimeField(null=True)  # when a tightened workspace policy shortened its expiry

    class Meta:
        indexes = ((("workspace", "created_at"), False),)

    @property
    def previous_masked(self) -> str | None:
        return f"pgo_…{self.previous_last_four}" if self.previous_last_four else None

    @property
    def allowed_ip_list(self) -> list[str]:
        return [p for p in (self.allowed_ips or "").split(",") if p]

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


class OAuthClient(BaseModel):
    """An application that may ask for access through OAuth.

    ``kind`` says how Poggio knows it: ``dynamic`` (registered through RFC 7591), ``metadata`` (its
    ``client_id`` is the https URL of a Client ID Metadata Document, fetched and cached) or
    ``confidential`` (created by a workspace admin for the ``client_credentials`` grant; bound to that
    workspace and its packs). A client secret is stored only as a digest, like an API token."""

    client_id = CharField(max_length=500, unique=True)
    kind = CharField(max_length=16)
    name = CharField(max_length=200)
    metadata = TextField(default="{}")  # the registered or fetched client metadata, as JSON
    secret_digest = CharField(max_length=64, null=True)
    secret_last_four = CharField(max_length=4, null=True)
    workspace = ForeignKeyField(Workspace, null=True, backref="oauth_clients", on_delete="CASCADE")
    workspace_id: ForeignKeyField[int | None]  # the raw id (peewee adds it)
    packs = TextField(null=True)
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = DateTimeField(default=utcnow)
    metadata_expires_at = DateTimeField(null=True)  # a metadata document is fetched again after this
    revoked_at = DateTimeField(null=True)
    revoked_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    application_type = CharField(max_length=16, null=True)  # web or native (poggio.identity.client_metadata)

    class Meta:
        table_name = "oauth_client"
        indexes = ((("kind", "created_at"), False),)  # the registered apps never approved, oldest first


class OAuthGrant(BaseModel):
    """A connected app: one approval of a client by a workspace admin (or a confidential client's
    standing permission), with the packs it may use. Every OAuth token belongs to one grant, and
    revoking the grant ends them all."""

    workspace = ForeignKeyField(Workspace, backref="oauth_grants", on_delete="CASCADE")
    workspace_id: ForeignKeyField[int]
    client = ForeignKeyField(OAuthClient, backref="grants", on_delete="CASCADE")
    client_id: ForeignKeyField[int]
    user = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")  # who approved it
    user_id: ForeignKeyField[int | None]  # the raw id (peewee adds it)
    packs = TextField()  # comma-separated pack names
    tools = TextField(null=True)  # comma-separated tool names it is narrowed to; NULL: every tool of its packs
    resource = CharField(max_length=500)  # the MCP server URL its tokens are bound to (RFC 8707)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    revoked_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    revoked_reason = CharField(max_length=64, null=True)
    expiry_capped_at = DateTimeField(null=True)  # when a tightened workspace policy shortened its expiry
    last_used_at = DateTimeField(null=True)
    last_used_ip = CharField(max_length=45, null=True)
    last_used_client = CharField(max_length=200, null=True)
    # a member's request (poggio.identity.app_access): NULL for an admin's approval; "pending" until an admin
    # decides (its tokens are refused with approval_pending), then "approved" or "denied" (and revoked)
    approval = CharField(max_length=8, null=True)
    decided_at = DateTimeField(null=True)
    decided_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "oauth_grant"
        indexes = ((("workspace", "created_at"), False),)


class OAuthCode(BaseModel):
    """An authorization code between consent and the token request: single use, minutes long."""

    digest = CharField(max_length=64, unique=True)
    client = ForeignKeyField(OAuthClient, on_delete="CASCADE", backref="+")
    client_id: ForeignKeyField[int]
    user = ForeignKeyField(User, on_delete="CASCADE", backref="+")
    user_id: ForeignKeyField[int]
    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
    workspace_id: ForeignKeyField[int]
    packs = TextField()
    tools = TextField(null=True)  # the consent's narrowing to named tools, copied to its grant
    redirect_uri = TextField()
    resource = CharField(max_length=500)
    code_challenge = CharField(max_length=128)
    code_challenge_method = CharField(max_length=8)
    grant_expires_at = DateTimeField(null=True)  # how long the approved access lasts
    approval = CharField(max_length=8, null=True)  # "pending": a member's request, copied to its grant
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    used_at = DateTimeField(null=True)
    grant = ForeignKeyField(OAuthGrant, null=True, on_delete="CASCADE", backref="+")  # set when exchanged
    grant_id: ForeignKeyField[int | None]  # the raw id (peewee adds it)

    class Meta:
        table_name = "oauth_code"


class OAuthToken(BaseModel):
    """One access token (and the refresh token issued with it) of a grant; digests only.

    A refresh token is spent when used (rotation): ``refreshed_at`` is set, and presenting it again
    revokes the whole grant, unless within the refresh grace (then the pair it was exchanged for is
    answered again)."""

    grant = ForeignKeyField(OAuthGrant, backref="tokens", on_delete="CASCADE")
    grant_id: ForeignKeyField[int]
    access_digest = CharField(max_length=64, unique=True)
    refresh_digest = CharField(max_length=64, unique=True, null=True)
    created_at = DateTimeField(default=utcnow)
    access_expires_at = DateTimeField()
    refreshed_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    # the pair issued when this refresh token was spent, sealed with a key only that refresh token
    # gives, for the refresh grace (poggio.identity.oauth.OAuthService.rotate); cleared when the grace is over
    grace_sealed = TextField(null=True)

    class Meta:
        table_name = "oauth_token"


class OAuthAssertion(BaseModel):
    """A client assertion (``private_key_jwt``) seen at the token endpoint, kept until it expires: its
    ``jti`` presented again is a replay and refused, in every portal worker alike. Keyed by a digest
    of the client and the ``jti``, which are the client's to choose."""

    digest = CharField(max_length=64, unique=True)
    expires_at = DateTimeField(index=True)

    class Meta:
        table_name = "oauth_assertion"


class GrantUsage(BaseModel):
    """Calls of one connected app on one day to one tool (or MCP method), as TokenUsage for tokens."""

    grant = ForeignKeyField(OAuthGrant, backref="usage", on_delete="CASCADE")
    day = DateField()
    tool = CharField(max_length=100)
    calls = IntegerField(default=0)
    errors = IntegerField(default=0)

    class Meta:
        indexes = ((("grant", "day", "tool"), True),)


class Activity(BaseModel):
    """One authenticated MCP request: who (an API token, ``kind="token"``, or an OAuth grant,
    ``"grant"``, by ``subject_id``), when, which tool or method, how it ended, how long it took, from
    which client and address. Written in batches by :class:`poggio.records.usage.UsageRecorder`, kept for
    ``POGGIO_ACTIVITY_RETENTION_DAYS``. Every read is newest first over one of the indexes below."""

    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+", index=False)
    kind = CharField(max_length=8)
    subject_id = IntegerField()
    at = DateTimeField()  # with microseconds
    tool = CharField(max_length=100)
    outcome = CharField(max_length=16)  # ok, tool_error, refused, rate_limited, timed_out
    latency_ms = FloatField(default=0)
    client = CharField(max_length=200, null=True)
    ip = CharField(max_length=45, null=True)

    class Meta:
        indexes = (
            (("workspace", "at"), False),
            (("workspace", "tool", "at"), False),
            (("workspace", "outcome", "at"), False),
            (("kind", "subject_id", "at"), False),
            (("kind", "subject_id", "tool", "at"), False),
            (("kind", "subject_id", "outcome", "at"), False),
        )


class IdempotencyKey(BaseModel):
    """A write tool's answer kept under the caller's ``idempotency_key``, per workspace: a retry with
    the same key and arguments gets it again and writes nothing (:mod:`poggio.runtime.writes`)."""

    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
    key = CharField(max_length=200)
    tool = CharField(max_length=64)
    fingerprint = CharField(max_length=64)  # SHA-256 of the tool's name and arguments
    result = TextField(default="")  # {"text": ..., "data": ...} as JSON
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "idempotency_key"
        indexes = ((("workspace", "key"), True), (("workspace", "created_at"), False))
