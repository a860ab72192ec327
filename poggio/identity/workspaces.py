"""Workspaces, users and memberships: creation, entitlement, passwords (bcrypt), and the changes that
end a user's portal sessions (a new password, removal, deactivation)."""

from __future__ import annotations

import functools
import re
from typing import TypeGuard

import bcrypt
from peewee import IntegrityError

from poggio.errors import InvalidInput, NotFound
from poggio.identity import id_jag, sessions
from poggio.records import audit
from poggio.records.audit import Actor
from poggio.storage.db import utcnow, writing
from poggio.storage.models import ROLES, Membership, OAuthGrant, User, Workspace

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MIN_PASSWORD = 10
BCRYPT_ROUNDS = 12


@functools.cache
def _dummy_hash() -> bytes:
    """A real hash to check against when the e-mail is unknown, so timing does not tell who has an
    account; made at the first sign-in, not at import (it took 0.2 s of every CLI command)."""
    return bcrypt.hashpw(b"poggio-timing-equaliser", bcrypt.gensalt(BCRYPT_ROUNDS))


def get_workspace(slug: str) -> Workspace:
    ws = Workspace.get_or_none(Workspace.slug == slug)
    if ws is None:
        raise NotFound(f"no workspace {slug!r}")
    return ws


def create_workspace(slug: str, name: str, mcp: bool, actor: Actor) -> Workspace:
    if not SLUG.match(slug or ""):
        raise InvalidInput("slug", "1-63 lower-case letters, digits and dashes, not starting or ending with a dash")
    if not (name or "").strip():
        raise InvalidInput("name", "a name is required")
    with writing():
        try:
            ws = Workspace.create(slug=slug, name=name.strip(), mcp_enabled=mcp)
        except IntegrityError:
            raise InvalidInput("slug", f"workspace {slug!r} already exists") from None
        audit.record("workspace.created", actor, ws, target=slug, mcp=mcp)
    return ws


def set_entitlement(ws: Workspace, mcp: bool, actor: Actor) -> Workspace:
    with writing():
        if ws.mcp_enabled != mcp:
            ws.mcp_enabled = mcp
            ws.save(only=[Workspace.mcp_enabled])
            audit.record("workspace.entitlement_changed", actor, ws, target=ws.slug, mcp=mcp)
    return ws


def hash_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise InvalidInput("password", f"at least {MIN_PASSWORD} characters")
    if len(password.encode()) > 72:
        raise InvalidInput("password", "at most 72 bytes (bcrypt's limit)")
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


def unusable_password_hash() -> str:
    """A password hash no password matches (a random secret no one is told), for users who sign in
    through single sign-on or are provisioned by SCIM. A low cost: the secret cannot be guessed."""
    import secrets

    return bcrypt.hashpw(secrets.token_urlsafe(32).encode(), bcrypt.gensalt(4)).decode()


def check_password(user: User | None, password: str | None) -> TypeGuard[User]:
    """Constant-effort check: an unknown user costs the same bcrypt work as a wrong password. True: ``user``
    is a user (active), and ``password`` theirs."""
    candidate = (password or "").encode()[:72]
    if user is None or not user.is_active:
        bcrypt.checkpw(candidate, _dummy_hash())
        return False
    return bcrypt.checkpw(candidate, user.password_hash.encode())


def find_user(email: str) -> User | None:
    return User.get_or_none(User.email == (email or "").strip().lower())


def create_user(email: str, password: str, workspace: Workspace, role: str, actor: Actor, name: str = "") -> User:
    """Create the user, or add an existing user to the workspace with ``role``."""
    email = (email or "").strip().lower()
    if not EMAIL.match(email):
        raise InvalidInput("email", f"{email!r} is not an e-mail address")
    if role not in ROLES:
        raise InvalidInput("role", f"one of {', '.join(ROLES)}")
    with writing():
        user = find_user(email)
        if user is None:
            user = User.create(email=email, name=name or email.split("@")[0], password_hash=hash_password(password))
        membership = Membership.get_or_none(user=user, workspace=workspace)
        if membership is None:
            Membership.create(user=user, workspace=workspace, role=role)
        elif membership.role != role:
            membership.role = role
            membership.save(only=[Membership.role])
        audit.record("user.created", actor, workspace, target=email, role=role)
    return user


def memberships(user: User) -> list[Membership]:
    return list(
        Membership.select(Membership, Workspace).join(Workspace).where(Membership.user == user).order_by(Workspace.name)
    )


def _change_and_end_sessions(user: User, action: str, actor: Actor, **changes) -> User:
    """Write ``changes`` to the user, end every portal session of theirs, and note it in the audit
    log of each of their workspaces."""
    with writing():
        User.update(**changes).where(User.id == user.id).execute()
        for name, value in changes.items():
            setattr(user, name, value)
        ended = sessions.end_all(user)
        for membership in user.memberships:
            audit.record(action, actor, membership.workspace_id, target=user.email, sessions_ended=ended)
    return user


def change_password(user: User, password: str, actor: Actor) -> User:
    """Set a new password and end every portal session of the user."""
    return _change_and_end_sessions(user, "user.password_changed", actor, password_hash=hash_password(password))


def deactivate_user(user: User, actor: Actor) -> User:
    """The user can no longer sign in, every session of theirs ends now, and so does every app they
    connected through OAuth (its tokens are refused on the next request)."""
    with writing():
        _change_and_end_sessions(user, "user.deactivated", actor, is_active=False)
        OAuthGrant.update(revoked_at=utcnow(), revoked_reason="approver deactivated").where(
            (OAuthGrant.user == user.id) & OAuthGrant.revoked_at.is_null()
        ).execute()
        for membership in Membership.select().where(Membership.user == user.id):
            id_jag.revoke_for_user(membership.workspace_id, user, "employee deactivated")
    return user


def remove_user(user: User, workspace: Workspace, actor: Actor) -> User:
    """Take the user out of ``workspace``, ending every session of theirs (a session may be in that
    workspace); a user left in no workspace is deactivated."""
    with writing():
        removed = Membership.delete().where((Membership.user == user) & (Membership.workspace == workspace)).execute()
        if not removed:
            raise NotFound(f"{user.email} is not a member of workspace {workspace.slug}")
        ended = sessions.end_all(user)
        id_jag.revoke_for_user(workspace, user, "employee removed")  # apps acting for them by ID-JAG
        # the apps they connected or asked for here end with their membership (refused from the next request)
        disconnected = (
            OAuthGrant.update(revoked_at=utcnow(), revoked_reason="member removed")
            .where(
                (OAuthGrant.user == user.id) & (OAuthGrant.workspace == workspace.id) & OAuthGrant.revoked_at.is_null()
            )
            .execute()
        )
        audit.record(
            "user.removed", actor, workspace, target=user.email, sessions_ended=ended, apps_disconnected=disconnected
        )
        if not Membership.select().where(Membership.user == user).exists():
            User.update(is_active=False).where(User.id == user.id).execute()
            user.is_active = False
    return user
