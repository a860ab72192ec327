"""SCIM 2.0 provisioning in the core (RFC 7643, 7644): the bearer tokens an admin gives a
workspace's identity provider, the Users and Groups it manages, and what provisioning does to
Poggio's users.

- A SCIM token is shown once and stored as a digest, like an API token (prefix ``pgsc_``).
- A SCIM User is a Poggio user's membership of the workspace; its ``userName`` (or primary e-mail)
  is the user's e-mail. The whole SCIM document is kept (``scim_user.document``) so what the
  provider wrote is what it reads back.
- A SCIM Group maps to a role: members of the group named like the workspace's admin group
  (Settings > Sign-in, else ``admins``) are admins; everyone else provisioned is a member.
- Deprovisioning (``active: false`` or delete) is immediate: the membership ends, every portal
  session of the user ends, and the OAuth grants they approved in the workspace are revoked, all
  before the SCIM answer. API tokens they created belong to the workspace and keep working, but
  are flagged for an admin's review (:class:`TokenReview`). The audit log names the user and the
  SCIM client (the token's name).

The protocol (parsing, filters, patches, errors) is :mod:`portal.scim`'s, with ``scim2-models``.
"""

from __future__ import annotations

import json

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegrityError, TextField

from poggio.errors import InvalidInput
from poggio.identity import id_jag, sessions
from poggio.records import audit
from poggio.records.audit import Actor
from poggio.security.token_format import digest, generate, well_formed
from poggio.storage.db import BaseModel, tuple_rows, utcnow, writing
from poggio.storage.models import ApiToken, Membership, OAuthGrant, User, Workspace

PREFIX = "pgsc_"
DEFAULT_ADMIN_GROUP = "admins"


class ScimToken(BaseModel):
    """A SCIM client's bearer token (its digest), for one workspace."""

    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
    workspace_id: ForeignKeyField[int]
    name = CharField(max_length=100)
    digest = CharField(max_length=64, unique=True)
    last_four = CharField(max_length=4)
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)

    class Meta:
        table_name = "scim_token"


class ScimUser(BaseModel):
    """A user as the workspace's SCIM client provisioned them."""

    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
    workspace_id: ForeignKeyField[int]
    user = ForeignKeyField(User, on_delete="CASCADE", backref="+")
    user_id: ForeignKeyField[int]
    user_name = CharField(max_length=254)  # lower case: SCIM's userName is not case-exact
    external_id = CharField(max_length=254, null=True)
    active = BooleanField(default=True)
    document = TextField(default="{}")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "scim_user"
        indexes = ((("workspace", "user"), True), (("workspace", "user_name"), True))


class ScimGroup(BaseModel):
    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
    workspace_id: ForeignKeyField[int]
    display_name = CharField(max_length=254)
    external_id = CharField(max_length=254, null=True)
    document = TextField(default="{}")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "scim_group"
        indexes = ((("workspace", "display_name"), True),)


class TokenReview(BaseModel):
    """An API token whose creator was deprovisioned: it keeps working, and an admin should look at it."""

    token = ForeignKeyField(ApiToken, unique=True, on_delete="CASCADE", backref="+")
    token_id: ForeignKeyField[int]
    reason = CharField(max_length=254)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "token_review"


class Conflict(Exception):
    """A uniqueness conflict (SCIM 409 ``uniqueness``)."""


# -- tokens ----------------------------------------------------------------------------------
def create_token(workspace: Workspace, actor: Actor, name: str = "SCIM", pepper: str | None = None) -> str:
    """A new SCIM token for ``workspace``; the plaintext is returned once and never stored."""
    name = " ".join((name or "").split())[:100] or "SCIM"
    token = generate(PREFIX)
    with writing():
        ScimToken.create(
            workspace=workspace, name=name, digest=digest(token, pepper), last_four=token[-4:], created_by=actor.user
        )
        audit.record("scim.token_created", actor, workspace, target=name)
    return token


def verify_token(presented: str | None, pepper: str | None = None) -> ScimToken | None:
    if not presented or not well_formed(presented, PREFIX):
        return None
    row = (
        ScimToken.select(ScimToken, Workspace)
        .join(Workspace)
        .where((ScimToken.digest == digest(presented, pepper)) & ScimToken.revoked_at.is_null())
        .first()
    )
    if row is not None and (row.last_used_at is None or (utcnow() - row.last_used_at).total_seconds() > 60):
        ScimToken.update(last_used_at=utcnow()).where(ScimToken.id == row.id).execute()
    return row


def revoke_token(token: ScimToken, actor: Actor) -> None:
    with writing():
        ScimToken.update(revoked_at=utcnow()).where(ScimToken.id == token.id).execute()
        audit.record("scim.token_revoked", actor, token.workspace_id, target=token.name)


def client_actor(token: ScimToken, ip: str | None = None) -> Actor:
    return Actor(label=f"scim: {token.name}", ip=ip)


# -- users -----------------------------------------------------------------------------------
def email_of(document: dict) -> str:
    """The e-mail a SCIM User stands for: its ``userName`` when that is an address, else its primary
    (or first) ``emails`` value, else its ``userName`` as it is."""
    from poggio.identity.workspaces import EMAIL

    user_name = str(document.get("userName") or "").strip().lower()
    if EMAIL.match(user_name):
        return user_name
    emails = [e for e in document.get("emails") or [] if isinstance(e, dict) and e.get("value")]
    emails.sort(key=lambda e: not e.get("primary"))
    for entry in emails:
        value = str(entry["value"]).strip().lower()
        if EMAIL.match(value):
            return value
    # no address at all: the userName is the user's identifier (single sign-on matches them by the
    # provider's subject once they have signed in)
    if not user_name or len(user_name) > 254:
        raise InvalidInput("userName", "each user needs a userName of at most 254 characters")
    return user_name


def _role(workspace: Workspace, user: User) -> str:
    """The role the workspace's SCIM groups give ``user``."""
    from poggio.identity.sso import provider_of

    provider = provider_of(workspace)
    admin_name = provider.admin_group if provider is not None and provider.admin_group else DEFAULT_ADMIN_GROUP
    group = ScimGroup.get_or_none((ScimGroup.workspace == workspace) & (ScimGroup.display_name == admin_name))
    if group is None:
        return "member"
    scim_user = ScimUser.get_or_none((ScimUser.workspace == workspace) & (ScimUser.user == user))
    ids = {str(m.get("value")) for m in json.loads(group.document).get("members") or [] if isinstance(m, dict)}
    return "admin" if scim_user is not None and str(scim_user.id) in ids else "member"


def _display_name(document: dict) -> str:
    name = document["name"] if isinstance(document.get("name"), dict) else {}
    return str(
        document.get("displayName")
        or name.get("formatted")
        or " ".join(p for p in (name.get("givenName"), name.get("familyName")) if p)
        or ""
    )[:200]


def provision(workspace: Workspace, document: dict, actor: Actor) -> ScimUser:
    """Create the SCIM User ``document`` describes: a new Poggio user, or an existing one added to
    the workspace. Conflict when the workspace has a SCIM User of that userName already."""
    from poggio.identity.workspaces import unusable_password_hash

    email = email_of(document)
    user_name = str(document.get("userName") or email)[:254].lower()
    active = document.get("active", True) is not False
    with writing():
        if ScimUser.select().where((ScimUser.workspace == workspace) & (ScimUser.user_name == user_name)).exists():
            raise Conflict(f"A user with userName {user_name!r} exists already")
        user = User.get_or_none(User.email == email)
        if (
            user is not None
            and Membership.select().where(Membership.user == user).exists()
            and not Membership.select().where((Membership.user == user) & (Membership.workspace == workspace)).exists()
        ):
            # an account of other workspaces only: this workspace's SCIM client may not take it over
            raise Conflict(
                f"An account with the e-mail {email} exists in another workspace; an admin of this "
                "workspace must add it first"
            )
        if user is None:
            user = User.create(
                email=email, name=_display_name(document) or email.split("@")[0], password_hash=unusable_password_hash()
            )
        elif ScimUser.select().where((ScimUser.workspace == workspace) & (ScimUser.user == user)).exists():
            raise Conflict(f"A user with the e-mail {email} exists already")
        try:
            row = ScimUser.create(
                workspace=workspace,
                user=user,
                user_name=user_name,
                active=active,
                external_id=document.get("externalId"),
                document=json.dumps(document),
            )
        except IntegrityError:
            raise Conflict(f"A user with userName {user_name!r} exists already") from None
        if active:
            _activate(workspace, user)
        audit.record("scim.user_provisioned", actor, workspace, target=email, scim_id=row.id, active=active)
        if not active:
            _deprovision(workspace, user, actor, "provisioned inactive")
    return row


def _activate(workspace: Workspace, user: User) -> None:
    membership = Membership.get_or_none((Membership.user == user) & (Membership.workspace == workspace))
    if membership is None:
        Membership.create(user=user, workspace=workspace, role=_role(workspace, user))
    if not user.is_active:
        User.update(is_active=True).where(User.id == user.id).execute()
        user.is_active = True


def replace(row: ScimUser, document: dict, actor: Actor) -> ScimUser:
    """Replace the SCIM User's document (PUT, or the result of a PATCH) and apply what changed:
    the e-mail, the name, ``active``."""
    email = email_of(document)
    user_name = str(document.get("userName") or email)[:254].lower()
    active = document.get("active", True) is not False
    workspace = Workspace.get_by_id(row.workspace_id)
    with writing():
        clash = ScimUser.get_or_none((ScimUser.workspace == workspace) & (ScimUser.user_name == user_name))
        if clash is not None and clash.id != row.id:
            raise Conflict(f"A user with userName {user_name!r} exists already")
        user = User.get_by_id(row.user_id)
        changes = {}
        shared = Membership.select().where((Membership.user == user) & (Membership.workspace != workspace)).exists()
        if shared and (email != user.email):
            # the account is also another workspace's: this workspace's SCIM client may not rename it
            raise InvalidInput(
                "userName",
                "this user's account also belongs to another workspace: its e-mail cannot be changed from here",
            )
        if email != user.email:
            if User.select().where((User.email == email) & (User.id != user.id)).exists():
                raise Conflict(f"Another user has the e-mail {email}")
            changes["email"] = email
        name = _display_name(document)
        if name and name != user.name and not shared:
            changes["name"] = name
        if changes:
            User.update(changes).where(User.id == user.id).execute()
        was_active = row.active
        ScimUser.update(
            user_name=user_name,
            external_id=document.get("externalId"),
            active=active,
            document=json.dumps(document),
            updated_at=utcnow(),
        ).where(ScimUser.id == row.id).execute()
        audit.record(
            "scim.user_updated",
            actor,
            workspace,
            target=email,
            scim_id=row.id,
            **({"changed": sorted(changes)} if changes else {}),
            active=active,
        )
        if was_active and not active:
            _deprovision(workspace, user, actor, "active set to false")
        elif active and not was_active:
            _activate(workspace, User.get_by_id(user.id))
    return ScimUser.get_by_id(row.id)


def delete(row: ScimUser, actor: Actor) -> None:
    workspace = Workspace.get_by_id(row.workspace_id)
    user = User.get_by_id(row.user_id)
    with writing():
        ScimUser.delete().where(ScimUser.id == row.id).execute()
        _deprovision(workspace, user, actor, "deleted")


def _deprovision(workspace: Workspace, user: User, actor: Actor, why: str) -> None:
    """End the user's membership, sessions and approved grants in ``workspace``; flag their API tokens."""
    now = utcnow()
    Membership.delete().where((Membership.user == user) & (Membership.workspace == workspace)).execute()
    ended = sessions.end_all(user)
    revoked = (
        OAuthGrant.update(revoked_at=now, revoked_reason="approver deprovisioned")
        .where((OAuthGrant.user == user.id) & (OAuthGrant.workspace == workspace.id) & OAuthGrant.revoked_at.is_null())
        .execute()
    )
    revoked += id_jag.revoke_for_user(workspace, user, "employee deprovisioned")  # apps acting for them
    tokens = list(
        ApiToken.select().where(
            (ApiToken.workspace == workspace) & (ApiToken.created_by == user.id) & ApiToken.revoked_at.is_null()
        )
    )
    for token in tokens:
        if not TokenReview.select().where(TokenReview.token == token.id).exists():
            TokenReview.create(token=token, reason=f"its creator {user.email} was deprovisioned by {actor.label}"[:254])
            audit.record(
                "token.flagged_for_review", actor, workspace, target=token.name, token_id=token.id, creator=user.email
            )
    if not Membership.select().where(Membership.user == user).exists():
        User.update(is_active=False).where(User.id == user.id).execute()
    audit.record(
        "scim.user_deprovisioned",
        actor,
        workspace,
        target=user.email,
        why=why,
        sessions_ended=ended,
        grants_revoked=revoked,
        tokens_flagged=len(tokens),
    )


def flagged_tokens(workspace: Workspace) -> dict[int, TokenReview]:
    """The workspace's API tokens flagged for review, by token id."""
    rows = TokenReview.select(TokenReview).join(ApiToken).where(ApiToken.workspace == workspace)
    return {r.token_id: r for r in rows}


def clear_review(workspace: Workspace, token_id: int, actor: Actor) -> bool:
    with writing():
        found = (
            TokenReview.select(TokenReview, ApiToken)
            .join(ApiToken)
            .where((ApiToken.workspace == workspace) & (TokenReview.token == token_id))
            .first()
        )
        if found is None:
            return False
        TokenReview.delete().where(TokenReview.id == found.id).execute()
        audit.record("token.review_cleared", actor, workspace, target=found.token.name, token_id=token_id)
    return True


# -- groups ----------------------------------------------------------------------------------
def _member_ids(document: dict) -> list[str]:
    return [str(m.get("value")) for m in document.get("members") or [] if isinstance(m, dict) and m.get("value")]


def _apply_roles(workspace: Workspace, scim_ids: set[str]) -> None:
    """Set the role of each provisioned, active user of ``scim_ids`` from the groups."""
    for row in ScimUser.select().where(
        (ScimUser.workspace == workspace) & ScimUser.active & ScimUser.id.in_([int(i) for i in scim_ids if i.isdigit()])
    ):
        role = _role(workspace, User.get_by_id(row.user_id))
        Membership.update(role=role).where(
            (Membership.user == row.user_id) & (Membership.workspace == workspace) & (Membership.role != role)
        ).execute()


def save_group(workspace: Workspace, document: dict, actor: Actor, row: ScimGroup | None = None) -> ScimGroup:
    name = str(document.get("displayName") or "").strip()[:254]
    if not name:
        raise InvalidInput("displayName", "a group needs a displayName")
    known = {str(i) for (i,) in tuple_rows(ScimUser.select(ScimUser.id).where(ScimUser.workspace == workspace))}
    unknown = [m for m in _member_ids(document) if m not in known]
    if unknown:
        raise InvalidInput("members", f"no user {unknown[0]!r} in this workspace")
    with writing():
        before = set(_member_ids(json.loads(row.document))) if row is not None else set()
        try:
            if row is None:
                row = ScimGroup.create(
                    workspace=workspace,
                    display_name=name,
                    external_id=document.get("externalId"),
                    document=json.dumps(document),
                )
            else:
                ScimGroup.update(
                    display_name=name,
                    external_id=document.get("externalId"),
                    document=json.dumps(document),
                    updated_at=utcnow(),
                ).where(ScimGroup.id == row.id).execute()
                row = ScimGroup.get_by_id(row.id)
        except IntegrityError:
            raise Conflict(f"A group named {name!r} exists already") from None
        _apply_roles(workspace, before | set(_member_ids(document)))
        audit.record("scim.user_updated", actor, workspace, target=f"group {name}", members=len(_member_ids(document)))
    return row


def delete_group(row: ScimGroup, actor: Actor) -> None:
    workspace = Workspace.get_by_id(row.workspace_id)
    with writing():
        members = set(_member_ids(json.loads(row.document)))
        ScimGroup.delete().where(ScimGroup.id == row.id).execute()
        _apply_roles(workspace, members)
        audit.record("scim.user_updated", actor, workspace, target=f"group {row.display_name}", deleted=True)
