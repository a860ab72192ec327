"""What needs an admin's attention in a workspace: the home page's list, and the ``usage.unusual``
webhook event.

Each finding names its subject (an API token, a connected app, a webhook endpoint) so the portal can
link to where it is fixed. Every query is scoped by the workspace and bounded: daily counts come from
the per-day usage tables (TokenUsage, GrantUsage), today's refusals from the activity record's
(workspace, outcome, at) index, and "never seen before" compares the last day with at most
``HISTORY_ROWS`` earlier requests of each subject, over its (kind, subject_id, at) index.

Unusual use is either a network (its /24 or /48) or client a token or app has not used in its recent
history, or a day's calls above ``VOLUME_FACTOR`` times its usual day: the median of its daily calls
over the 30 days before today (days without calls count as 0; when that median is 0, the mean). The
factor sits above the ordinary swings of a steady integration (weekdays against weekends, a monthly
report) and below what a runaway loop, a leaked token or a scraper does; the operators' documentation
says why it is 5. A day needs ``VOLUME_FLOOR`` calls as well, so a rarely used token is not news.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import statistics
from dataclasses import dataclass, field

from peewee import fn

from poggio.identity import app_access
from poggio.storage.db import tuple_rows, utcnow
from poggio.storage.models import Activity, ApiToken, GrantUsage, OAuthClient, OAuthGrant, TokenUsage, User, Workspace

EXPIRING_WITHIN = dt.timedelta(days=7)
UNUSED_FOR = dt.timedelta(days=30)
VOLUME_FACTOR = 5
VOLUME_FLOOR = 100
HISTORY_DAYS = 30
HISTORY_ROWS = 20_000
ERROR_FLOOR = 20  # calls in the last two days before an error rate means anything
ERROR_RATE = 0.10  # ... and at least this share failing
ERROR_RISE = 2.0  # ... and at least twice the share of the week before
MAX_ITEMS = 20  # of each kind, on the home page


@dataclass
class Finding:
    kind: str  # expiring, request, unused, errors, refused, unusual, webhook
    text: str
    subject: str | None = None  # token, grant, webhook, workspace
    subject_id: int | None = None
    detail: dict = field(default_factory=dict)


def pending_app_requests(workspace: Workspace | int) -> list[Finding]:
    """Members' requests for apps, waiting for an admin (:mod:`poggio.identity.app_access`), oldest first."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace.get_by_id(workspace)
    return [
        Finding(
            "request",
            f"{g.user.email if g.user is not None else 'Someone'} asks to connect {g.client.name} "
            f"({g.packs}) since {g.created_at:%Y-%m-%d %H:%M} UTC",
            "request",
            g.id,
            {"user_id": g.user_id},
        )
        for g in app_access.requests(ws)
    ]


def _wid(workspace) -> int:
    return workspace if isinstance(workspace, int) else workspace.id


def _active_tokens(wid: int):
    return ApiToken.select().where((ApiToken.workspace == wid) & ApiToken.revoked_at.is_null())


def _active_grants(wid: int):
    return (
        OAuthGrant.select(OAuthGrant, OAuthClient.name)
        .join(OAuthClient)
        .where((OAuthGrant.workspace == wid) & OAuthGrant.revoked_at.is_null())
    )


def expiring(workspace, now: dt.datetime | None = None) -> list[Finding]:
    now = now or utcnow()
    wid = _wid(workspace)
    found = []
    for t in (
        _active_tokens(wid)
        .where(ApiToken.expires_at.between(now, now + EXPIRING_WITHIN))
        .order_by(ApiToken.expires_at)
        .limit(MAX_ITEMS)
    ):
        found.append(Finding("expiring", f"Token “{t.name}” expires {t.expires_at:%Y-%m-%d %H:%M} UTC", "token", t.id))
    for g in (
        _active_grants(wid)
        .where(OAuthGrant.expires_at.between(now, now + EXPIRING_WITHIN))
        .order_by(OAuthGrant.expires_at)
        .limit(MAX_ITEMS)
    ):
        found.append(
            Finding("expiring", f"App “{g.client.name}” loses access {g.expires_at:%Y-%m-%d %H:%M} UTC", "grant", g.id)
        )
    return found


def unused(workspace, now: dt.datetime | None = None) -> list[Finding]:
    """Active tokens at least 30 days old that no one has used in the last 30 days."""
    now = now or utcnow()
    cutoff = now - UNUSED_FOR
    idle = ApiToken.last_used_at.is_null() | (ApiToken.last_used_at < cutoff)
    alive = ApiToken.expires_at.is_null() | (ApiToken.expires_at > now)
    rows = (
        _active_tokens(_wid(workspace))
        .where((ApiToken.created_at <= cutoff) & idle & alive)
        .order_by(ApiToken.created_at)
        .limit(MAX_ITEMS)
    )
    return [
        Finding(
            "unused",
            f"Token “{t.name}” "
            + (f"not used since {t.last_used_at:%Y-%m-%d}" if t.last_used_at else "never used")
            + " — revoke it if nothing needs it",
            "token",
            t.id,
        )
        for t in rows
    ]


def _daily(usage, owner, ids: list[int], since: dt.date) -> dict[int, dict[dt.date, tuple[int, int]]]:
    found: dict[int, dict[dt.date, tuple[int, int]]] = {}
    if not ids:
        return found
    rows = (
        usage.select(owner, usage.day, fn.SUM(usage.calls), fn.SUM(usage.errors))
        .where(owner.in_(ids) & (usage.day >= since))
        .group_by(owner, usage.day)
        .tuples()
    )
    for subject, day, calls, errors in rows:
        if isinstance(day, str):
            day = dt.date.fromisoformat(day)
        found.setdefault(subject, {})[day] = (int(calls or 0), int(errors or 0))
    return found


def _subjects(wid: int):
    """(kind, id, label) of the workspace's active tokens and connected apps, with their daily counts
    since 31 days ago."""
    today = utcnow().date()
    since = today - dt.timedelta(days=HISTORY_DAYS)
    tokens = {t.id: t.name for t in _active_tokens(wid).select(ApiToken.id, ApiToken.name)}
    grants = {g.id: g.client.name for g in _active_grants(wid)}
    return today, [
        ("token", tokens, _daily(TokenUsage, TokenUsage.token, list(tokens), since)),
        ("grant", grants, _daily(GrantUsage, GrantUsage.grant, list(grants), since)),
    ]


def _label(kind: str, name: str) -> str:
    return f"Token “{name}”" if kind == "token" else f"App “{name}”"


def rising_errors(workspace) -> list[Finding]:
    today, groups = _subjects(_wid(workspace))
    recent_days = {today, today - dt.timedelta(days=1)}
    found = []
    for kind, names, daily in groups:
        for subject, days in daily.items():
            recent = [v for d, v in days.items() if d in recent_days]
            before = [v for d, v in days.items() if today - dt.timedelta(days=8) <= d < today - dt.timedelta(days=1)]
            calls, errors = sum(c for c, _ in recent), sum(e for _, e in recent)
            if calls < ERROR_FLOOR or errors / calls < ERROR_RATE:
                continue
            base_calls, base_errors = sum(c for c, _ in before), sum(e for _, e in before)
            base = base_errors / base_calls if base_calls else 0.0
            if errors / calls >= ERROR_RISE * base:
                found.append(
                    Finding(
                        "errors",
                        f"{_label(kind, names[subject])}: {errors} of {calls} calls failed "
                        f"in the last two days ({errors / calls:.0%}; {base:.0%} the week before)",
                        kind,
                        subject,
                    )
                )
    return found[:MAX_ITEMS]


def refused_today(workspace, now: dt.datetime | None = None) -> list[Finding]:
    now = now or utcnow()
    start = dt.datetime.combine(now.date(), dt.time())
    found = []
    for outcome, words in (("refused", "refused (network, scope or policy)"), ("rate_limited", "over a rate limit")):
        count = (
            Activity.select()
            .where((Activity.workspace == _wid(workspace)) & (Activity.outcome == outcome) & (Activity.at >= start))
            .count()
        )
        if count:
            found.append(
                Finding(
                    "refused",
                    f"{count} call{'s' if count != 1 else ''} {words} today",
                    "workspace",
                    None,
                    {"outcome": outcome, "count": count},
                )
            )
    return found


def network_of(ip: str | None) -> str | None:
    """The network an address is counted in: its /24 (IPv4) or /48 (IPv6)."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def unusual_use(workspace, now: dt.datetime | None = None) -> list[Finding]:
    """A token or app used in the last day from a network, or by a client, it had not used in its
    recent history; or today above VOLUME_FACTOR times its usual day (see the module's text)."""
    now = now or utcnow()
    wid = _wid(workspace)
    day_ago = now - dt.timedelta(days=1)
    found: list[Finding] = []
    today, groups = _subjects(wid)
    names = {kind: labels for kind, labels, _ in groups}
    # new networks and clients
    recent = (
        Activity.select(Activity.kind, Activity.subject_id, Activity.ip, Activity.client)
        .where((Activity.workspace == wid) & (Activity.at >= day_ago))
        .group_by(Activity.kind, Activity.subject_id, Activity.ip, Activity.client)
        .limit(500)
    )
    by_subject: dict[tuple[str, int], tuple[set, set]] = {}
    for kind, subject, ip, client in tuple_rows(recent):
        nets, clients = by_subject.setdefault((kind, subject), (set(), set()))
        if network_of(ip):
            nets.add(network_of(ip))
        if client:
            clients.add(client)
    for (kind, subject), (nets, clients) in list(by_subject.items())[: MAX_ITEMS * 2]:
        if subject not in names.get(kind, {}):
            continue  # revoked since
        history = (
            Activity.select(Activity.ip, Activity.client)
            .where(
                (Activity.kind == kind)
                & (Activity.subject_id == subject)
                & (Activity.at < day_ago)
                & (Activity.at >= now - dt.timedelta(days=HISTORY_DAYS))
            )
            .order_by(Activity.at.desc())
            .limit(HISTORY_ROWS)
        )
        seen_nets, seen_clients = set(), set()
        any_history = False
        for row in tuple_rows(history):
            any_history = True
            if network_of(row[0]):
                seen_nets.add(network_of(row[0]))
            if row[1]:
                seen_clients.add(row[1])
        if not any_history:
            continue  # nothing usual to compare with yet
        label = _label(kind, names[kind][subject])
        for net in sorted(nets - seen_nets):
            found.append(
                Finding(
                    "unusual",
                    f"{label} used from a network it had not used before ({net})",
                    kind,
                    subject,
                    {"reason": "network", "network": net},
                )
            )
        for client in sorted(clients - seen_clients):
            found.append(
                Finding(
                    "unusual",
                    f"{label} used by a client it had not used before ({client})",
                    kind,
                    subject,
                    {"reason": "client", "client": client},
                )
            )
    # volume
    for kind, labels, daily in groups:
        for subject, days in daily.items():
            calls_today = days.get(today, (0, 0))[0]
            if calls_today < VOLUME_FLOOR:
                continue
            past = [days.get(today - dt.timedelta(days=i), (0, 0))[0] for i in range(1, HISTORY_DAYS + 1)]
            usual = statistics.median(past) or statistics.mean(past)
            if usual and calls_today > VOLUME_FACTOR * usual:
                found.append(
                    Finding(
                        "unusual",
                        f"{_label(kind, labels[subject])}: {calls_today} calls today, "
                        f"{calls_today / usual:.0f} times its usual {usual:g} a day",
                        kind,
                        subject,
                        {"reason": "volume", "calls": calls_today, "usual": usual},
                    )
                )
    return found[:MAX_ITEMS]


def webhook_trouble(workspace) -> list[Finding]:
    from poggio.records.webhook_outbox import WebhookEndpoint

    rows = WebhookEndpoint.select().where(
        (WebhookEndpoint.workspace == _wid(workspace))
        & (WebhookEndpoint.paused_at.is_null(False) | WebhookEndpoint.failing_since.is_null(False))
    )
    return [
        Finding(
            "webhook",
            f"Webhook endpoint {e.url} "
            + (
                f"paused since {e.paused_at:%Y-%m-%d %H:%M} UTC: every delivery failed for a day"
                if e.paused_at
                else f"failing since {e.failing_since:%Y-%m-%d %H:%M} UTC"
            ),
            "webhook",
            e.id,
        )
        for e in rows
    ]


def for_admin(workspace) -> dict[str, list[Finding]]:
    """Everything on an admin's home page, by section (each empty when all is well)."""
    now = utcnow()
    return {
        "expiring": expiring(workspace, now),
        "requests": list(pending_app_requests(workspace)),
        "unused": unused(workspace, now),
        "errors": rising_errors(workspace),
        "refused": refused_today(workspace, now),
        "unusual": unusual_use(workspace, now),
        "webhooks": webhook_trouble(workspace),
    }


def for_member(workspace, user: User) -> dict[str, list]:
    """A member's own connected apps (the ones they approved) and their app requests."""
    apps = list(_active_grants(_wid(workspace)).where(OAuthGrant.user == user.id).order_by(OAuthGrant.created_at))
    return {
        "apps": apps,
        "requests": [r.text for r in pending_app_requests(workspace) if r.detail.get("user_id") == user.id],
    }
