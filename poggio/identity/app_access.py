"""Admins decide which apps and who may ask: a workspace's app policy and members' requests.

**Which apps**: ``any``, or only those ``listed``. A listed entry is a Client ID Metadata Document URL
(https; an entry ending in ``/`` admits every document URL under it) or the client id of an app
registered through dynamic registration (``pgc_…``): a DCR app's name is its own claim, so it can be
listed only by the client id it was given. A workspace's own OAuth clients (``client_credentials``)
are always allowed: an admin created them.

**Who may connect**: ``admins`` (an admin's approval on the consent page makes a grant), or
``members`` too: a member's approval is a *request*. Its grant is created with ``approval =
"pending"``; the app gets tokens at once, but the MCP server refuses every call with
``approval_pending`` (checked from the database on every request, as revocation is) until an admin
approves (the next call works) or denies (the grant is revoked). A member's grant lives no longer
than the member: removal, a role or policy that no longer lets them connect apps, or deactivation
ends it, as an admin's grant ends today (:meth:`poggio.identity.oauth.OAuthService.verify_access`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from peewee import JOIN

from poggio.errors import InvalidInput, NotFound
from poggio.records import audit
from poggio.records.audit import Actor
from poggio.storage.db import utcnow, writing
from poggio.storage.models import Membership, OAuthClient, OAuthGrant, User, Workspace

APPS = ("any", "listed")
ACCESS = ("admins", "members")
PENDING, APPROVED, DENIED = "pending", "approved", "denied"
MAX_LISTED = 200
# names a self-registered (DCR) app may claim to look like a well-known client; shown with a warning
WELL_KNOWN = (
    "claude",
    "chatgpt",
    "openai",
    "anthropic",
    "cursor",
    "vs code",
    "vscode",
    "visual studio code",
    "copilot",
    "github copilot",
    "gemini",
    "windsurf",
)


@dataclass(frozen=True)
class AppPolicy:
    apps: str
    allowed: tuple[str, ...]
    access: str

    @classmethod
    def of(cls, workspace: Workspace) -> AppPolicy:
        return cls(
            workspace.app_policy or "any", tuple(_lines(workspace.allowed_apps)), workspace.app_access or "admins"
        )

    def allows(self, client: OAuthClient) -> bool:
        """Whether ``client`` may be connected to the workspace under this policy."""
        if client.kind == "confidential" or self.apps == "any":
            return True
        return any(matches(entry, client) for entry in self.allowed)

    def may_connect(self, role: str | None) -> str | None:
        """What a member of ``role`` does on the consent page: ``approve``, ``request``, or None."""
        if role == "admin":
            return "approve"
        if role == "member" and self.access == "members":
            return "request"
        return None

    def describe(self) -> str:
        which = (
            "any app may connect"
            if self.apps == "any"
            else f"only listed apps may connect ({len(self.allowed)} listed)"
        )
        who = "admins connect apps" if self.access == "admins" else "members may request apps, an admin approves"
        return f"{which}; {who}"


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def matches(entry: str, client: OAuthClient) -> bool:
    """A listed entry admits ``client``: the same client id, or (an https entry ending in ``/``) a
    metadata document URL under it."""
    if client.client_id == entry:
        return True
    return client.kind == "metadata" and entry.endswith("/") and client.client_id.startswith(entry)


def check_entry(value: str) -> str:
    """An entry of the list, or :class:`InvalidInput` saying what an entry may be."""
    entry = (value or "").strip()
    if entry.startswith("pgc_") and re.fullmatch(r"pgc_[A-Za-z0-9_-]{10,60}", entry):
        return entry
    parts = urlsplit(entry)
    if (
        parts.scheme == "https"
        and parts.hostname
        and not parts.fragment
        and not parts.username
        and len(entry) <= 500
        and not re.search(r"\s", entry)
    ):
        if not parts.path:
            raise InvalidInput("allow_app", f"{entry!r}: add a path, such as {entry}/ for every app under it")
        return entry
    raise InvalidInput(
        "allow_app",
        f"{entry!r} is neither an https URL of a client metadata document (or a "
        "prefix ending in /) nor the client id of a registered app (pgc_…); "
        "a self-registered app's name is its own claim and cannot be listed",
    )


def set_app_policy(
    workspace: Workspace,
    actor: Actor,
    *,
    apps: str | None = None,
    allowed: list[str] | None = None,
    access: str | None = None,
) -> tuple[Workspace, int]:
    """Change what is given (None: keep). Returns the workspace and how many connected apps ended
    because the new policy no longer admits them (an unlisted app; a member's app when only admins
    may connect apps)."""
    if apps is not None and apps not in APPS:
        raise InvalidInput("apps", f"one of {', '.join(APPS)}")
    if access is not None and access not in ACCESS:
        raise InvalidInput("app_access", f"one of {', '.join(ACCESS)}")
    entries = None
    if allowed is not None:
        entries = list(dict.fromkeys(check_entry(e) for e in allowed if (e or "").strip()))
        if len(entries) > MAX_LISTED:
            raise InvalidInput("allow_app", f"at most {MAX_LISTED} entries")
    new_apps = apps or workspace.app_policy or "any"
    new_list = entries if entries is not None else _lines(workspace.allowed_apps)
    if new_apps == "listed" and not new_list:
        raise InvalidInput(
            "allow_app", "list at least one app (its metadata URL or client id) to allow only listed apps"
        )
    old = AppPolicy.of(workspace)
    ended = 0
    with writing():
        workspace.app_policy = new_apps
        workspace.allowed_apps = "\n".join(new_list) or None
        workspace.app_access = access or workspace.app_access or "admins"
        workspace.save(only=[Workspace.app_policy, Workspace.allowed_apps, Workspace.app_access])
        new = AppPolicy.of(workspace)
        if new == old:
            return workspace, 0
        now = utcnow()
        live = (
            OAuthGrant.select(OAuthGrant, OAuthClient)
            .join(OAuthClient)
            .where((OAuthGrant.workspace == workspace.id) & OAuthGrant.revoked_at.is_null())
        )
        for grant in live:
            reason = (
                "no longer allowed by the app policy"
                if not new.allows(grant.client)
                else "members may no longer connect apps"
                if grant.approval is not None and new.access == "admins"
                else None
            )
            if reason is None:
                continue
            ended += (
                OAuthGrant.update(revoked_at=now, revoked_by=actor.user, revoked_reason=reason)
                .where((OAuthGrant.id == grant.id) & OAuthGrant.revoked_at.is_null())
                .execute()
            )
        audit.record(
            "workspace.app_policy_changed",
            actor,
            workspace,
            target=workspace.slug,
            apps=new.apps,
            allowed=list(new.allowed),
            app_access=new.access,
            disconnected=ended,
        )
    return workspace, ended


def refuse(workspace: Workspace, client: OAuthClient, actor: Actor) -> str:
    """Put an app the policy does not admit on record; returns the sentence the app's person reads."""
    audit.record(
        "oauth.refused_by_policy",
        actor,
        workspace,
        target=client.name[:254],
        client_id=client.client_id,
        kind=client.kind,
    )
    return (
        f"The administrators of {workspace.name} allow only the apps they listed, and this app "
        f"({client.client_id}) is not one of them. Ask an administrator to add it in Settings > MCP Server."
    )


# -- requests ----------------------------------------------------------------------------------------
def requests(workspace: Workspace, limit: int = 200) -> list[OAuthGrant]:
    """The workspace's pending requests, oldest first, with their app and requester."""
    return list(
        OAuthGrant.select(OAuthGrant, OAuthClient, User)
        .join(OAuthClient)
        .switch(OAuthGrant)
        .join(User, JOIN.LEFT_OUTER, on=(OAuthGrant.user == User.id))
        .where(
            (OAuthGrant.workspace == workspace.id) & (OAuthGrant.approval == PENDING) & OAuthGrant.revoked_at.is_null()
        )
        .order_by(OAuthGrant.created_at, OAuthGrant.id)
        .limit(limit)
    )


def request_of(workspace: Workspace, ident: str | int) -> OAuthGrant:
    """A request of ``workspace`` by its id (``12`` or ``g12``), pending or decided."""
    text = str(ident).strip()
    text = text[1:] if text[:1] == "g" else text
    found = (
        OAuthGrant.select(OAuthGrant, OAuthClient)
        .join(OAuthClient)
        .where(
            (OAuthGrant.workspace == workspace.id) & (OAuthGrant.id == int(text)) & OAuthGrant.approval.is_null(False)
        )
        .first()
        if text.isdigit() and len(text) < 18
        else None
    )
    if found is None:
        raise NotFound(f"no request {ident!r} in workspace {workspace.slug}")
    return found


def decide(grant: OAuthGrant, approve: bool, actor: Actor) -> OAuthGrant:
    """Approve (the app's next call works) or deny (its grant ends) a pending request. A request
    already decided, or whose grant ended, is refused with :class:`InvalidInput`."""
    now = utcnow()
    with writing():
        changes = {"approval": APPROVED if approve else DENIED, "decided_at": now, "decided_by": actor.user}
        if not approve:
            changes.update(revoked_at=now, revoked_by=actor.user, revoked_reason="request denied")
        changed = (
            OAuthGrant.update(changes)
            .where((OAuthGrant.id == grant.id) & (OAuthGrant.approval == PENDING) & OAuthGrant.revoked_at.is_null())
            .execute()
        )
        if not changed:
            raise InvalidInput("request", "this request was already decided, or the app was disconnected")
        audit.record(
            "oauth.request_approved" if approve else "oauth.request_denied",
            actor,
            grant.workspace_id,
            target=grant.client.name[:254],
            grant_id=grant.id,
            client_id=grant.client.client_id,
            requester=grant.user.email if grant.user is not None else None,
            packs=grant.packs,
        )
    return OAuthGrant.select(OAuthGrant, OAuthClient).join(OAuthClient).where(OAuthGrant.id == grant.id).get()


def requests_of_user(user: User, limit: int = 100) -> list[OAuthGrant]:
    """Every request ``user`` made, in any workspace, newest first (the member's own page)."""
    return list(
        OAuthGrant.select(OAuthGrant, OAuthClient, Workspace)
        .join(OAuthClient)
        .switch(OAuthGrant)
        .join(Workspace)
        .where((OAuthGrant.user == user.id) & OAuthGrant.approval.is_null(False))
        .order_by(OAuthGrant.created_at.desc(), OAuthGrant.id.desc())
        .limit(limit)
    )


def request_state(grant: OAuthGrant, now=None) -> str:
    """pending, approved, denied, revoked or expired: what the member's page and the CLI say."""
    now = now or utcnow()
    if grant.approval == DENIED:
        return "denied"
    if grant.revoked_at is not None:
        return "revoked"
    if grant.expires_at is not None and grant.expires_at <= now:
        return "expired"
    return grant.approval or APPROVED


def role_in(user: User, workspace: Workspace) -> str | None:
    membership = Membership.get_or_none((Membership.user == user.id) & (Membership.workspace == workspace.id))
    return membership.role if membership else None


# -- how an app is identified ---------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """How Poggio knows an app: ``verified`` (a metadata document fetched from ``host``),
    ``self-asserted`` (a name it registered itself) or ``workspace`` (an admin's own client); and a
    warning when a self-registered app claims a well-known name."""

    how: str
    host: str | None
    warning: str | None

    @property
    def label(self) -> str:
        if self.how == "verified":
            return f"verified: identified by its URL on {self.host}"
        if self.how == "workspace":
            return "this workspace's OAuth client"
        return "self-asserted name (registered itself; not verified)"


def identity(client: OAuthClient) -> Identity:
    if client.kind == "metadata":
        return Identity("verified", urlsplit(client.client_id).hostname, None)
    if client.kind == "confidential":
        return Identity("workspace", None, None)
    folded = re.sub(r"[^a-z0-9 ]", "", re.sub(r"[\s_\-.]+", " ", (client.name or "").lower())).strip()
    claimed = next((name for name in WELL_KNOWN if re.search(rf"\b{re.escape(name)}\b", folded)), None)
    warning = (
        (
            f"This app calls itself “{client.name}”, a well-known app's name, but registered itself: nothing "
            "proves who runs it. The real app identifies itself by its own URL. Approve only if you started "
            "this connection yourself."
        )
        if claimed
        else None
    )
    return Identity("self-asserted", None, warning)
