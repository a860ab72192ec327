"""Enterprise-Managed Authorization in the core: the grants a workspace's identity provider made by
ID-JAG (an Identity Assertion JWT Authorization Grant, presented with the RFC 7523 jwt-bearer
grant), for whom, and what they may do.

An ID-JAG says "this employee lets this app act for them at Poggio"; the app is a confidential
OAuth client an admin provisioned for the jwt-bearer grant (``poggio oauth client create --grant
jwt-bearer``). No consent page: what the app may do is the client's packs (the workspace's app
policy, set by the admin who provisioned it), read only for an employee who is a member, as they
are for an admin. Each (client, employee) pair has one connected app, listed under Connected apps
as *managed by your identity provider*, revocable and on the activity record like any other.

The grant has no approver (``OAuthGrant.user`` is empty, as a client_credentials grant's): the
employee it acts for is kept here, so deprovisioning them (SCIM) revokes it at once.
The assertion's checks (signature, issuer, audience, resource, client, expiry, replay, subject)
are :mod:`portal.id_jag`'s; the employee it names is found by :func:`poggio.identity.sso.user_for_assertion`.
"""

from __future__ import annotations

from peewee import CharField, DateTimeField, ForeignKeyField

from poggio.identity import policy, scopes
from poggio.records import audit
from poggio.records.audit import Actor
from poggio.storage.db import BaseModel, utcnow, writing
from poggio.storage.models import OAuthClient, OAuthGrant, User, Workspace

MANAGED_REASON = "managed by your identity provider"


class ManagedGrant(BaseModel):
    """A connected app the workspace's identity provider made (by ID-JAG) for one employee."""

    grant = ForeignKeyField(OAuthGrant, unique=True, on_delete="CASCADE", backref="+")
    grant_id: ForeignKeyField[int]
    user = ForeignKeyField(User, on_delete="CASCADE", backref="+")
    issuer = CharField(max_length=500)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "managed_grant"


class Refused(Exception):
    """An ID-JAG that cannot be honoured: ``message`` for the app's developer and the audit log."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def packs_for(client: OAuthClient, role: str) -> str:
    """What the app may do for an employee of ``role``: the client's packs; a member's read only."""
    levels = scopes.parse(client.packs) or {}
    if role != "admin":
        levels = {p: scopes.READ for p in levels}
    return scopes.format_levels(levels) or ""


def grant_for(client: OAuthClient, user: User, role: str, issuer: str, resource: str, ip: str | None) -> OAuthGrant:
    """The connected app of ``client`` for ``user``: the live one (its packs brought to what the
    employee's role allows now), or a new one."""
    packs = packs_for(client, role)
    if not packs:
        raise Refused("This app's client has no tool packs to grant.")
    workspace = Workspace.get_by_id(client.workspace_id)
    now = utcnow()
    with writing():
        found = (
            OAuthGrant.select()
            .join(ManagedGrant, on=(ManagedGrant.grant == OAuthGrant.id))
            .where(
                (OAuthGrant.client == client.id)
                & (ManagedGrant.user == user.id)
                & OAuthGrant.revoked_at.is_null()
                & (OAuthGrant.expires_at.is_null() | (OAuthGrant.expires_at > now))
            )
            .order_by(OAuthGrant.id.desc())
            .first()
        )
        if found is not None:
            if found.packs != packs or found.resource != resource:
                OAuthGrant.update(packs=packs, resource=resource).where(OAuthGrant.id == found.id).execute()
                found.packs, found.resource = packs, resource
            return found
        grant = OAuthGrant.create(
            workspace=workspace,
            client=client,
            user=None,
            packs=packs,
            resource=resource,
            expires_at=policy.cap(workspace, None),
        )
        ManagedGrant.create(grant=grant, user=user, issuer=issuer[:500])
        audit.record(
            "oauth.id_jag_accepted",
            Actor(label=f"identity provider: {issuer}"[:254], ip=ip),
            workspace,
            target=client.name,
            client_id=client.client_id,
            grant_id=grant.id,
            user=user.email,
            packs=packs,
        )
    return grant


def managed(grant_ids) -> dict[int, ManagedGrant]:
    """The managed grants among ``grant_ids``, with their employee, by grant id."""
    ids = list(grant_ids)
    if not ids:
        return {}
    rows = ManagedGrant.select(ManagedGrant, User).join(User).where(ManagedGrant.grant.in_(ids))
    return {r.grant_id: r for r in rows}


def revoke_for_user(workspace: Workspace | int, user: User | int, reason: str) -> int:
    """Revoke every live connected app the identity provider made for ``user`` in ``workspace``."""
    ids = ManagedGrant.select(ManagedGrant.grant).where(ManagedGrant.user == user)
    return (
        OAuthGrant.update(revoked_at=utcnow(), revoked_reason=reason[:64])
        .where(OAuthGrant.id.in_(ids) & (OAuthGrant.workspace == workspace) & OAuthGrant.revoked_at.is_null())
        .execute()
    )


def follow_role(workspace: Workspace | int, user: User | int, role: str) -> int:
    """Bring the live connected apps the identity provider made for ``user`` to what ``role`` allows
    (a demoted admin's apps lose write at once: the MCP server reads a grant's packs on every request)."""
    count = 0
    rows = (
        OAuthGrant.select(OAuthGrant, OAuthClient)
        .join(OAuthClient)
        .join(ManagedGrant, on=(ManagedGrant.grant == OAuthGrant.id))
        .where((ManagedGrant.user == user) & (OAuthGrant.workspace == workspace) & OAuthGrant.revoked_at.is_null())
    )
    for grant in rows:
        packs = packs_for(grant.client, role)
        if packs != grant.packs:
            count += OAuthGrant.update(packs=packs).where(OAuthGrant.id == grant.id).execute()
    return count
