"""Single sign-on through a workspace's OpenID Connect provider: its configuration, who signed in
through it, how a provider's role claim maps to a Poggio role, and the "require single sign-on"
switch with its break-glass exception.

The protocol itself (discovery, the authorization code flow with PKCE and a nonce, the ID token's
verification) is :mod:`portal.sso`'s; this module is what is stored and decided, so the CLI and the
portal agree. The provider's client secret is never stored in plaintext: it is either read at run
time from the environment variable the admin named (``--client-secret-env``), or kept sealed (JWE,
``dir`` + ``A256GCM``) with a key derived from ``POGGIO_SECRET_KEY``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, TextField

from poggio.errors import InvalidInput
from poggio.identity import id_jag
from poggio.records import audit
from poggio.records.audit import Actor
from poggio.security import sealing
from poggio.storage.db import BaseModel, utcnow, writing
from poggio.storage.models import Membership, User, Workspace

DEFAULT_SCOPES = "openid email profile"
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


class SsoProvider(BaseModel):
    """A workspace's OpenID Connect provider (one per workspace)."""

    workspace = ForeignKeyField(Workspace, unique=True, on_delete="CASCADE", backref="+")
    issuer = CharField(max_length=500)
    client_id = CharField(max_length=500)
    client_secret_env = CharField(max_length=100, null=True)  # read from this environment variable, or
    client_secret_sealed = TextField(null=True)  # sealed with a key derived from POGGIO_SECRET_KEY
    scopes = CharField(max_length=500, default=DEFAULT_SCOPES)
    domains = TextField(default="")  # comma-separated e-mail domains, lower case
    role_claim = CharField(max_length=100, default="groups")
    admin_group = CharField(max_length=200, null=True)
    member_group = CharField(max_length=200, null=True)
    require_sso = BooleanField(default=False)
    trust_id_jag = BooleanField(default=False)  # accept ID-JAGs this issuer signs (poggio.identity.id_jag)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "sso_provider"

    @property
    def domain_list(self) -> list[str]:
        return [d for d in (self.domains or "").split(",") if d]

    @property
    def label(self) -> str:
        """What the sign-in button names: the provider's host."""
        return urlsplit(self.issuer).hostname or self.issuer


class SsoIdentity(BaseModel):
    """A user as a workspace's provider knows them (its ``sub``), and when they last signed in through it."""

    workspace = ForeignKeyField(Workspace, on_delete="CASCADE", backref="+")
    user = ForeignKeyField(User, on_delete="CASCADE", backref="+")
    user_id: ForeignKeyField[int]
    subject = CharField(max_length=255)
    created_at = DateTimeField(default=utcnow)
    last_signed_in_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "sso_identity"
        indexes = ((("workspace", "subject"), True), (("workspace", "user"), True))


class SsoError(Exception):
    """Single sign-on cannot go on; ``message`` is for the person, ``reason`` for the audit log."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason or message


# -- configuration ---------------------------------------------------------------------------
SEALED_FOR = b"poggio sso client secret"  # the sealing purpose of a provider's client secret


def seal_secret(secret: str, secret_key: str) -> str:
    return sealing.seal(secret, secret_key, SEALED_FOR)


def client_secret(provider: SsoProvider, secret_key: str, env: Mapping[str, str] | None = None) -> str:
    """The provider's client secret: from its environment variable, or unsealed; SsoError if neither."""
    env = os.environ if env is None else env
    if provider.client_secret_env:
        value = env.get(provider.client_secret_env)
        if not value:
            raise SsoError(
                f"Single sign-on is not set up completely: the client secret is read from the "
                f"environment variable {provider.client_secret_env}, which this server does not have.",
                f"client secret variable {provider.client_secret_env} not set",
            )
        return value
    if provider.client_secret_sealed:
        try:
            return sealing.unseal(provider.client_secret_sealed, secret_key, SEALED_FOR)
        except sealing.Unsealable:
            raise SsoError(
                "Single sign-on is not set up completely: the stored client secret cannot be read "
                "(POGGIO_SECRET_KEY changed since it was saved). An admin must enter it again.",
                "sealed client secret unreadable",
            ) from None
    raise SsoError("Single sign-on is not set up completely: it has no client secret.", "no client secret")


def provider_of(workspace: Workspace | int) -> SsoProvider | None:
    return SsoProvider.get_or_none(SsoProvider.workspace == workspace)


def providers_for_email(email: str) -> list[SsoProvider]:
    """The providers of the workspaces whose allowed domains include the e-mail's domain."""
    domain = (email or "").strip().lower().rpartition("@")[2]
    if not domain:
        return []
    rows = SsoProvider.select(SsoProvider, Workspace).join(Workspace).where(SsoProvider.domains.contains(domain))
    return [p for p in rows if domain in p.domain_list]


def _clean_domains(domains) -> str:
    found = []
    for raw in domains or ():
        for part in re.split(r"[\s,]+", str(raw)):
            d = part.strip().lower().lstrip("@")
            if not d:
                continue
            if not DOMAIN.match(d):
                raise InvalidInput("domains", f"{part!r} is not an e-mail domain (e.g. example.com)")
            if d not in found:
                found.append(d)
    return ",".join(found)


def check_issuer(issuer: str | None) -> str:
    issuer = (issuer or "").strip().rstrip("/")
    parts = urlsplit(issuer)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or (parts.scheme == "http" and not local)
        or parts.query
        or parts.fragment
    ):
        raise InvalidInput("issuer", "the provider's issuer URL: https://…, without query or fragment")
    return issuer


def admin_signed_in_through_sso(workspace: Workspace | int) -> bool:
    """Whether an admin of the workspace has signed in through its provider at least once."""
    return (
        SsoIdentity.select()
        .join(Membership, on=((Membership.user == SsoIdentity.user) & (Membership.workspace == SsoIdentity.workspace)))
        .where((SsoIdentity.workspace == workspace) & (Membership.role == "admin"))
        .exists()
    )


def configure(
    workspace: Workspace,
    actor: Actor,
    *,
    issuer: str,
    client_id: str,
    secret_key: str,
    client_secret: str | None = None,
    client_secret_env: str | None = None,
    domains=None,
    scopes: str | None = None,
    role_claim: str | None = None,
    admin_group: str | None = None,
    member_group: str | None = None,
    require: bool | None = None,
    id_jag: bool | None = None,
) -> SsoProvider:
    """Create or change the workspace's provider. ``None`` keeps a field as it is (a new provider
    takes the defaults). Turning "require single sign-on" on is refused until an admin of the
    workspace has signed in through the provider once, so no one is locked out."""
    issuer = check_issuer(issuer)
    client_id = (client_id or "").strip()
    if not client_id or len(client_id) > 500:
        raise InvalidInput("client_id", "the client ID the provider gave Poggio is required")
    if client_secret_env is not None and client_secret_env != "" and not ENV_NAME.match(client_secret_env):
        raise InvalidInput("client_secret_env", "an environment variable name (letters, digits, underscore)")
    current = provider_of(workspace)
    fields: dict = {"issuer": issuer, "client_id": client_id, "updated_at": utcnow()}
    if client_secret:
        if len(client_secret) > 1000:
            raise InvalidInput("client_secret", "at most 1,000 characters")
        fields.update(client_secret_sealed=seal_secret(client_secret, secret_key), client_secret_env=None)
    elif client_secret_env:
        fields.update(client_secret_env=client_secret_env, client_secret_sealed=None)
    elif current is None or not (current.client_secret_env or current.client_secret_sealed):
        raise InvalidInput(
            "client_secret",
            "the client secret the provider gave Poggio is required (or the "
            "name of the environment variable that holds it)",
        )
    if domains is not None:
        fields["domains"] = _clean_domains(domains)
    if scopes is not None:
        words = scopes.split()
        if "openid" not in words:
            words.insert(0, "openid")
        fields["scopes"] = " ".join(dict.fromkeys(words))[:500]
    if role_claim is not None:
        fields["role_claim"] = role_claim.strip()[:100] or "groups"
    if admin_group is not None:
        fields["admin_group"] = admin_group.strip()[:200] or None
    if member_group is not None:
        fields["member_group"] = member_group.strip()[:200] or None
    if id_jag is not None:
        fields["trust_id_jag"] = bool(id_jag)
    if require is not None:
        if require and not (current is not None and current.require_sso) and not admin_signed_in_through_sso(workspace):
            raise InvalidInput(
                "require",
                "Single sign-on cannot be required yet: no admin of this workspace has "
                "signed in through it. Sign in once with “Sign in with single sign-on” as "
                "an admin, then turn this on, so no one is locked out.",
            )
        fields["require_sso"] = bool(require)
    with writing():
        if current is None:
            provider = SsoProvider.create(workspace=workspace, **fields)
        else:
            SsoProvider.update(fields).where(SsoProvider.id == current.id).execute()
            provider = SsoProvider.get_by_id(current.id)
        shown = {k: v for k, v in fields.items() if k not in ("client_secret_sealed", "updated_at")}
        if "client_secret_sealed" in fields:
            shown["client_secret"] = "changed (sealed)"
        audit.record("sso.configured", actor, workspace, target=issuer, **shown)
    return provider


def remove(workspace: Workspace, actor: Actor) -> bool:
    with writing():
        gone = SsoProvider.delete().where(SsoProvider.workspace == workspace).execute()
        if gone:
            audit.record("sso.removed", actor, workspace, target=workspace.slug)
    return bool(gone)


# -- sign-in ---------------------------------------------------------------------------------
def password_allowed(user: User, break_glass: tuple[str, ...] | list[str]) -> bool:
    """False when one of the user's workspaces requires single sign-on, unless the user is one of the
    installation's break-glass admins (``POGGIO_SSO_BREAK_GLASS``)."""
    if user.email.lower() in {e.strip().lower() for e in break_glass}:
        return True
    return not (
        SsoProvider.select()
        .join(Membership, on=(Membership.workspace == SsoProvider.workspace))
        .where((Membership.user == user.id) & (SsoProvider.require_sso == True))  # noqa: E712
        .exists()
    )


def mapped_role(provider: SsoProvider, claims: dict) -> str | None:
    """The role the provider's claims give: ``admin`` when the role claim holds the admin group;
    ``member`` when it holds the member group, or when no member group is set; None (no access) when
    a member group is set and the claim holds neither."""
    value = claims.get(provider.role_claim or "groups")
    held = {str(v) for v in value} if isinstance(value, list) else ({str(value)} if value not in (None, "") else set())
    if provider.admin_group and provider.admin_group in held:
        return "admin"
    if provider.member_group:
        return "member" if provider.member_group in held else None
    return "member"


@dataclass(frozen=True)
class SignedIn:
    user: User
    role: str
    created: bool
    role_before: str | None


def sign_in(provider: SsoProvider, claims: dict, ip: str | None = None) -> SignedIn:
    """The user the verified ID token's ``claims`` stand for, created on first sign-in (just in time)
    with the mapped role, updated on every sign-in (name, role). Refused (SsoError) for an e-mail
    outside the allowed domains, an unverified e-mail, or claims that grant no role."""
    from poggio.identity.workspaces import EMAIL, unusable_password_hash

    workspace = provider.workspace
    subject = str(claims.get("sub") or "")
    email = str(claims.get("email") or "").strip().lower()
    if not subject:
        raise SsoError("The identity provider did not say who signed in (no 'sub').", "no sub claim")
    if not EMAIL.match(email):
        raise SsoError(
            "The identity provider did not give an e-mail address for your account; ask your "
            "administrator to release the 'email' claim to Poggio.",
            "no email claim",
        )
    if claims.get("email_verified") is False:
        raise SsoError("Your identity provider says your e-mail address is not verified.", "email not verified")
    domain = email.rpartition("@")[2]
    if provider.domain_list and domain not in provider.domain_list:
        raise SsoError(
            f"Accounts of {domain} cannot sign in to this workspace; it allows {', '.join(provider.domain_list)}.",
            f"domain {domain} not allowed",
        )
    role = mapped_role(provider, claims)
    if role is None:
        raise SsoError(
            "Your identity provider does not give you access to this workspace (you are in none of "
            "the groups it maps to Poggio's roles). Ask your administrator.",
            f"no group of claim {provider.role_claim!r} maps to a role",
        )
    actor = Actor(label=f"sso: {provider.label}", ip=ip)
    name = str(claims.get("name") or "")[:200]
    with writing():
        identity = SsoIdentity.get_or_none((SsoIdentity.workspace == workspace) & (SsoIdentity.subject == subject))
        user = User.get_by_id(identity.user_id) if identity is not None else User.get_or_none(User.email == email)
        if (
            identity is None
            and user is not None
            and not Membership.select().where((Membership.user == user) & (Membership.workspace == workspace)).exists()
        ):
            # an account this workspace does not hold: its provider may not sign in as it (a workspace's
            # admin chooses its provider and domains; that must not open other workspaces' accounts)
            raise SsoError(
                "An account with this e-mail address exists already and is not part of this workspace. "
                "Ask your administrator to add it to the workspace first.",
                "existing account outside the workspace",
            )
        created = user is None
        if user is None:
            user = User.create(email=email, name=name or email.split("@")[0], password_hash=unusable_password_hash())
            audit.record("user.provisioned", actor, workspace, target=email, role=role, via="sso")
        elif not user.is_active:
            raise SsoError("Your Poggio account is deactivated. Ask your administrator.", "user deactivated")
        elif name and name != user.name:
            User.update(name=name).where(User.id == user.id).execute()
        membership = Membership.get_or_none((Membership.user == user) & (Membership.workspace == workspace))
        before = membership.role if membership else None
        keep_roles = not provider.admin_group and not provider.member_group  # roles are managed in Poggio
        if membership is None:
            Membership.create(user=user, workspace=workspace, role=role)
        elif before != role and not (keep_roles and before is not None):
            Membership.update(role=role).where(Membership.id == membership.id).execute()
            audit.record(
                "user.role_changed",
                actor,
                workspace,
                target=email,
                before=before,
                after=role,
                reason=f"identity provider claim {provider.role_claim!r}",
            )
            id_jag.follow_role(workspace, user, role)  # apps acting for them by ID-JAG, as they are now
        else:
            role = before
        if identity is None:
            SsoIdentity.delete().where((SsoIdentity.workspace == workspace) & (SsoIdentity.user == user)).execute()
            SsoIdentity.create(workspace=workspace, user=user, subject=subject)
        else:
            SsoIdentity.update(last_signed_in_at=utcnow()).where(SsoIdentity.id == identity.id).execute()
    return SignedIn(user, role, created, before)


def user_for_assertion(workspace: Workspace, subject: str, email: str | None, domains: list[str]) -> tuple[User, str]:
    """The active member of ``workspace`` the assertion's subject names, and their role: by the
    provider's ``sub`` (as single sign-on recorded it), else by its ``email`` claim within the
    provider's allowed domains. Refused otherwise."""
    user = None
    identity = SsoIdentity.get_or_none((SsoIdentity.workspace == workspace) & (SsoIdentity.subject == subject))
    if identity is not None:
        user = User.get_by_id(identity.user_id)
    elif email:
        email = email.strip().lower()
        if not domains or email.rpartition("@")[2] in domains:
            user = User.get_or_none(User.email == email)
    membership = (
        Membership.get_or_none((Membership.user == user) & (Membership.workspace == workspace))
        if user is not None
        else None
    )
    if user is None or membership is None or not user.is_active:
        raise id_jag.Refused(
            "The assertion's subject is not an active user of this workspace: sign them in through "
            "single sign-on once, or provision them by SCIM."
        )
    return user, membership.role
