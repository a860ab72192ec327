"""A workspace's token policy: the expiry a new token gets by default, the longest any API token or
OAuth grant (connected app) may live, and whether "no expiry" is allowed.

Token creation, expiry edits, rotation and OAuth approvals (the consent page and ``client_credentials``
clients) all ask :func:`check` or :func:`cap`. Tightening the policy shortens what already outlives
it: every active token and grant whose expiry lies beyond now + the new maximum (or that had none)
expires at now + the new maximum, is marked ``expiry_capped_at`` so the list can say why, and the
audit log names how many.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from poggio.errors import InvalidInput
from poggio.records import audit
from poggio.records.audit import Actor
from poggio.storage.db import utcnow, writing
from poggio.storage.models import ApiToken, OAuthGrant, Workspace

MAX_DAYS = 3650


def parse_days(value, field: str, allow_none: bool = True) -> int | None:
    """``30d``/``30`` -> 30; ``none``/``never``/empty -> None (when allowed)."""
    if value is None:
        return None
    if isinstance(value, int):
        days = value
    else:
        text = str(value).strip().lower()
        if text in ("", "none", "never", "off"):
            if not allow_none:
                raise InvalidInput(field, "a number of days such as 30d")
            return None
        match = re.fullmatch(r"(\d{1,4})\s*d?", text)
        if not match:
            raise InvalidInput(field, "a number of days such as 30d" + (", or 'none'" if allow_none else ""))
        days = int(match.group(1))
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(field, f"between 1 and {MAX_DAYS} days")
    return days


def parse_span(value, field: str = "grace", longest: dt.timedelta = dt.timedelta(days=7)) -> dt.timedelta:
    """``none``/``0`` -> nothing; ``1h``, ``24h``, ``7d``, ``90m`` -> that long (at most ``longest``)."""
    text = str(value if value is not None else "none").strip().lower()
    if text in ("", "none", "0", "no"):
        return dt.timedelta(0)
    match = re.fullmatch(r"(\d{1,5})\s*([mhd])", text)
    if not match:
        raise InvalidInput(field, "none, or a span such as 1h, 24h or 7d")
    unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    span = dt.timedelta(**{unit: int(match.group(1))})
    if span > longest:
        raise InvalidInput(field, f"at most {longest.days} days")
    return span


@dataclass(frozen=True)
class Policy:
    default_expiry_days: int | None
    max_lifetime_days: int | None
    allow_no_expiry: bool

    @classmethod
    def of(cls, workspace: Workspace) -> Policy:
        return cls(
            workspace.default_expiry_days,
            workspace.max_lifetime_days,
            bool(workspace.allow_no_expiry) and workspace.max_lifetime_days is None,
        )

    @property
    def default_expiry(self) -> str:
        """The default as ``parse_expiry`` takes it, within the maximum."""
        days = self.default_expiry_days
        if days is None and not self.allow_no_expiry:
            days = self.max_lifetime_days or 90
        if days is not None and self.max_lifetime_days is not None:
            days = min(days, self.max_lifetime_days)
        return "never" if days is None else f"{days}d"

    def latest(self, now: dt.datetime) -> dt.datetime | None:
        return None if self.max_lifetime_days is None else now + dt.timedelta(days=self.max_lifetime_days)

    def describe(self) -> str:
        parts = [
            f"new tokens expire after {self.default_expiry.removesuffix('d')} days by default"
            if self.default_expiry != "never"
            else "new tokens do not expire by default"
        ]
        parts.append(
            f"no token or app lives longer than {self.max_lifetime_days} days"
            if self.max_lifetime_days
            else "no maximum lifetime"
        )
        parts.append("tokens without expiry allowed" if self.allow_no_expiry else "every token expires")
        return "; ".join(parts)


def check(
    workspace: Workspace, expires_at: dt.datetime | None, now: dt.datetime | None = None, field: str = "expires"
) -> dt.datetime | None:
    """``expires_at`` if the workspace's policy allows it, else :class:`InvalidInput` saying why."""
    policy = Policy.of(workspace)
    now = now or utcnow()
    latest = policy.latest(now)
    if expires_at is None and not policy.allow_no_expiry:
        raise InvalidInput(
            field,
            "this workspace's policy requires an expiry"
            + (f" of at most {policy.max_lifetime_days} days" if latest else ""),
        )
    # a date means "through that day": a day's slack, so the last allowed date can be chosen
    if latest is not None and expires_at is not None and expires_at > latest + dt.timedelta(days=1):
        raise InvalidInput(field, f"at most {policy.max_lifetime_days} days under this workspace's policy")
    if latest is not None and expires_at is not None:
        expires_at = min(expires_at, latest)
    return expires_at


def cap(workspace: Workspace, expires_at: dt.datetime | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """``expires_at`` shortened to the workspace's maximum lifetime (for OAuth approvals: the app asked,
    the policy decides)."""
    latest = Policy.of(workspace).latest(now or utcnow())
    if latest is None:
        return expires_at
    return latest if expires_at is None else min(expires_at, latest)


def set_policy(
    workspace: Workspace, actor: Actor, *, default_expiry=..., max_lifetime=..., allow_no_expiry: bool | None = None
) -> tuple[Workspace, int]:
    """Change what is given (``...``/None: keep); returns the workspace and how many active tokens and
    grants were shortened to the new maximum."""
    default_days = (
        workspace.default_expiry_days if default_expiry is ... else parse_days(default_expiry, "default_expiry")
    )
    max_days = workspace.max_lifetime_days if max_lifetime is ... else parse_days(max_lifetime, "max_lifetime")
    allow = bool(workspace.allow_no_expiry) if allow_no_expiry is None else allow_no_expiry
    if max_days is not None and allow_no_expiry:
        raise InvalidInput("allow_no_expiry", "tokens without expiry cannot be allowed with a maximum lifetime")
    if max_days is not None:
        allow = False
    if default_days is None and not allow:
        if default_expiry is not ... and default_expiry is not None:
            raise InvalidInput("default_expiry", "'no expiry' is not allowed by this policy; choose a number of days")
        default_days = max_days or 90
    if max_days is not None and default_days is not None and default_days > max_days:
        if default_expiry is not ...:
            raise InvalidInput("default_expiry", f"longer than the maximum lifetime ({max_days} days)")
        default_days = max_days
    now = utcnow()
    capped = 0
    with writing():
        old = Policy.of(workspace)
        (workspace.default_expiry_days, workspace.max_lifetime_days, workspace.allow_no_expiry) = (
            default_days,
            max_days,
            allow,
        )
        workspace.save(only=[Workspace.default_expiry_days, Workspace.max_lifetime_days, Workspace.allow_no_expiry])
        if max_days is not None:
            latest = now + dt.timedelta(days=max_days)
            for model in (ApiToken, OAuthGrant):
                capped += (
                    model.update(expires_at=latest, expiry_capped_at=now)
                    .where(
                        (model.workspace == workspace.id)
                        & model.revoked_at.is_null()
                        & (model.expires_at.is_null() | (model.expires_at > latest))
                    )
                    .execute()
                )
            # an old secret in its overlap window ends no later than the token
            (
                ApiToken.update(previous_expires_at=latest)
                .where((ApiToken.workspace == workspace.id) & (ApiToken.previous_expires_at > latest))
                .execute()
            )
        new = Policy.of(workspace)
        if new != old:
            audit.record(
                "workspace.policy_changed",
                actor,
                workspace,
                target=workspace.slug,
                default_expiry_days=default_days or "none",
                max_lifetime_days=max_days or "none",
                allow_no_expiry=allow,
                shortened=capped,
            )
    return workspace, capped
