"""OAuth 2.1 in the core: clients, grants (connected apps), authorization codes, access and refresh
tokens, and the check the MCP server runs on an OAuth access token.

The protocol (endpoints, parameters, error answers) is Authlib's, in the portal; this module is what
it stores and what it checks, and what the CLI and Settings > MCP Server use. Every secret is stored
as a digest, like an API token: access tokens ``pgoa_…``, refresh tokens ``pgor_…`` and client
secrets ``pgos_…`` share the API token's format (random base62 body and checksum) under prefixes of
their own. Verification of an access token is one indexed look-up on every request, as for an API
token: revoking a token, a grant or a client holds on the very next request in every process.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from peewee import JOIN, SQL, IntegrityError, fn

from poggio.errors import InvalidInput, NotFound
from poggio.identity import policy, scopes, switches
from poggio.identity.client_metadata import clean_client_metadata
from poggio.identity.tokens import TokenRejected, VerifiedToken
from poggio.records import audit
from poggio.records.audit import Actor
from poggio.security.token_format import (
    ACCESS_PREFIX,
    CLIENT_SECRET_PREFIX,
    REFRESH_PREFIX,
    digest,
    generate,
    well_formed,
)
from poggio.storage.db import database, delete_in_batches, parse_id, utcnow, writing
from poggio.storage.models import (
    Membership,
    OAuthAssertion,
    OAuthClient,
    OAuthCode,
    OAuthGrant,
    OAuthToken,
    User,
    Workspace,
)
from poggio.storage.prepared import execute

READ = scopes.READ
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"  # RFC 7523; with an ID-JAG (poggio.identity.id_jag)
CLIENT_KINDS = ("dynamic", "metadata", "confidential")
PUBLIC_KINDS = ("dynamic", "metadata")  # the kinds anyone may create, without signing in
SETTLED = dt.timedelta(days=1)  # an expired code, or a token row no longer of use, is kept this long
GRANT_LIFETIMES = {"7": 7, "30": 30, "90": 90, "never": None}  # days an approval lasts
_LIFETIME_LABELS = {"7": "7 days", "30": "30 days", "90": "90 days", "never": "Until revoked"}


def lifetime_choices(workspace: Workspace | None) -> list[tuple[str, str]]:
    """The consent page's "access lasts" choices under ``workspace``'s token policy: none longer than
    its maximum lifetime (which is offered itself when it is not one of the usual choices), and
    "Until revoked" only where tokens without expiry are allowed."""
    rules = policy.Policy.of(workspace) if workspace is not None else None
    choices = []
    for value, days in GRANT_LIFETIMES.items():
        if (
            rules is not None
            and rules.max_lifetime_days is not None
            and (days is None or days > rules.max_lifetime_days)
        ):
            continue
        if rules is not None and days is None and not rules.allow_no_expiry:
            continue
        choices.append((value, _LIFETIME_LABELS[value]))
    if (
        rules is not None
        and rules.max_lifetime_days is not None
        and str(rules.max_lifetime_days) not in GRANT_LIFETIMES
    ):
        choices.append((str(rules.max_lifetime_days), f"{rules.max_lifetime_days} days (this workspace's maximum)"))
    return choices


def lifetime_days(value: str | None, workspace: Workspace) -> int | None:
    """The days an approval lasts for the consent form's ``value``; InvalidInput if the workspace's
    policy does not offer it."""
    offered = dict(lifetime_choices(workspace))
    if value not in offered:
        raise InvalidInput(
            "lifetime", f"Choose how long access lasts (this workspace's policy allows: {', '.join(offered.values())})."
        )
    return GRANT_LIFETIMES.get(value, int(value) if value.isdigit() else None)


def normalise_resource(url: str) -> str:
    """A resource indicator in one spelling: lower-case scheme and host, no fragment, no trailing slash."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}" + (
        f"?{parts.query}" if parts.query else ""
    )


def scope_of(packs) -> str:
    """The OAuth scope of a stored scope text (``accounts:write,contacts``), of ``{pack: level}``, or of
    pack names (read): ``accounts:write contacts:read``."""
    if isinstance(packs, str) or packs is None:
        levels = scopes.parse(packs) or {}
    elif isinstance(packs, dict):
        levels = packs
    else:
        levels = {p: READ for p in packs}
    return scopes.oauth_scope(levels)


def packs_of_scope(scope: str | None, known: set[str]) -> dict[str, str]:
    """``{pack: "read" | "write"}`` a scope string asks for; no scope at all asks to read every known
    pack. An unknown pack, or an access level Poggio does not grant, raises :class:`InvalidInput`."""
    return scopes.of_oauth_scope(scope, known)


def widened(granted: str | None, added: str | None) -> str:
    """The stored scope text of ``granted`` with ``added`` (each pack at the higher of its levels)."""
    return scopes.format_levels(scopes.parse(f"{granted or ''},{added or ''}") or {}) or ""


def metadata_url_trusted(url: str, trusted: tuple[str, ...] | list[str]) -> bool:
    """Whether a Client ID Metadata Document URL may connect under ``POGGIO_OAUTH_TRUSTED_CLIENT_METADATA``:
    any when nothing is listed; else one listed exactly, or under a listed prefix (an entry ending
    in ``/``: ``https://chatgpt.com/`` allows every document on that host, not ``https://chatgpt.com.evil/``)."""
    if not trusted:
        return True
    return any(url == entry or (entry.endswith("/") and url.startswith(entry)) for entry in trusted)


def pack_set(text: str | None) -> frozenset[str]:
    """The packs a stored scope text names, whatever their level."""
    return frozenset(scopes.parse(text) or ())


def _may_hold(role: str | None, approval: str | None, app_access: str | None) -> bool:
    """Whether the person a grant was made for may still hold it: an admin of the workspace, or, for a
    member's request (``approval`` set), a member while the workspace lets members connect apps.
    Removed (no role), demoted, or under a policy that no longer lets them: the grant ends."""
    return role == "admin" or (
        role == "member" and approval is not None and approval != "denied" and app_access == "members"
    )


@dataclass(frozen=True)
class IssuedSecret:
    client: OAuthClient
    secret: str | None  # shown once; None for a public client


class RefreshReused(Exception):
    """A refresh token was presented again after it had been exchanged: the grant is revoked."""


@dataclass(frozen=True)
class PresentedRefresh:
    """A refresh token the token endpoint was given, and its row. ``replay``: within the refresh
    grace, the answer its exchange gave (the same pair again), for a client that lost it."""

    row: OAuthToken
    presented: str
    replay: dict | None = None


@functools.cache
def _verify_sql(param: str) -> str:
    """The access-token check as SQL, built once (as the API token's check is)."""
    sql, _ = (
        OAuthToken.select(
            OAuthToken.access_expires_at,
            OAuthToken.revoked_at,
            OAuthGrant.id,
            OAuthGrant.packs,
            OAuthGrant.resource,
            OAuthGrant.expires_at,
            OAuthGrant.revoked_at,
            OAuthGrant.user,
            Membership.role,
            OAuthGrant.approval,
            OAuthClient.revoked_at,
            OAuthClient.name,
            Workspace.id,
            Workspace.slug,
            Workspace.name,
            Workspace.mcp_enabled,
            Workspace.app_access,
            OAuthGrant.tools,
            Workspace.tools_off,
        )
        .join(OAuthGrant)
        .join(OAuthClient)
        .switch(OAuthGrant)
        .join(Workspace)
        .switch(OAuthGrant)
        .join(
            Membership,
            JOIN.LEFT_OUTER,
            on=((Membership.user == OAuthGrant.user) & (Membership.workspace == OAuthGrant.workspace)),
        )
        .where(OAuthToken.access_digest == "")
        .sql()
    )
    return sql


class OAuthService:
    """Every change to OAuth clients, grants and tokens goes through here, and leaves an audit event."""

    def __init__(
        self,
        pepper: str | None = None,
        known_packs: set[str] | None = None,
        access_seconds: int = 3600,
        code_seconds: int = 300,
        unused_client_days: int = 7,
        spent_refresh_days: int = 30,
        refresh_grace_seconds: int = 10,
        denied_redirect_schemes: tuple[str, ...] = (),
    ):
        self.pepper = pepper
        self.refresh_grace_seconds = refresh_grace_seconds
        self.denied_redirect_schemes = tuple(denied_redirect_schemes)
        self.known_packs = set(known_packs or ())
        self.access_seconds = access_seconds
        self.code_seconds = code_seconds
        self.unused_client_days = unused_client_days
        self.spent_refresh_days = spent_refresh_days

    @classmethod
    def from_settings(cls, settings, known_packs: set[str] | None = None) -> OAuthService:
        return cls(
            settings.token_pepper,
            known_packs,
            settings.oauth_access_token_seconds,
            unused_client_days=settings.oauth_unused_client_days,
            spent_refresh_days=settings.oauth_spent_refresh_days,
            refresh_grace_seconds=settings.oauth_refresh_grace_seconds,
            denied_redirect_schemes=settings.oauth_denied_redirect_schemes,
        )

    def _digest(self, secret: str) -> str:
        return digest(secret, self.pepper)

    # -- clients ---------------------------------------------------------------------------
    def client(self, client_id: str | None) -> OAuthClient | None:
        """An active client by its ``client_id``."""
        if not client_id or len(client_id) > 500:
            return None
        return OAuthClient.get_or_none((OAuthClient.client_id == client_id) & OAuthClient.revoked_at.is_null())

    def check_secret(self, client: OAuthClient, secret: str | None) -> bool:
        if not client.secret_digest or not secret or not well_formed(secret, CLIENT_SECRET_PREFIX):
            return False
        return secrets.compare_digest(client.secret_digest, self._digest(secret))

    def clean_metadata(self, metadata: object) -> tuple[dict, str | None]:
        """:func:`poggio.identity.client_metadata.clean_client_metadata` under this installation's deny list."""
        return clean_client_metadata(metadata, self.denied_redirect_schemes)

    def refuse_registration(
        self, error: InvalidInput, metadata, *, label: str, ip: str | None = None, client_id: str | None = None
    ) -> None:
        """Put a refused registration on record (nothing else is stored), for the installation's admins."""
        name = metadata.get("client_name") if isinstance(metadata, dict) else None
        with writing():
            audit.record(
                "oauth.client_refused",
                Actor(label=label, ip=ip),
                None,
                target=(name if isinstance(name, str) else "")[:200] or client_id or "unnamed app",
                field=error.field,
                reason=error.message[:500],
                **({"client_id": client_id[:500]} if client_id else {}),
            )

    def register(self, metadata: dict, *, ip: str | None = None) -> IssuedSecret:
        """A client registered through RFC 7591 from its metadata, which is checked and bounded here
        (:mod:`poggio.identity.client_metadata`). It gets a secret when it asks for a secret-based token
        endpoint authentication."""
        kept, corrected = self.clean_metadata(metadata)
        uris = kept["redirect_uris"]
        method = kept.get("token_endpoint_auth_method") or "client_secret_basic"
        secret = generate(CLIENT_SECRET_PREFIX) if method != "none" else None
        name = str(kept.get("client_name") or urlsplit(uris[0]).hostname or urlsplit(uris[0]).scheme or "Unnamed app")[
            :200
        ]
        with writing():
            self.forget_unused_clients()
            client = OAuthClient.create(
                client_id="pgc_" + secrets.token_urlsafe(18),
                kind="dynamic",
                name=name,
                metadata=json.dumps({**kept, "token_endpoint_auth_method": method}),
                secret_digest=self._digest(secret) if secret else None,
                secret_last_four=secret[-4:] if secret else None,
                application_type=kept["application_type"],
            )
            audit.record(
                "oauth.client_registered",
                Actor(label="dynamic registration", ip=ip),
                None,
                target=name,
                client_id=client.client_id,
                redirect_uris=uris,
                application_type=kept["application_type"],
                **({"application_type_sent": corrected} if corrected else {}),
            )
        return IssuedSecret(client, secret)

    def remember_metadata_client(self, url: str, metadata: dict, fresh_until: dt.datetime) -> OAuthClient:
        """The client a Client ID Metadata Document describes, created or refreshed from it; the
        document is checked and bounded as a registration is. It authenticates with ``private_key_jwt``
        when it says so (and publishes its keys), else as a public client."""
        kept, _ = self.clean_metadata(metadata)
        name = str(kept.get("client_name") or urlsplit(url).hostname)[:200]
        method = "private_key_jwt" if kept.get("token_endpoint_auth_method") == "private_key_jwt" else "none"
        fields = {
            "name": name,
            "metadata": json.dumps({**kept, "token_endpoint_auth_method": method}),
            "metadata_expires_at": fresh_until,
            "application_type": kept["application_type"],
        }
        with writing():
            client = OAuthClient.get_or_none(OAuthClient.client_id == url)
            if client is None:
                self.forget_unused_clients()
                client = OAuthClient.create(client_id=url, kind="metadata", **fields)
            elif client.revoked_at is None:
                OAuthClient.update(fields).where(OAuthClient.id == client.id).execute()
                client = OAuthClient.get_by_id(client.id)
        return client

    def forget_unused_clients(self, now: dt.datetime | None = None) -> int:
        """Delete the apps that anyone may register (dynamic registration, a metadata document) and
        no one approved within ``unused_client_days``: no grant, no authorization code. Kept: apps
        an admin revoked (deleting one would lift its revocation: a metadata document's URL would
        be accepted again). Run in the transaction of each new registration, so the table holds at
        most that many days of them whatever a bot sends; returns how many went. A forgotten app
        that comes back gets ``invalid_client`` and registers again."""
        cutoff = (now or utcnow()) - dt.timedelta(days=self.unused_client_days)
        stale = OAuthClient.select(OAuthClient.id).where(
            OAuthClient.kind.in_(PUBLIC_KINDS)
            & (OAuthClient.created_at < cutoff)
            & OAuthClient.revoked_at.is_null()
            & ~fn.EXISTS(OAuthGrant.select(SQL("1")).where(OAuthGrant.client == OAuthClient.id))
            & ~fn.EXISTS(OAuthCode.select(SQL("1")).where(OAuthCode.client == OAuthClient.id))
        )
        count = OAuthClient.delete().where(OAuthClient.id.in_(stale)).execute()
        if count:
            audit.record(
                "oauth.unused_clients_forgotten",
                Actor(label="system"),
                None,
                target=f"{count} app(s)",
                count=count,
                days=self.unused_client_days,
            )
        return count

    def create_confidential(
        self,
        workspace: Workspace,
        name: str,
        actor: Actor,
        packs=None,
        resource: str = "",
        grant: str = "client_credentials",
    ) -> IssuedSecret:
        """A machine-to-machine client of one workspace (``client_credentials``), with its standing
        grant over ``packs`` (all packs when none are named). The secret is returned once.
        ``grant="jwt-bearer"``: a client that acts for the workspace's people with ID-JAGs from its
        identity provider (:mod:`poggio.identity.id_jag`); it has no standing grant, and ``packs`` bound what
        any of its grants may have."""
        name = " ".join((name or "").split())
        if not name:
            raise InvalidInput("name", "a name is required")
        if len(name) > 100:
            raise InvalidInput("name", "at most 100 characters")
        if grant not in ("client_credentials", "jwt-bearer"):
            raise InvalidInput("grant", "client_credentials or jwt-bearer")
        chosen = scopes.format_levels(self._clean_packs(packs))
        secret = generate(CLIENT_SECRET_PREFIX)
        grant_type = JWT_BEARER if grant == "jwt-bearer" else "client_credentials"
        with writing():
            client = OAuthClient.create(
                client_id="pgc_" + secrets.token_urlsafe(18),
                kind="confidential",
                name=name,
                metadata=json.dumps(
                    {
                        "grant_types": [grant_type],
                        "redirect_uris": [],
                        "token_endpoint_auth_method": "client_secret_basic",
                    }
                ),
                secret_digest=self._digest(secret),
                secret_last_four=secret[-4:],
                workspace=workspace,
                packs=chosen,
                created_by=actor.user,
            )
            if grant_type == JWT_BEARER:
                audit.record(
                    "oauth.client_created",
                    actor,
                    workspace,
                    target=name,
                    client_id=client.client_id,
                    packs=chosen,
                    grant=grant,
                )
                return IssuedSecret(client, secret)
            # the standing grant has no approver: it lives as long as the client, whoever made it, within
            # the workspace's maximum lifetime
            OAuthGrant.create(
                workspace=workspace,
                client=client,
                user=None,
                packs=chosen,
                resource=normalise_resource(resource),
                expires_at=policy.cap(workspace, None),
            )
            audit.record(
                "oauth.client_created", actor, workspace, target=name, client_id=client.client_id, packs=chosen
            )
        return IssuedSecret(client, secret)

    def _clean_packs(self, packs) -> dict[str, str]:
        """``{pack: level}`` of ``accounts:write,contacts`` (or a list or mapping); nothing named
        means every pack, read only."""
        if packs is None or packs == "" or packs == [] or packs == {}:
            return {p: READ for p in self.known_packs}
        levels = scopes.parse(packs, self.known_packs)
        if not levels:
            raise InvalidInput("packs", "choose at least one tool pack")
        return levels

    def revoke_client(self, client: OAuthClient, actor: Actor) -> None:
        """End a client and every grant it holds."""
        now = utcnow()
        with writing():
            changed = (
                OAuthClient.update(revoked_at=now, revoked_by=actor.user)
                .where((OAuthClient.id == client.id) & OAuthClient.revoked_at.is_null())
                .execute()
            )
            (
                OAuthGrant.update(revoked_at=now, revoked_by=actor.user, revoked_reason="client revoked")
                .where((OAuthGrant.client == client.id) & OAuthGrant.revoked_at.is_null())
                .execute()
            )
            if changed:
                audit.record(
                    "oauth.client_revoked", actor, client.workspace_id, target=client.name, client_id=client.client_id
                )

    # -- authorization codes ---------------------------------------------------------------
    def issue_code(
        self,
        *,
        code: str,
        client: OAuthClient,
        user: User,
        workspace: Workspace,
        packs,
        redirect_uri: str,
        resource: str,
        code_challenge: str,
        code_challenge_method: str,
        grant_days: int | None,
        actor: Actor,
        adds_to: OAuthGrant | None = None,
        pending: bool = False,
        tools: str | None = None,
    ) -> None:
        """Store the digest of ``code``, the approval it carries (``packs``: ``{pack: level}``, or pack
        names to read) and its PKCE challenge. ``adds_to``: the app's connected grant in this
        workspace, which the code widens (step-up) rather than creating another: it carries the
        grant's scope with the approved one added, and the grant's own expiry. ``pending``: a member's
        request, which an admin approves or denies later (:mod:`poggio.identity.app_access`); a request never
        widens a grant that is already live. ``tools``: the consent's narrowing to named tools, as
        :func:`poggio.identity.switches.clean_narrowing` stored it (None: every tool of the packs)."""
        if pending:
            adds_to = None
        now = utcnow()
        packs = scopes.format_levels(packs if isinstance(packs, dict) else {p: READ for p in packs})
        expires_at = policy.cap(workspace, None if grant_days is None else now + dt.timedelta(days=grant_days), now)
        detail = {"lasts_days": grant_days if grant_days else "until revoked"}
        if adds_to is not None:
            packs = widened(adds_to.packs, packs)
            expires_at = adds_to.expires_at
            detail = {"adds_to_grant": adds_to.id, "granted_before": adds_to.packs}
        with writing():
            OAuthCode.create(
                digest=self._digest(code),
                client=client,
                user=user,
                workspace=workspace,
                packs=packs,
                redirect_uri=redirect_uri,
                resource=normalise_resource(resource),
                code_challenge=code_challenge,
                code_challenge_method=code_challenge_method,
                grant_expires_at=expires_at,
                expires_at=now + dt.timedelta(seconds=self.code_seconds),
                grant=adds_to,
                approval="pending" if pending else None,
                tools=tools,
            )
            audit.record(
                "oauth.requested" if pending else "oauth.approved",
                actor,
                workspace,
                target=client.name,
                client_id=client.client_id,
                packs=packs,
                **detail,
                **({"tools": tools} if tools else {}),
            )

    def connected_grant(self, client: OAuthClient, workspace: Workspace | None) -> OAuthGrant | None:
        """The live grant an admin approved for ``client`` in ``workspace`` (the newest, if the app
        was connected more than once), which a new approval adds to: None if there is none."""
        if workspace is None:
            return None
        return (
            OAuthGrant.select()
            .where(
                (OAuthGrant.client == client.id)
                & (OAuthGrant.workspace == workspace.id)
                & OAuthGrant.user.is_null(False)
                & OAuthGrant.revoked_at.is_null()
                & (OAuthGrant.approval.is_null() | (OAuthGrant.approval == "approved"))  # not a request
                & (OAuthGrant.expires_at.is_null() | (OAuthGrant.expires_at > utcnow()))
            )
            .order_by(OAuthGrant.id.desc())
            .first()
        )

    def find_code(self, code: str | None, client: OAuthClient) -> OAuthCode | None:
        """The unused, unexpired code issued to ``client``. A code presented a second time revokes the
        grant its first use created (RFC 6749 §4.1.2) and is refused."""
        if not code or len(code) > 200:
            return None
        row = OAuthCode.get_or_none((OAuthCode.digest == self._digest(code)) & (OAuthCode.client == client.id))
        if row is None:
            return None
        if row.used_at is not None:
            if row.grant_id is not None:
                self.revoke_grant(OAuthGrant.get_by_id(row.grant_id), Actor(label="system"), "code reused")
            audit.record(
                "oauth.code_reused",
                Actor(label="system"),
                row.workspace_id,
                target=client.name,
                client_id=client.client_id,
            )
            return None
        if row.expires_at <= utcnow():
            return None
        return row

    def grant_from_code(self, code: OAuthCode) -> OAuthGrant | None:
        """Spend the code (once, atomically) and create the grant it approved, or widen the grant it
        adds to (None, nothing granted, if that grant was revoked or expired meanwhile)."""
        with writing():
            spent = (
                OAuthCode.update(used_at=utcnow())
                .where((OAuthCode.id == code.id) & OAuthCode.used_at.is_null())
                .execute()
            )
            if not spent:
                return None
            if code.grant_id is not None:
                return self._widen(code)
            # the policy may have tightened since the approval: it decides
            expires_at = policy.cap(Workspace.get_by_id(code.workspace_id), code.grant_expires_at)
            grant = OAuthGrant.create(
                workspace=code.workspace_id,
                client=code.client_id,
                user=code.user_id,
                packs=code.packs,
                tools=code.tools,
                resource=code.resource,
                expires_at=expires_at,
                approval=code.approval,
            )
            OAuthCode.update(grant=grant).where(OAuthCode.id == code.id).execute()
        return grant

    def _widen(self, code: OAuthCode) -> OAuthGrant | None:
        """The step-up: the connected grant gains the scope its admin just approved (the same app in
        Settings, its tokens and its expiry as they were); on record as ``oauth.scope_added``."""
        grant = OAuthGrant.get_by_id(code.grant_id)
        now = utcnow()
        if grant.revoked_at is not None or (grant.expires_at is not None and grant.expires_at <= now):
            return None
        before = grant.packs
        after = widened(before, code.packs)
        # narrowed both times: the tools of both; else every tool of the packs
        tools = None
        if grant.tools is not None and code.tools is not None:
            tools = ",".join(sorted(switches.off_of(grant.tools) | switches.off_of(code.tools)))
        if tools != grant.tools:
            OAuthGrant.update(tools=tools).where(OAuthGrant.id == grant.id).execute()
            grant.tools = tools
        if after != before:
            OAuthGrant.update(packs=after).where(OAuthGrant.id == grant.id).execute()
            grant.packs = after
            client = OAuthClient.get_by_id(code.client_id)
            audit.record(
                "oauth.scope_added",
                Actor(User.get_by_id(code.user_id)),
                code.workspace_id,
                target=client.name,
                client_id=client.client_id,
                grant_id=grant.id,
                granted_before=before,
                granted_now=after,
            )
        return grant

    # -- tokens ----------------------------------------------------------------------------
    def standing_grant(self, client: OAuthClient) -> OAuthGrant | None:
        """The client's live grant; None once revoked or past its expiry (the workspace's maximum lifetime)."""
        return (
            OAuthGrant.select()
            .where(
                (OAuthGrant.client == client.id)
                & OAuthGrant.revoked_at.is_null()
                & (OAuthGrant.expires_at.is_null() | (OAuthGrant.expires_at > utcnow()))
            )
            .order_by(OAuthGrant.id)
            .first()
        )

    def issue_tokens(self, grant: OAuthGrant, refresh: bool = True, *, pair: tuple[str, str] | None = None) -> dict:
        """A new access token (and refresh token) for ``grant``: the response body of the token
        endpoint. ``pair``: the access and refresh token to issue, made by the caller."""
        access = pair[0] if pair else generate(ACCESS_PREFIX)
        refresh_token = pair[1] if pair else generate(REFRESH_PREFIX) if refresh else None
        now = utcnow()
        lifetime = self.access_seconds
        if grant.expires_at is not None:  # no access token outlives its grant
            lifetime = max(1, min(lifetime, int((grant.expires_at - now).total_seconds())))
        with writing():
            OAuthToken.create(
                grant=grant,
                access_digest=self._digest(access),
                refresh_digest=self._digest(refresh_token) if refresh_token else None,
                access_expires_at=now + dt.timedelta(seconds=lifetime),
            )
        body = {"access_token": access, "token_type": "Bearer", "expires_in": lifetime, "scope": scope_of(grant.packs)}
        if refresh_token:
            body["refresh_token"] = refresh_token
        return body

    def find_refresh(self, presented: str | None, client: OAuthClient) -> PresentedRefresh | None:
        """The live token row whose refresh token this is: nothing changes here, so a request the
        token endpoint then refuses (a scope beyond the grant, another resource) leaves the refresh
        token as it was; :meth:`rotate` spends it when the new pair is issued. A refresh token
        presented after it was spent revokes its whole grant and raises :class:`RefreshReused`,
        unless within the refresh grace (:meth:`_replay`)."""
        if not presented or not well_formed(presented, REFRESH_PREFIX):
            return None
        row = (
            OAuthToken.select(OAuthToken, OAuthGrant)
            .join(OAuthGrant)
            .where(OAuthToken.refresh_digest == self._digest(presented))
            .first()
        )
        if row is None or row.grant.client_id != client.id:
            return None
        grant = row.grant
        if grant.revoked_at is not None or row.revoked_at is not None:
            return None
        if grant.expires_at is not None and grant.expires_at <= utcnow():
            return None
        if row.refreshed_at is not None:
            replay = self._replay(row, presented)
            if replay is None:
                self._refresh_reused(grant, client)
            return PresentedRefresh(row, presented, replay)
        return PresentedRefresh(row, presented)

    def rotate(self, found: PresentedRefresh, client: OAuthClient) -> dict:
        """Spend the refresh token (once, atomically) and issue the grant's new pair: the token
        endpoint's answer. The pair is sealed on the spent row for the refresh grace. Spent already
        by a concurrent request: that request's pair within the grace, else :class:`RefreshReused`."""
        if found.replay is not None:
            return found.replay
        row, now = found.row, utcnow()
        pair = (generate(ACCESS_PREFIX), generate(REFRESH_PREFIX))
        sealed = self._seal(found.presented, pair) if self.refresh_grace_seconds > 0 else None
        with writing():
            spent = (
                OAuthToken.update(refreshed_at=now, grace_sealed=sealed)
                .where((OAuthToken.id == row.id) & OAuthToken.refreshed_at.is_null())
                .execute()
            )
            if spent:
                # the grant's earlier seals are of no use once their grace is over
                (
                    OAuthToken.update(grace_sealed=None)
                    .where(
                        (OAuthToken.grant == row.grant_id)
                        & OAuthToken.grace_sealed.is_null(False)
                        & (OAuthToken.refreshed_at < now - dt.timedelta(seconds=self.refresh_grace_seconds))
                    )
                    .execute()
                )
                return self.issue_tokens(row.grant, pair=pair)
        again = OAuthToken.select(OAuthToken, OAuthGrant).join(OAuthGrant).where(OAuthToken.id == row.id).first()
        replay = self._replay(again, found.presented) if again is not None else None
        if replay is None:
            self._refresh_reused(row.grant, client)
        return replay

    # The refresh grace. An answer to a refresh can be lost after the server spent the token (a
    # dropped connection, a client killed mid-request): the app retries with the token it still
    # holds, which rotation alone would take for theft and revoke. For a few seconds the same pair
    # is answered again. It cannot be stored as it is (no token is stored in plaintext), nor be
    # made again (tokens are random): it is sealed (JWE, dir + A256GCM) with a key derived from
    # the presented refresh token and the pepper, so only the holder of that refresh token can
    # open it, and cleared once the grace is over.
    def _grace_key(self, presented: str) -> OctKey:
        label = b"poggio oauth refresh grace\n" + (self.pepper or "").encode()
        return OctKey.import_key(hmac.new(label, presented.encode(), hashlib.sha256).digest())

    def _seal(self, presented: str, pair: tuple[str, str]) -> str:
        plaintext = json.dumps({"access_token": pair[0], "refresh_token": pair[1]}).encode()
        return jwe.encrypt_compact({"alg": "dir", "enc": "A256GCM"}, plaintext, self._grace_key(presented))

    def _replay(self, row: OAuthToken, presented: str) -> dict | None:
        """The answer ``row``'s refresh token was exchanged for, if that was within the grace and
        the pair is still the grant's live one (its refresh token not spent in turn); else None."""
        now = utcnow()
        if (
            not row.grace_sealed
            or row.refreshed_at is None
            or now - row.refreshed_at > dt.timedelta(seconds=self.refresh_grace_seconds)
        ):
            return None
        try:
            pair = json.loads(jwe.decrypt_compact(row.grace_sealed, self._grace_key(presented)).plaintext or b"")
        except (JoseError, ValueError):
            return None
        successor = OAuthToken.get_or_none(OAuthToken.refresh_digest == self._digest(pair["refresh_token"]))
        if (
            successor is None
            or successor.grant_id != row.grant_id
            or successor.revoked_at is not None
            or successor.refreshed_at is not None
            or successor.access_digest != self._digest(pair["access_token"])
        ):
            return None
        lifetime = int((successor.access_expires_at - now).total_seconds())
        if lifetime <= 0:
            return None
        return {
            "access_token": pair["access_token"],
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope_of(row.grant.packs),
            "refresh_token": pair["refresh_token"],
        }

    def _refresh_reused(self, grant: OAuthGrant, client: OAuthClient) -> NoReturn:
        self.revoke_grant(grant, Actor(label="system"), "refresh token reused")
        audit.record(
            "oauth.refresh_reused",
            Actor(label="system"),
            grant.workspace_id,
            target=client.name,
            grant_id=grant.id,
            client_id=client.client_id,
        )
        raise RefreshReused()

    def first_assertion(self, client_id: str, jti: str, expires_at: dt.datetime) -> bool:
        """True the first time ``client_id`` presents a client assertion with this ``jti``, which is
        kept until ``expires_at`` (the assertion's own expiry, after which it is refused anyway);
        False for a replay. Kept in the database: every portal worker agrees."""
        key = hashlib.sha256(f"{client_id}\n{jti}".encode()).hexdigest()
        try:
            with writing():
                OAuthAssertion.create(digest=key, expires_at=expires_at)
        except IntegrityError:
            return False
        return True

    def revoke_grant(self, grant: OAuthGrant, actor: Actor, reason: str = "revoked") -> None:
        with writing():
            changed = (
                OAuthGrant.update(revoked_at=utcnow(), revoked_by=actor.user, revoked_reason=reason[:64])
                .where((OAuthGrant.id == grant.id) & OAuthGrant.revoked_at.is_null())
                .execute()
            )
            if changed:
                audit.record(
                    "oauth.grant_revoked",
                    actor,
                    grant.workspace_id,
                    target=str(grant.id),
                    grant_id=grant.id,
                    reason=reason,
                )

    def revoke_presented(self, presented: str, client: OAuthClient, actor: Actor) -> None:
        """RFC 7009: revoke the token a client presents, if it is the client's. A refresh token ends its
        whole grant; an access token ends itself. Unknown tokens are ignored, as the RFC asks."""
        if well_formed(presented, REFRESH_PREFIX):
            where = OAuthToken.refresh_digest == self._digest(presented)
        elif well_formed(presented, ACCESS_PREFIX):
            where = OAuthToken.access_digest == self._digest(presented)
        else:
            return
        row = OAuthToken.select(OAuthToken, OAuthGrant).join(OAuthGrant).where(where).first()
        if row is None or row.grant.client_id != client.id:
            return
        if presented.startswith(REFRESH_PREFIX):
            self.revoke_grant(row.grant, actor, "revoked by the app")
        else:
            with writing():
                OAuthToken.update(revoked_at=utcnow()).where(OAuthToken.id == row.id).execute()

    # -- housekeeping ----------------------------------------------------------------------
    def prune(self, now: dt.datetime | None = None, batch: int = 5000) -> int:
        """Delete the OAuth rows that can no longer let anyone in; returns how many went. The MCP
        server runs it every hour (:class:`poggio.records.usage.UsageRecorder`): without it every refresh
        leaves a row behind, and a machine client's every token request another, for ever.

        - Authorization codes a day past their expiry, used or not: a code presented again within
          that day still revokes what it granted; after it, the code is unknown.
        - Every token of a grant revoked or expired more than a day ago. The grant stays (Settings
          lists it, with its usage).
        - A live grant's token rows a day past their access token's expiry whose refresh token
          cannot be used: none was issued (``client_credentials``), the row was revoked, or its
          refresh token was spent more than ``spent_refresh_days`` ago. A spent refresh token
          presented again within those days revokes its grant (reuse detection); after them it is
          refused as unknown and the grant left alone.
        - Client assertions (``private_key_jwt``) past their expiry: a replay of one is refused
          for its expiry from then on.
        - The apps no one approved (:meth:`forget_unused_clients`)."""
        now = now or utcnow()
        settled = now - SETTLED
        dead = OAuthGrant.select(OAuthGrant.id).where(
            (OAuthGrant.revoked_at < settled) | (OAuthGrant.expires_at < settled)
        )
        spent = now - dt.timedelta(days=self.spent_refresh_days)
        unusable = (OAuthToken.grant.in_(dead)) | (
            (OAuthToken.access_expires_at < settled)
            & (
                OAuthToken.refresh_digest.is_null()
                | OAuthToken.revoked_at.is_null(False)
                | (OAuthToken.refreshed_at < spent)
            )
        )
        count = delete_in_batches(OAuthCode, OAuthCode.expires_at < settled, batch)
        count += delete_in_batches(OAuthAssertion, OAuthAssertion.expires_at < now, batch)
        with writing():  # the refresh grace's seals, once it is over (not counted: the rows stay)
            (
                OAuthToken.update(grace_sealed=None)
                .where(
                    OAuthToken.grace_sealed.is_null(False)
                    & (OAuthToken.refreshed_at < now - dt.timedelta(seconds=self.refresh_grace_seconds))
                )
                .execute()
            )
        count += delete_in_batches(OAuthToken, unusable, batch)
        with writing():
            count += self.forget_unused_clients(now)
        return count

    # -- the MCP server's check ------------------------------------------------------------
    def verify_access(self, presented: str, resource: str, now: dt.datetime | None = None) -> VerifiedToken:
        """The access token's grant, workspace and packs; or :class:`TokenRejected`. Unknown,
        expired, revoked, of a revoked grant or client, minted for another resource, or approved by
        someone who is no longer an admin of the workspace: all ``invalid``."""
        if not well_formed(presented, ACCESS_PREFIX):
            raise TokenRejected("malformed")
        now = now or utcnow()
        cursor = execute(_verify_sql(database.param), (self._digest(presented),))  # planned once per connection
        row = cursor.fetchone()
        cursor.close()
        if row is None:
            raise TokenRejected("invalid")
        (
            expires_at,
            revoked_at,
            grant_id,
            packs,
            bound_to,
            grant_expires,
            grant_revoked,
            approver,
            role,
            approval,
            client_revoked,
            client_name,
            ws_id,
            ws_slug,
            ws_name,
            mcp_enabled,
            app_access,
            tools,
            off,
        ) = row
        expires_at = OAuthToken.access_expires_at.python_value(expires_at)
        grant_expires = OAuthGrant.expires_at.python_value(grant_expires)
        if (
            revoked_at is not None
            or grant_revoked is not None
            or client_revoked is not None
            or expires_at <= now
            or (grant_expires is not None and grant_expires <= now)
            or bound_to != resource
            or (approver is not None and not _may_hold(role, approval, app_access))
        ):
            raise TokenRejected("invalid")
        if not mcp_enabled:
            raise TokenRejected("not_entitled")
        if approval == "pending":  # a member's request an admin has not decided yet
            raise TokenRejected("approval_pending")
        scope = scopes.of_text(packs, all_when_empty=False)
        return VerifiedToken(
            token_id=grant_id,
            name=client_name,
            workspace_id=ws_id,
            workspace_slug=ws_slug,
            workspace_name=ws_name,
            packs=scope.packs,
            expires_at=expires_at,
            kind="grant",
            writable=scope.writable,
            ends_at=grant_expires,
            tools=switches.names_of(tools),
            off=switches.off_of(off),
        )

    # -- reads -----------------------------------------------------------------------------
    def grants(self, workspace: Workspace, include_inactive: bool = False, limit: int = 200) -> list[OAuthGrant]:
        """The workspace's connected apps, newest first."""
        approver = User.alias()
        query = (
            OAuthGrant.select(OAuthGrant, OAuthClient, approver)
            .join(OAuthClient)
            .switch(OAuthGrant)
            .join(approver, JOIN.LEFT_OUTER, on=(OAuthGrant.user == approver.id))
            .where(OAuthGrant.workspace == workspace)
            .order_by(OAuthGrant.created_at.desc(), OAuthGrant.id.desc())
            .limit(limit)
        )
        if not include_inactive:
            now = utcnow()
            query = query.where(
                OAuthGrant.revoked_at.is_null() & (OAuthGrant.expires_at.is_null() | (OAuthGrant.expires_at > now))
            )
        return list(query)

    def grant(self, workspace: Workspace, grant_id: int | str) -> OAuthGrant:
        wanted = parse_id(grant_id)
        found = (
            OAuthGrant.select(OAuthGrant, OAuthClient)
            .join(OAuthClient)
            .where((OAuthGrant.workspace == workspace) & (OAuthGrant.id == wanted))
            .first()
            if wanted is not None
            else None
        )
        if found is None:
            raise NotFound(f"no connected app {grant_id!r} in workspace {workspace.slug}")
        return found

    def clients(self, workspace: Workspace, include_inactive: bool = False) -> list[OAuthClient]:
        """The workspace's own (confidential) OAuth clients, newest first."""
        query = (
            OAuthClient.select()
            .where(OAuthClient.workspace == workspace)
            .order_by(OAuthClient.created_at.desc(), OAuthClient.id.desc())
            .limit(200)
        )
        if not include_inactive:
            query = query.where(OAuthClient.revoked_at.is_null())
        return list(query)

    def workspace_client(self, workspace: Workspace, ident: str | int) -> OAuthClient:
        text = str(ident)
        query = OAuthClient.select().where(OAuthClient.workspace == workspace)
        wanted = parse_id(text)
        found = (query.where(OAuthClient.id == wanted).first() if wanted is not None else None) or query.where(
            OAuthClient.client_id == text
        ).first()
        if found is None:
            raise NotFound(f"no OAuth client {text!r} in workspace {workspace.slug}")
        return found
