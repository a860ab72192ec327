"""API tokens: their whole life cycle. Their format and digest are :mod:`poggio.security.token_format`'s.

Only a digest and the last four characters are stored. Verification reads the database on every
request, so a revocation or an expiry holds on the very next request in every process: there is no cache to outlive it.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from limits import parse as parse_limit
from peewee import JOIN, Field, IntegrityError, fn

from poggio.errors import InvalidInput, NotFound
from poggio.identity import policy, scopes, switches
from poggio.records import audit
from poggio.records.audit import Actor
from poggio.security.token_format import digest, generate, well_formed
from poggio.storage.db import database, parse_id, utcnow, writing
from poggio.storage.models import ApiToken, User, Workspace
from poggio.storage.prepared import execute

MAX_NAME = 100
EXPIRY_CHOICES = (7, 30, 60, 90)
EXPIRING_SOON = dt.timedelta(days=7)


def parse_expiry(value: str | int | dt.date | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """``30d``, ``30``, ``never``, or an ISO date (the token then lasts through that day, UTC)."""
    now = now or utcnow()
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        moment = dt.datetime.combine(value + dt.timedelta(days=1), dt.time())
    else:
        text = str(value).strip().lower()
        if text in ("never", "none", ""):
            return None
        match = re.fullmatch(r"(\d{1,4})\s*d?", text)
        if match:
            days = int(match.group(1))
            if not 1 <= days <= 3650:
                raise InvalidInput("expires", "must be between 1 and 3650 days")
            return now + dt.timedelta(days=days)
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise InvalidInput("expires", "use a number of days (30d), a date (YYYY-MM-DD) or 'never'") from None
        moment = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    if moment <= now:
        raise InvalidInput("expires", "the date must be in the future")
    return moment


def status(token: ApiToken, now: dt.datetime | None = None) -> str:
    """``revoked``, ``expired``, ``expiring`` (within a week) or ``active``."""
    now = now or utcnow()
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None:
        if token.expires_at <= now:
            return "expired"
        if token.expires_at - now <= EXPIRING_SOON:
            return "expiring"
    return "active"


class TokenRejected(Exception):
    """Why a presented token does not open the door. ``reason`` is one of:
    ``missing``, ``malformed``, ``invalid`` (unknown, revoked or expired: one answer, so a caller
    learns nothing about whether a token ever existed) and ``not_entitled``."""

    MESSAGES = {
        "missing": "No bearer token: sign in with OAuth, or send 'Authorization: Bearer <token>' with an API "
        "token from Settings > MCP Server.",
        "malformed": "The bearer token is malformed: a Poggio token looks like pgo_ followed by 33 letters and digits.",
        "invalid": "The bearer token is not valid: it is unknown, revoked or expired. Create a new API token in "
        "Settings > MCP Server, or sign in again.",
        "not_entitled": "This workspace does not have the MCP server entitlement. "
        "Ask your Poggio administrator or support.",
        "approval_pending": "A workspace administrator has not yet approved this app: you asked for access, "
        "and it works as soon as an administrator approves it (no need to reconnect). "
        "See your requests in Poggio under My apps.",
    }

    def __init__(self, reason: str):
        super().__init__(self.MESSAGES[reason])
        self.reason = reason


@dataclass(frozen=True)
class VerifiedToken:
    token_id: int
    name: str
    workspace_id: int
    workspace_slug: str
    workspace_name: str
    packs: frozenset[str] | None
    expires_at: dt.datetime | None
    kind: str = "token"  # "token": an API token (token_id is its id); "grant": an OAuth grant (its id)
    writable: frozenset[str] = frozenset()  # the packs it may also write (poggio.identity.scopes)
    tools: frozenset[str] | None = None  # the named tools it is narrowed to (poggio.identity.switches); None: all
    off: frozenset[str] = frozenset()  # the tools its workspace switched off, read with the credential

    @property
    def scope(self) -> scopes.PackScope:
        return scopes.PackScope(self.packs, self.writable, self.tools, self.off)

    # when the presented credential stops working for good: the token's expiry, the end of an old
    # secret's overlap window after a rotation, or an OAuth grant's expiry (its access tokens are short)
    ends_at: dt.datetime | None = None
    allowed_ips: tuple | None = None  # ip_network objects; None: from anywhere
    rate_limit: str | None = None  # the token's own limit, below the installation's
    old_secret: bool = False  # presented the secret a rotation replaced, within its overlap window

    def expiry_warning(self, now: dt.datetime | None = None) -> dict | None:
        """For the result's ``_meta`` when the credential stops working within :data:`EXPIRING_SOON`."""
        if self.ends_at is None:
            return None
        left = self.ends_at - (now or utcnow())
        if left > EXPIRING_SOON:
            return None
        what = (
            "This token's old secret was replaced by a rotation and"
            if self.old_secret
            else "This connected app's access"
            if self.kind == "grant"
            else "This API token"
        )
        days = max(0, int(left.total_seconds() // 86400))
        when = (
            f"in {days} day{'s' if days != 1 else ''}"
            if days
            else f"in {max(1, int(left.total_seconds() // 3600))} hour(s)"
        )
        return {
            "expires_at": self.ends_at.isoformat() + "Z",
            "kind": self.kind,
            "message": f"{what} stops working {when} ({self.ends_at:%Y-%m-%d %H:%M} UTC). "
            "Ask a Poggio administrator for a new one (Settings > MCP Server).",
        }


@functools.lru_cache(maxsize=1024)
def networks(text: str | None) -> tuple | None:
    """A stored CIDR list as ip_network objects (parsed once per distinct list)."""
    if not text:
        return None
    return tuple(ipaddress.ip_network(p, strict=False) for p in text.split(",") if p)


def ip_allowed(allowed: tuple | None, ip: str | None) -> bool:
    if allowed is None:
        return True
    try:
        address = ipaddress.ip_address((ip or "").split("%", 1)[0])
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in allowed if net.version == address.version)


def clean_networks(values) -> str | None:
    """CIDRs (IPv4 and IPv6, comma-separated or a list; a bare address is a /32 or /128) as stored."""
    if values is None:
        return None
    items = [
        p.strip()
        for v in ([values] if isinstance(values, str) else values)
        for p in str(v).replace("\n", ",").split(",")
    ]
    items = [p for p in items if p]
    if not items:
        return None
    if len(items) > 50:
        raise InvalidInput("allowed_ips", "at most 50 networks")
    out = []
    for item in items:
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise InvalidInput(
                "allowed_ips",
                f"{item[:50]!r} is not an IP address or network (CIDR such as 203.0.113.0/24 or 2001:db8::/32)",
            ) from None
        if str(net) not in out:
            out.append(str(net))
    return ",".join(out)


def _per_second(limit: str) -> float:
    item = parse_limit(limit)
    return item.amount / item.get_expiry()


def clean_rate_limit(value: str | None, ceiling: str | None) -> str | None:
    """A token's own limit (``10/minute``), which must be below the installation's ``ceiling``."""
    text = (value or "").strip()
    if not text or text.lower() in ("none", "default"):
        return None
    try:
        rate = _per_second(text)
    except ValueError:
        raise InvalidInput("rate_limit", "a limit such as 10/minute, 100/hour or 5/second") from None
    if ceiling and rate >= _per_second(ceiling):
        raise InvalidInput("rate_limit", f"must be below the installation's limit of {ceiling} per token")
    return text[:40]


@functools.cache
def _verify_sql(param: str, previous: bool = False) -> str:
    """The verification query as SQL, built once per placeholder style: this runs on every MCP
    request, and building it through the query builder cost more than SQLite's look-up. It looks up
    the current secret's digest; only when that finds nothing, the ``previous`` query looks for a
    secret in its overlap window after a rotation (one OR over both indexes cost ~40 % more per call)."""
    column = ApiToken.previous_digest if previous else ApiToken.digest
    sql, _ = (
        ApiToken.select(
            ApiToken.id,
            ApiToken.name,
            ApiToken.packs,
            ApiToken.expires_at,
            ApiToken.revoked_at,
            Workspace.id,
            Workspace.slug,
            Workspace.name,
            Workspace.mcp_enabled,
            ApiToken.digest,
            ApiToken.previous_expires_at,
            ApiToken.allowed_ips,
            ApiToken.rate_limit,
            ApiToken.tools,
            Workspace.tools_off,
        )
        .join(Workspace)
        .where(column == "")  # unique: at most one row
        .sql()
    )
    return sql


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    plaintext: str


class _Default(enum.Enum):
    DEFAULT = "default"


DEFAULT = _Default.DEFAULT  # "the workspace policy's default expiry"
GRACE_CHOICES = (("none", "None: the old secret stops now"), ("1h", "1 hour"), ("24h", "24 hours"), ("7d", "7 days"))


class TokenService:
    """Every change to a token goes through here, and leaves an audit event."""

    def __init__(
        self,
        pepper: str | None = None,
        max_active_tokens: int = 100,
        known_packs: set[str] | None = None,
        rate_limit: str | None = None,
        registry=None,
    ):
        self.registry = registry  # the loaded tool packs: a narrowing to named tools is checked against them
        self.pepper = pepper
        self.max_active_tokens = max_active_tokens
        self.known_packs = known_packs
        self.rate_limit = rate_limit  # the installation's per-token limit: a token's own must be below it

    @classmethod
    def from_settings(cls, settings, known_packs: set[str] | None = None, registry=None) -> TokenService:
        return cls(settings.token_pepper, settings.max_active_tokens, known_packs, settings.rate_limit, registry)

    # -- verification: the hot path of every MCP request ------------------------------------
    def verify(self, presented: str | None, now: dt.datetime | None = None) -> VerifiedToken:
        if not presented:
            raise TokenRejected("missing")
        if not well_formed(presented):
            raise TokenRejected("malformed")
        now = now or utcnow()
        presented_digest = digest(presented, self.pepper)
        cursor = execute(_verify_sql(database.param), (presented_digest,))  # planned once per connection
        row = cursor.fetchone()
        cursor.close()
        if row is None:
            cursor = execute(_verify_sql(database.param, True), (presented_digest,))
            row = cursor.fetchone()
            cursor.close()
        if row is None:
            raise TokenRejected("invalid")
        (
            token_id,
            name,
            packs,
            expires_at,
            revoked_at,
            ws_id,
            ws_slug,
            ws_name,
            mcp_enabled,
            current,
            previous_expires_at,
            allowed_ips,
            rate_limit,
            tools,
            off,
        ) = row
        expires_at = ApiToken.expires_at.python_value(expires_at)
        if revoked_at is not None or (expires_at is not None and expires_at <= now):
            raise TokenRejected("invalid")
        ends_at = expires_at
        old_secret = current != presented_digest
        if old_secret:  # the secret a rotation replaced: until its overlap window ends, to the second
            ends_at = ApiToken.previous_expires_at.python_value(previous_expires_at)
            if ends_at is None or ends_at <= now:
                raise TokenRejected("invalid")
        if not mcp_enabled:
            raise TokenRejected("not_entitled")
        scope = scopes.of_text(packs)
        return VerifiedToken(
            token_id=token_id,
            name=name,
            workspace_id=ws_id,
            workspace_slug=ws_slug,
            workspace_name=ws_name,
            packs=scope.packs,
            expires_at=expires_at,
            writable=scope.writable,
            ends_at=ends_at,
            allowed_ips=networks(allowed_ips),
            rate_limit=rate_limit,
            old_secret=old_secret,
            tools=switches.names_of(tools),
            off=switches.off_of(off),
        )

    # -- reads -----------------------------------------------------------------------------
    def list(
        self, workspace: Workspace, include_inactive: bool = True, limit: int | None = None, offset: int = 0
    ) -> list[ApiToken]:
        """The workspace's tokens, newest first; ``limit``/``offset`` take one page of them."""
        creator = User.alias()
        query = (
            ApiToken.select(ApiToken, creator)
            .join(creator, JOIN.LEFT_OUTER, on=(ApiToken.created_by == creator.id))
            .where(ApiToken.workspace == workspace)
            .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        )
        if not include_inactive:
            now = utcnow()
            query = query.where(
                ApiToken.revoked_at.is_null() & (ApiToken.expires_at.is_null() | (ApiToken.expires_at > now))
            )
        if limit is not None:
            query = query.limit(limit).offset(offset)
        return list(query)

    def get(self, workspace: Workspace, name_or_id: str | int) -> ApiToken:
        """A token of the workspace by id, or by name (an active one first)."""
        query = ApiToken.select().where(ApiToken.workspace == workspace)
        text = str(name_or_id)
        if (wanted := parse_id(text)) is not None:
            found = query.where(ApiToken.id == wanted).first()
            if found:
                return found
        found = (
            query.where(ApiToken.name == text).order_by(ApiToken.revoked_at.is_null(False), ApiToken.id.desc()).first()
        )
        if found is None:
            raise NotFound(f"no token {text!r} in workspace {workspace.slug}")
        return found

    # -- changes ---------------------------------------------------------------------------
    def _clean_name(self, workspace: Workspace, name: str | None, exclude_id: int | None = None) -> str:
        name = " ".join((name or "").split())
        if not name:
            raise InvalidInput("name", "a name is required")
        if len(name) > MAX_NAME:
            raise InvalidInput("name", f"at most {MAX_NAME} characters")
        clash = ApiToken.select(ApiToken.id).where(
            (ApiToken.workspace == workspace)
            & (ApiToken.revoked_at.is_null())
            & (fn.LOWER(ApiToken.name) == name.lower())
        )
        if exclude_id is not None:
            clash = clash.where(ApiToken.id != exclude_id)
        if clash.exists():
            raise InvalidInput("name", f"an active token is already named {name!r}")
        return name

    def _clean_packs(self, packs) -> str | None:
        """The stored scope text (``accounts:write,contacts``) of ``packs`` (that text, a list of its
        items or a ``{pack: level}`` mapping); ``None``: every pack, read only."""
        return scopes.format_levels(scopes.parse(packs, self.known_packs))

    def _clean_tools(self, tools, pack_text: str | None) -> str | None:
        if tools is None or tools == "" or tools == []:
            return None
        if self.registry is None:
            raise InvalidInput("tools", "no tool packs are loaded here to check the tool names against")
        return switches.clean_narrowing(tools, self.registry, scopes.parse(pack_text) if pack_text else None)

    def create(
        self,
        workspace: Workspace,
        name: str,
        actor: Actor,
        expires: str | dt.datetime | dt.date | None | Literal[_Default.DEFAULT] = DEFAULT,
        packs=None,
        allowed_ips=None,
        rate_limit: str | None = None,
        tools=None,
    ) -> IssuedToken:
        """A new token. ``expires`` left out: the workspace policy's default; whatever is given must
        obey the policy (:mod:`poggio.identity.policy`). ``tools``: named tools within its packs it is narrowed
        to (``a,b`` or a list; checked against the loaded packs)."""
        if expires is DEFAULT:
            expires = policy.Policy.of(workspace).default_expiry
        expires_at = policy.check(workspace, parse_expiry(expires))
        pack_text = self._clean_packs(packs)
        tools_text = self._clean_tools(tools, pack_text)
        networks_text = clean_networks(allowed_ips)
        limit_text = clean_rate_limit(rate_limit, self.rate_limit)
        with writing():
            clean = self._clean_name(workspace, name)
            active = ApiToken.select().where((ApiToken.workspace == workspace) & ApiToken.revoked_at.is_null()).count()
            if active >= self.max_active_tokens:
                raise InvalidInput(
                    "name", f"this workspace already has {active} active tokens, the limit; revoke one first"
                )
            plaintext = generate()
            try:
                token = ApiToken.create(
                    workspace=workspace,
                    name=clean,
                    digest=digest(plaintext, self.pepper),
                    last_four=plaintext[-4:],
                    packs=pack_text,
                    created_by=actor.user,
                    expires_at=expires_at,
                    allowed_ips=networks_text,
                    rate_limit=limit_text,
                    tools=tools_text,
                )
            except IntegrityError:
                raise InvalidInput("name", f"an active token is already named {clean!r}") from None
            audit.record(
                "token.created",
                actor,
                workspace,
                target=clean,
                token_id=token.id,
                expires_at=expires_at,
                packs=pack_text,
                **({"allowed_ips": networks_text} if networks_text else {}),
                **({"rate_limit": limit_text} if limit_text else {}),
                **({"tools": tools_text} if tools_text else {}),
            )
        return IssuedToken(token, plaintext)

    def rotate(self, token: ApiToken, actor: Actor, grace="none", now: dt.datetime | None = None) -> IssuedToken:
        """A new secret for the token. The old one keeps working for ``grace`` (none, 1h, 24h, 7d:
        :func:`poggio.identity.policy.parse_span`) and then stops, to the second; a secret still in the overlap
        of an earlier rotation stops at once. An expired token comes back only this way: with a new
        secret (no overlap) and a fresh expiry as long as its last lifetime was, within the policy."""
        if token.revoked_at is not None:
            raise InvalidInput("token", "a revoked token cannot be rotated")
        span = policy.parse_span(grace)
        plaintext = generate()
        now = now or utcnow()
        fields = [
            ApiToken.digest,
            ApiToken.last_four,
            ApiToken.rotated_at,
            ApiToken.previous_digest,
            ApiToken.previous_last_four,
            ApiToken.previous_expires_at,
        ]
        with writing():
            expired = status(token, now) == "expired"
            if expired:
                assert token.expires_at is not None  # expired: it has an expiry
                lifetime = token.expires_at - (token.rotated_at or token.created_at)
                days = min(3650, max(1, round(lifetime / dt.timedelta(days=1))))
                token.expires_at = policy.cap(token.workspace, now + dt.timedelta(days=days), now)
                fields.append(ApiToken.expires_at)
            if span and not expired:
                ends = now + span
                if token.expires_at is not None:
                    ends = min(ends, token.expires_at)
                (token.previous_digest, token.previous_last_four, token.previous_expires_at) = (
                    token.digest,
                    token.last_four,
                    ends,
                )
            else:
                token.previous_digest = token.previous_last_four = token.previous_expires_at = None
            token.digest = digest(plaintext, self.pepper)
            token.last_four = plaintext[-4:]
            token.rotated_at = now
            token.save(only=fields)
            audit.record(
                "token.rotated",
                actor,
                token.workspace_id,
                target=token.name,
                token_id=token.id,
                old_secret_until=token.previous_expires_at or "now",
                **({"expires_at": token.expires_at} if ApiToken.expires_at in fields else {}),
            )
        return IssuedToken(token, plaintext)

    def revoke(self, token: ApiToken, actor: Actor) -> ApiToken:
        with writing():
            changed = (
                ApiToken.update(revoked_at=utcnow(), revoked_by=actor.user)
                .where((ApiToken.id == token.id) & ApiToken.revoked_at.is_null())
                .execute()
            )
            if changed:
                audit.record("token.revoked", actor, token.workspace_id, target=token.name, token_id=token.id)
        return ApiToken.get_by_id(token.id)

    def rename(self, token: ApiToken, name: str, actor: Actor) -> ApiToken:
        with writing():
            clean = self._clean_name(token.workspace, name, exclude_id=token.id)
            if clean != token.name:
                old = token.name
                token.name = clean
                try:
                    token.save(only=[ApiToken.name])
                except IntegrityError:
                    raise InvalidInput("name", f"an active token is already named {clean!r}") from None
                audit.record("token.renamed", actor, token.workspace_id, target=clean, token_id=token.id, old_name=old)
        return token

    def set_packs(self, token: ApiToken, packs, actor: Actor) -> ApiToken:
        """A new pack scope (``accounts:write,contacts``, a list or mapping; ``None``: every pack, read
        only), from the next request on."""
        if token.revoked_at is not None:
            raise InvalidInput("packs", "a revoked token stays revoked")
        text = self._clean_packs(packs)
        with writing():
            if text != token.packs:
                old = token.packs
                token.packs = text
                token.save(only=[ApiToken.packs])
                audit.record(
                    "token.scope_changed",
                    actor,
                    token.workspace_id,
                    target=token.name,
                    token_id=token.id,
                    old=old or "all packs, read",
                    new=text or "all packs, read",
                )
        return token

    def set_expiry(self, token: ApiToken, expires, actor: Actor) -> ApiToken:
        if token.revoked_at is not None:
            raise InvalidInput("expires", "a revoked token stays revoked")
        if status(token) == "expired":
            # A new expiry would bring the old secret back to life: an expired secret stays expired.
            raise InvalidInput(
                "expires", "this token has expired; its expiry cannot change. Rotate it to get a new secret"
            )
        expires_at = policy.check(token.workspace, parse_expiry(expires))
        with writing():
            if expires_at != token.expires_at:
                old = token.expires_at
                token.expires_at = expires_at
                token.expiry_capped_at = None
                token.save(only=[ApiToken.expires_at, ApiToken.expiry_capped_at])
                audit.record(
                    "token.expiry_changed",
                    actor,
                    token.workspace_id,
                    target=token.name,
                    token_id=token.id,
                    old=old,
                    new=expires_at,
                )
        return token

    def set_limits(self, token: ApiToken, actor: Actor, allowed_ips=..., rate_limit=...) -> ApiToken:
        """Change the token's networks and its own rate limit (``...``: keep; empty: none)."""
        if token.revoked_at is not None:
            raise InvalidInput("token", "a revoked token stays revoked")
        changes: dict[Field, str | None] = {}
        if allowed_ips is not ...:
            changes[ApiToken.allowed_ips] = clean_networks(allowed_ips)
        if rate_limit is not ...:
            changes[ApiToken.rate_limit] = clean_rate_limit(rate_limit, self.rate_limit)
        changes = {f: v for f, v in changes.items() if getattr(token, f.name) != v}
        if changes:
            with writing():
                ApiToken.update(changes).where(ApiToken.id == token.id).execute()
                audit.record(
                    "token.limits_changed",
                    actor,
                    token.workspace_id,
                    target=token.name,
                    token_id=token.id,
                    **{f.name: v or "none" for f, v in changes.items()},
                )
            for field, value in changes.items():
                setattr(token, field.name, value)
        return token
