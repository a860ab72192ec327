"""API tokens: their format, their digests, and their whole life cycle.

A token is ``pgo_`` + 27 random base62 characters (160.7 bits) + a 6-character base62 CRC32 of them,
so secret scanners can match ``pgo_[A-Za-z0-9]{30,}`` and a mistyped token is refused before any
database work. Only a SHA-256 digest (HMAC-SHA-256 when a pepper is configured) and the last four
characters are stored. Verification reads the database on every request, so a revocation or an
expiry holds on the very next request in every process: there is no cache to outlive it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

from peewee import JOIN, IntegrityError, fn

from poggio import audit, scopes
from poggio.audit import Actor
from poggio.db import database, utcnow, writing
from poggio.errors import InvalidInput, NotFound
from poggio.models import ApiToken, User, Workspace

PREFIX = "pgo_"
# The other secrets Poggio hands out share the format under prefixes of their own, so a leaked one says
# what it is: OAuth access tokens, OAuth refresh tokens, OAuth client secrets.
ACCESS_PREFIX, REFRESH_PREFIX, CLIENT_SECRET_PREFIX = "pgoa_", "pgor_", "pgos_"
BODY_LENGTH = 27
CHECKSUM_LENGTH = 6
TOKEN_LENGTH = len(PREFIX) + BODY_LENGTH + CHECKSUM_LENGTH
TOKEN_PATTERN = re.compile(r"pgo[ars]?_[A-Za-z0-9]{30,}")
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY = re.compile(rf"[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}")
MAX_NAME = 100
EXPIRY_CHOICES = (7, 30, 60, 90)
EXPIRING_SOON = dt.timedelta(days=7)


def _base62(number: int, width: int) -> str:
    out = []
    while number:
        number, rem = divmod(number, 62)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out)).rjust(width, "0")


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def generate(prefix: str = PREFIX) -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(BODY_LENGTH))
    return f"{prefix}{body}{_checksum(body)}"


def well_formed(token: str, prefix: str = PREFIX) -> bool:
    """Shape and checksum; costs no database work."""
    if not token.startswith(prefix) or len(token) != len(prefix) + BODY_LENGTH + CHECKSUM_LENGTH:
        return False
    rest = token[len(prefix):]
    if not _BODY.fullmatch(rest):
        return False
    return hmac.compare_digest(_checksum(rest[:BODY_LENGTH]), rest[BODY_LENGTH:])


def digest(token: str, pepper: str | None = None) -> str:
    if pepper:
        return hmac.new(pepper.encode(), token.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(token.encode()).hexdigest()


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
        "not_entitled": "This workspace does not have the MCP server entitlement. Ask your Poggio administrator or support.",
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
    writable: frozenset[str] = frozenset()  # the packs it may also write (poggio.scopes)

    @property
    def scope(self) -> scopes.PackScope:
        return scopes.PackScope(self.packs, self.writable)


@functools.cache
def _verify_sql(param: str) -> str:
    """The verification query as SQL, built once per placeholder style: this runs on every MCP
    request, and building it through the query builder cost more than SQLite's look-up."""
    sql, _ = (
        ApiToken.select(
            ApiToken.id, ApiToken.name, ApiToken.packs, ApiToken.expires_at, ApiToken.revoked_at,
            Workspace.id, Workspace.slug, Workspace.name, Workspace.mcp_enabled,
        )
        .join(Workspace)
        .where(ApiToken.digest == "")  # unique: at most one row
        .sql()
    )
    return sql


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    plaintext: str


class TokenService:
    """Every change to a token goes through here, and leaves an audit event."""

    def __init__(self, pepper: str | None = None, max_active_tokens: int = 100, known_packs: set[str] | None = None):
        self.pepper = pepper
        self.max_active_tokens = max_active_tokens
        self.known_packs = known_packs

    @classmethod
    def from_settings(cls, settings, known_packs: set[str] | None = None) -> TokenService:
        return cls(settings.token_pepper, settings.max_active_tokens, known_packs)

    # -- verification: the hot path of every MCP request ------------------------------------
    def verify(self, presented: str | None, now: dt.datetime | None = None) -> VerifiedToken:
        if not presented:
            raise TokenRejected("missing")
        if not well_formed(presented):
            raise TokenRejected("malformed")
        now = now or utcnow()
        cursor = database.execute_sql(_verify_sql(database.param), (digest(presented, self.pepper),))
        row = cursor.fetchone()
        cursor.close()
        if row is None:
            raise TokenRejected("invalid")
        token_id, name, packs, expires_at, revoked_at, ws_id, ws_slug, ws_name, mcp_enabled = row
        expires_at = ApiToken.expires_at.python_value(expires_at)
        if revoked_at is not None or (expires_at is not None and expires_at <= now):
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
        )

    # -- reads -----------------------------------------------------------------------------
    def list(self, workspace: Workspace, include_inactive: bool = True, limit: int | None = None,
             offset: int = 0) -> list[ApiToken]:
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
            query = query.where(ApiToken.revoked_at.is_null() & (ApiToken.expires_at.is_null() | (ApiToken.expires_at > now)))
        if limit is not None:
            query = query.limit(limit).offset(offset)
        return list(query)

    def get(self, workspace: Workspace, name_or_id: str | int) -> ApiToken:
        """A token of the workspace by id, or by name (an active one first)."""
        query = ApiToken.select().where(ApiToken.workspace == workspace)
        text = str(name_or_id)
        if text.isdigit():
            found = query.where(ApiToken.id == int(text)).first()
            if found:
                return found
        found = query.where(ApiToken.name == text).order_by(ApiToken.revoked_at.is_null(False), ApiToken.id.desc()).first()
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
            (ApiToken.workspace == workspace) & (ApiToken.revoked_at.is_null()) & (fn.LOWER(ApiToken.name) == name.lower())
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

    def create(
        self,
        workspace: Workspace,
        name: str,
        actor: Actor,
        expires: str | dt.datetime | dt.date | None = "90d",
        packs=None,
    ) -> IssuedToken:
        expires_at = parse_expiry(expires)
        pack_text = self._clean_packs(packs)
        with writing():
            clean = self._clean_name(workspace, name)
            active = ApiToken.select().where((ApiToken.workspace == workspace) & ApiToken.revoked_at.is_null()).count()
            if active >= self.max_active_tokens:
                raise InvalidInput("name", f"this workspace already has {active} active tokens, the limit; revoke one first")
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
                )
            except IntegrityError:
                raise InvalidInput("name", f"an active token is already named {clean!r}") from None
            audit.record("token.created", actor, workspace, target=clean, token_id=token.id,
                         expires_at=expires_at, packs=pack_text)
        return IssuedToken(token, plaintext)

    def rotate(self, token: ApiToken, actor: Actor) -> IssuedToken:
        """A new secret for the token; the old one stops working at once. An expired token comes back
        only this way: with a new secret and a fresh expiry as long as its last lifetime was."""
        if token.revoked_at is not None:
            raise InvalidInput("token", "a revoked token cannot be rotated")
        plaintext = generate()
        now = utcnow()
        fields = [ApiToken.digest, ApiToken.last_four, ApiToken.rotated_at]
        with writing():
            if status(token, now) == "expired":
                lifetime = token.expires_at - (token.rotated_at or token.created_at)
                days = min(3650, max(1, round(lifetime / dt.timedelta(days=1))))
                token.expires_at = now + dt.timedelta(days=days)
                fields.append(ApiToken.expires_at)
            token.digest = digest(plaintext, self.pepper)
            token.last_four = plaintext[-4:]
            token.rotated_at = now
            token.save(only=fields)
            audit.record("token.rotated", actor, token.workspace_id, target=token.name, token_id=token.id,
                         **({"expires_at": token.expires_at} if ApiToken.expires_at in fields else {}))
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
                audit.record("token.scope_changed", actor, token.workspace_id, target=token.name, token_id=token.id,
                             old=old or "all packs, read", new=text or "all packs, read")
        return token

    def set_expiry(self, token: ApiToken, expires, actor: Actor) -> ApiToken:
        if token.revoked_at is not None:
            raise InvalidInput("expires", "a revoked token stays revoked")
        if status(token) == "expired":
            # A new expiry would bring the old secret back to life: an expired secret stays expired.
            raise InvalidInput("expires", "this token has expired; its expiry cannot change. Rotate it to get a new secret")
        expires_at = parse_expiry(expires)
        with writing():
            if expires_at != token.expires_at:
                old = token.expires_at
                token.expires_at = expires_at
                token.save(only=[ApiToken.expires_at])
                audit.record("token.expiry_changed", actor, token.workspace_id, target=token.name,
                             token_id=token.id, old=old, new=expires_at)
        return token
