"""The ``poggio`` command."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from poggio import __version__
from poggio.commands import identity as identity_cli
from poggio.commands.base import App, friendly_errors, pass_app
from poggio.display import visible
from poggio.errors import NotFound
from poggio.identity import scopes
from poggio.records.audit import Actor
from poggio.settings import Settings
from poggio.storage.db import parse_id, refresh_statistics

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar


class PoggioGroup(click.Group):
    """The command group: a database error no command expected ends in one line, not a traceback."""

    def invoke(self, ctx: click.Context):
        from peewee import DatabaseError

        try:
            return super().invoke(ctx)
        except DatabaseError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if "no such table" in reason or ("relation" in reason and "does not exist" in reason):
                raise click.ClickException(
                    f"The database has no Poggio schema yet, or an older one ({reason}): run `poggio db upgrade`."
                ) from None
            raise click.ClickException(f"The database refused: {reason}. Check POGGIO_DATABASE_URL.") from None


@click.group(cls=PoggioGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="poggio")
def main() -> None:
    """Poggio: a sales workspace whose admins give outside software access over MCP."""


# -- db ----------------------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@pass_app
@friendly_errors
def db_upgrade(app: App) -> None:
    """Create or migrate the schema (core and every loaded pack). Safe to run again."""
    from poggio.runtime.schema import upgrade

    app.db()
    applied = upgrade(app.registry)
    done = [f"{component}: {', '.join(names)}" for component, names in applied.items() if names]
    click.echo("\n".join(done) if done else "Schema is up to date.")


# -- workspace ---------------------------------------------------------------------------------------
@main.group()
def workspace() -> None:
    """Workspaces and their MCP entitlement."""


@workspace.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="Display name.")
@click.option("--mcp/--no-mcp", default=False, help="Grant the MCP server entitlement.")
@pass_app
@friendly_errors
def workspace_create(app: App, slug: str, name: str, mcp: bool) -> None:
    """Create the workspace SLUG."""
    from poggio.identity.workspaces import create_workspace

    app.db()
    ws = create_workspace(slug, name, mcp, Actor.cli())
    click.echo(
        f"Created workspace {ws.slug} ({visible(ws.name)}); MCP {'enabled' if ws.mcp_enabled else 'not enabled'}."
    )


@workspace.command("entitle")
@click.argument("slug")
@click.option("--mcp/--no-mcp", required=True, help="Grant or withdraw the MCP server entitlement.")
@pass_app
@friendly_errors
def workspace_entitle(app: App, slug: str, mcp: bool) -> None:
    """Grant or withdraw the MCP entitlement of workspace SLUG (takes effect on the next request)."""
    from poggio.identity.workspaces import set_entitlement

    ws = set_entitlement(app.workspace(slug), mcp, Actor.cli())
    click.echo(f"Workspace {ws.slug}: MCP {'enabled' if ws.mcp_enabled else 'disabled'}.")


@workspace.command("tools")
@click.argument("slug")
@click.option("--off", "off", multiple=True, metavar="TOOL", help="Switch this tool off; repeat for more.")
@click.option("--on", "on", multiple=True, metavar="TOOL", help="Switch this tool back on; repeat for more.")
@pass_app
@friendly_errors
def workspace_tools(app: App, slug: str, off: tuple[str, ...], on: tuple[str, ...]) -> None:
    """List every pack's tools with on/off, or switch tools off and on in workspace SLUG. An off tool is
    hidden from every token and connected app of the workspace, and refused, from the next request."""
    from poggio.identity.switches import annotations_of

    ws = app.workspace(slug)
    service = app.services.switches
    if off or on:
        changed = service.switch(ws, Actor.cli(), off=off, on=on)
        for name, now_on in changed:
            click.echo(f"{name}: switched {'on' if now_on else 'off'}.")
        if not changed:
            click.echo("Nothing changed: those tools were already so.")
        return
    click.echo(f"{'PACK':12}  {'TOOL':24}  {'STATE':5}  ANNOTATIONS")
    for spec, is_on in service.tools(ws):
        click.echo(f"{spec.pack:12}  {spec.name:24}  {'on' if is_on else 'off':5}  {', '.join(annotations_of(spec))}")


# -- user ----------------------------------------------------------------------------------------------
@main.group()
def user() -> None:
    """Portal users."""


@user.command("create")
@click.argument("email")
@click.option("--workspace", "slug", required=True, help="Workspace slug.")
@click.option("--role", type=click.Choice(["admin", "member"]), default="member", show_default=True)
@click.option("--name", default="", help="Display name.")
@click.option(
    "--password",
    envvar="POGGIO_PASSWORD",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Read from POGGIO_PASSWORD, or prompted.",
    show_envvar=True,
)
@pass_app
@friendly_errors
def user_create(app: App, email: str, slug: str, role: str, name: str, password: str) -> None:
    """Create user EMAIL in a workspace (or add an existing user to it)."""
    from poggio.identity.workspaces import create_user

    ws = app.workspace(slug)
    created = create_user(email, password, ws, role, Actor.cli(), name=name)
    click.echo(f"{visible(created.email)} is {role} of {ws.slug}.")


def _user(app: App, email: str):
    from poggio.identity.workspaces import find_user

    app.db()
    found = find_user(email)
    if found is None:
        raise NotFound(f"no user {email.strip().lower()!r}")
    return found


@user.command("password")
@click.argument("email")
@click.option(
    "--password",
    envvar="POGGIO_PASSWORD",
    prompt="New password",
    hide_input=True,
    confirmation_prompt=True,
    help="Read from POGGIO_PASSWORD, or prompted.",
    show_envvar=True,
)
@pass_app
@friendly_errors
def user_password(app: App, email: str, password: str) -> None:
    """Set a new password for user EMAIL; every portal session of theirs ends."""
    from poggio.identity.workspaces import change_password

    changed = change_password(_user(app, email), password, Actor.cli())
    click.echo(f"New password set for {visible(changed.email)}; their portal sessions have ended.")


@user.command("remove")
@click.argument("email")
@click.option("--workspace", "slug", required=True, help="Workspace slug.")
@pass_app
@friendly_errors
def user_remove(app: App, email: str, slug: str) -> None:
    """Remove user EMAIL from a workspace (deactivated when in no workspace left); their sessions end."""
    from poggio.identity.workspaces import remove_user

    ws = app.workspace(slug)
    removed = remove_user(_user(app, email), ws, Actor.cli())
    click.echo(f"{visible(removed.email)} removed from {ws.slug}{'' if removed.is_active else ' and deactivated'}.")


# -- token -----------------------------------------------------------------------------------------------
@main.group()
def token() -> None:
    """API tokens of the MCP server."""


@token.command("create")
@click.option("--workspace", "slug", required=True, help="Workspace slug.")
@click.option("--name", required=True, help="A name that says what the token is for.")
@click.option(
    "--expires-in",
    default=None,
    help="Days (30d), a date (YYYY-MM-DD) or 'never'. Default: the workspace policy's (90d unless changed).",
)
@click.option(
    "--packs",
    default=None,
    help="The tool packs it may use and how: accounts:write,contacts,revenue:write "
    "(no suffix = read; write includes read). Default: read every pack.",
)
@click.option(
    "--allow-ip",
    "allow_ips",
    multiple=True,
    metavar="CIDR",
    help="Accept calls only from this network (IPv4 or IPv6, e.g. 203.0.113.0/24); repeat for more.",
)
@click.option(
    "--rate-limit",
    default=None,
    metavar="N/PERIOD",
    help="The token's own request limit (10/minute), below the installation's POGGIO_RATE_LIMIT.",
)
@click.option(
    "--tools",
    default=None,
    metavar="a,b",
    help="Narrow the token to these tools of its packs (get_account,list_opportunities). Default: every tool.",
)
@pass_app
@friendly_errors
def token_create(
    app: App,
    slug: str,
    name: str,
    expires_in: str | None,
    packs: str | None,
    allow_ips: tuple[str, ...],
    rate_limit: str | None,
    tools: str | None,
) -> None:
    """Create a token and print it, once, on standard output (everything else goes to stderr)."""
    from poggio.identity.tokens import DEFAULT

    ws = app.workspace(slug)
    issued = app.tokens().create(
        ws,
        name,
        Actor.cli(),
        expires=DEFAULT if expires_in is None else expires_in,
        packs=packs,
        allowed_ips=list(allow_ips) or None,
        rate_limit=rate_limit,
        tools=tools,
    )
    if issued.token.expires_at is None:
        click.echo("Warning: this token never expires. Revoke it when it is no longer needed.", err=True)
    click.echo(f"Created token {issued.token.name!r} (id {issued.token.id}). It is shown only now:", err=True)
    click.echo(issued.plaintext)


@token.command("list")
@click.option("--workspace", "slug", required=True)
@pass_app
@friendly_errors
def token_list(app: App, slug: str) -> None:
    """The workspace's tokens, masked."""
    from poggio.identity.tokens import status

    ws = app.workspace(slug)
    rows = app.tokens().list(ws)
    if not rows:
        click.echo("No tokens.")
        return
    from poggio.storage.db import utcnow

    now = utcnow()
    click.echo(f"{'ID':>5}  {'NAME':30}  {'TOKEN':12}  {'STATUS':9}  {'EXPIRES':16}  {'LAST USED':16}  PACKS")
    for t in rows:
        capped = " (shortened by policy)" if t.expiry_capped_at and t.revoked_at is None else ""
        click.echo(
            f"{t.id:>5}  {visible(t.name)[:30]:30}  {t.masked:12}  {status(t):9}  "
            f"{t.expires_at.strftime('%Y-%m-%d %H:%M') if t.expires_at else 'never':16}  "
            f"{t.last_used_at.strftime('%Y-%m-%d %H:%M') if t.last_used_at else '-':16}  "
            f"{scopes.describe(scopes.parse(t.packs))}{capped}"
        )
        if t.previous_expires_at and t.previous_expires_at > now and t.revoked_at is None:
            click.echo(
                f"{'':>5}  {'':30}  {t.previous_masked:12}  {'old':9}  "
                f"{t.previous_expires_at.strftime('%Y-%m-%d %H:%M'):16}  "
                "(replaced by rotation, works until then)"
            )
        limits = [f"from {', '.join(t.allowed_ip_list)}"] if t.allowed_ips else []
        limits += [f"limit {t.rate_limit}"] if t.rate_limit else []
        limits += [f"only the tools {t.tools.replace(',', ', ')}"] if t.tools else []
        if limits:
            click.echo(f"{'':>5}  {'; '.join(limits)}")


@token.command("revoke")
@click.option("--workspace", "slug", required=True)
@click.argument("name_or_id")
@pass_app
@friendly_errors
def token_revoke(app: App, slug: str, name_or_id: str) -> None:
    """Revoke a token by name or id; the next request with it is refused."""
    service = app.tokens()
    target = service.get(app.workspace(slug), name_or_id)
    if target.revoked_at is not None:
        click.echo(f"Token {target.name!r} was already revoked.")
        return
    service.revoke(target, Actor.cli())
    click.echo(f"Revoked token {target.name!r} (id {target.id}).")


@token.command("rotate")
@click.option("--workspace", "slug", required=True)
@click.argument("name_or_id")
@click.option(
    "--grace",
    default="none",
    show_default=True,
    metavar="none|1h|24h|7d",
    help="How long the old secret keeps working, so clients can switch without downtime.",
)
@pass_app
@friendly_errors
def token_rotate(app: App, slug: str, name_or_id: str, grace: str) -> None:
    """Issue a new secret for a token and print it, once, on standard output."""
    service = app.tokens()
    target = service.get(app.workspace(slug), name_or_id)
    issued = service.rotate(target, Actor.cli(), grace=grace)
    until = issued.token.previous_expires_at
    click.echo(
        f"Rotated token {target.name!r} (id {target.id}). The old secret "
        + (f"works until {until:%Y-%m-%d %H:%M:%S} UTC." if until else "no longer works.")
        + " The new one is shown only now:",
        err=True,
    )
    click.echo(issued.plaintext)


@workspace.command("policy")
@click.argument("slug")
@click.option("--default-expiry", default=None, help="Expiry of a new token unless chosen: days (30d) or 'none'.")
@click.option(
    "--max-lifetime",
    default=None,
    help="Longest any token or OAuth grant may live: days (90d) or 'none'. Tightening it shortens "
    "what lives longer to the new maximum.",
)
@click.option(
    "--allow-no-expiry/--no-allow-no-expiry",
    default=None,
    help="Whether tokens without expiry may be created (never with a maximum lifetime).",
)
@click.option(
    "--apps",
    type=click.Choice(["any", "listed"]),
    default=None,
    help="Which apps may connect: any, or only those listed with --allow-app. Apps no longer allowed are disconnected.",
)
@click.option(
    "--allow-app",
    "allow_apps",
    multiple=True,
    metavar="URL_OR_PREFIX",
    help="An app allowed under --apps listed: its client metadata URL (https; ending in / for every "
    "URL under it) or the client id of a registered app (pgc_...). Repeat for more; replaces "
    "the list. A self-registered app's name is its own claim, so it is listed by client id.",
)
@click.option(
    "--app-access",
    type=click.Choice(["admins", "members"]),
    default=None,
    help="Who may connect apps: admins, or members too (each member's request needs an admin's "
    "approval: poggio oauth requests / approve / deny).",
)
@pass_app
@friendly_errors
def workspace_policy(
    app: App,
    slug: str,
    default_expiry: str | None,
    max_lifetime: str | None,
    allow_no_expiry: bool | None,
    apps: str | None,
    allow_apps: tuple[str, ...],
    app_access: str | None,
) -> None:
    """Show, or change, the workspace's token policy and app policy."""
    from poggio.identity.app_access import AppPolicy, set_app_policy
    from poggio.identity.policy import Policy, set_policy

    ws = app.workspace(slug)
    if apps is not None or allow_apps or app_access is not None:
        ws, ended = set_app_policy(
            ws, Actor.cli(), apps=apps, allowed=list(allow_apps) if allow_apps else None, access=app_access
        )
        if ended:
            click.echo(f"{ended} connected app(s) are no longer allowed by the app policy: disconnected.", err=True)
    if default_expiry is not None or max_lifetime is not None or allow_no_expiry is not None:
        ws, capped = set_policy(
            ws,
            Actor.cli(),
            default_expiry=... if default_expiry is None else default_expiry,
            max_lifetime=... if max_lifetime is None else max_lifetime,
            allow_no_expiry=allow_no_expiry,
        )
        if capped:
            click.echo(
                f"{capped} token(s) or connected app(s) lived longer than the new maximum: they now expire at it.",
                err=True,
            )
    click.echo(f"{ws.slug}: {Policy.of(ws).describe()}.")
    rules = AppPolicy.of(ws)
    click.echo(f"{ws.slug}: {rules.describe()}.")
    for entry in rules.allowed:
        click.echo(f"    allowed: {visible(entry)}")


@main.group()
def activity() -> None:
    """The record of every MCP request: export it for a SIEM."""


@activity.command("export")
@click.option("--workspace", "slug", required=True)
@click.option("--since", default=None, help="From this date (YYYY-MM-DD), time (ISO 8601) or span back (24h, 7d).")
@click.option("--until", default=None, help="Through this date (YYYY-MM-DD).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--tool", default=None, help="Only this tool or method.")
@click.option("--outcome", default=None, help="Only ok, tool_error, refused, rate_limited or timed_out.")
@click.option(
    "--writes",
    is_flag=True,
    help="The changes write tools made instead (from the audit log): who, "
    "the tool, the record, its fields before and after.",
)
@pass_app
@friendly_errors
def activity_export(
    app: App,
    slug: str,
    since: str | None,
    until: str | None,
    fmt: str,
    tool: str | None,
    outcome: str | None,
    writes: bool,
) -> None:
    """Write the workspace's activity, newest first, to standard output (streamed, any size)."""
    from poggio.records import activity as record
    from poggio.records import audit

    ws = app.workspace(slug)
    filters = record.Filters.parse(tool=tool, outcome=outcome, since=since, until=until)
    out = sys.stdout
    lines = (
        audit.export_writes(ws.id, filters.since, filters.until, fmt) if writes else record.export(ws.id, filters, fmt)
    )
    for line in lines:
        out.write(line)
    out.flush()


# -- OAuth: connected apps and clients ----------------------------------------------------------------
@main.group()
def oauth() -> None:
    """OAuth: connected apps (grants) and OAuth clients of a workspace."""


@oauth.command("list")
@click.option("--workspace", "slug", required=True)
@click.option("--all", "show_all", is_flag=True, help="Include revoked and expired ones.")
@pass_app
@friendly_errors
def oauth_list(app: App, slug: str, show_all: bool) -> None:
    """Connected apps (id gN) and the workspace's OAuth clients (id cN)."""
    ws = app.workspace(slug)
    service = app.oauth()
    grants, clients = service.grants(ws, include_inactive=show_all), service.clients(ws, include_inactive=show_all)
    if not grants and not clients:
        click.echo("No connected apps and no OAuth clients.")
        return
    from poggio.identity.app_access import identity
    from poggio.storage.db import utcnow

    now = utcnow()
    stamp = lambda moment: moment.strftime("%Y-%m-%d %H:%M") if moment else "-"  # noqa: E731
    if grants:
        click.echo("Connected apps")
        click.echo(f"{'ID':>6}  {'APP':30}  {'APPROVED BY':25}  {'STATUS':8}  {'CREATED':16}  {'LAST USED':16}  PACKS")
        for g in grants:
            state = (
                "denied"
                if g.approval == "denied"
                else "revoked"
                if g.revoked_at
                else "expired"
                if g.expires_at and g.expires_at <= now
                else "pending"
                if g.approval == "pending"
                else "active"
            )
            who = visible(g.user.email) if g.user is not None else "-"
            click.echo(
                f"{'g' + str(g.id):>6}  {visible(g.client.name)[:30]:30}  {who[:25]:25}  {state:8}  "
                f"{stamp(g.created_at):16}  {stamp(g.last_used_at):16}  "
                f"{scopes.describe(scopes.parse(g.packs))}"
                + (f"; only the tools {g.tools.replace(',', ', ')}" if g.tools else "")
            )
            known = identity(g.client)
            if known.how != "workspace":
                click.echo(
                    f"{'':>6}  {visible(g.client.client_id)}: {known.label}"
                    + (" (claims a well-known name)" if known.warning else "")
                )
    if clients:
        click.echo("OAuth clients (client_credentials)")
        click.echo(f"{'ID':>6}  {'NAME':30}  {'CLIENT ID':30}  {'STATUS':8}  {'CREATED':16}  PACKS")
        for c in clients:
            click.echo(
                f"{'c' + str(c.id):>6}  {visible(c.name)[:30]:30}  {visible(c.client_id):30}  "
                f"{'revoked' if c.revoked_at else 'active':8}  {stamp(c.created_at):16}  "
                f"{scopes.describe(scopes.parse(c.packs))}"
            )


@oauth.command("revoke")
@click.option("--workspace", "slug", required=True)
@click.argument("ident", metavar="ID")
@pass_app
@friendly_errors
def oauth_revoke(app: App, slug: str, ident: str) -> None:
    """Revoke a connected app (gN) or an OAuth client (cN or its client id); the next request with any
    of its tokens is refused."""
    ws = app.workspace(slug)
    service = app.oauth()
    if ident.startswith("g") and parse_id(ident[1:]) is not None:
        grant = service.grant(ws, ident[1:])
        service.revoke_grant(grant, Actor.cli())
        click.echo(f"Disconnected {grant.client.name!r} (g{grant.id}).")
        return
    numbered = ident.startswith("c") and parse_id(ident[1:]) is not None
    client = service.workspace_client(ws, ident[1:] if numbered else ident)
    service.revoke_client(client, Actor.cli())
    click.echo(f"Revoked OAuth client {client.name!r} ({client.client_id}).")


@oauth.command("requests")
@click.option("--workspace", "slug", required=True)
@pass_app
@friendly_errors
def oauth_requests(app: App, slug: str) -> None:
    """Members' pending requests for apps: approve or deny each with its id."""
    from poggio.identity.app_access import identity, requests

    ws = app.workspace(slug)
    pending = requests(ws)
    if not pending:
        click.echo("No pending requests.")
        return
    click.echo(f"{'ID':>6}  {'APP':30}  {'REQUESTER':30}  {'REQUESTED':16}  PACKS")
    for g in pending:
        known = identity(g.client)
        app_name = visible(g.client.name)[:30]
        click.echo(
            f"{'g' + str(g.id):>6}  {app_name:30}  {visible(g.user.email if g.user is not None else '-')[:30]:30}  "
            f"{g.created_at.strftime('%Y-%m-%d %H:%M'):16}  {scopes.describe(scopes.parse(g.packs))}"
        )
        click.echo(f"{'':>6}  {visible(g.client.client_id)}: {known.label}")
        if known.warning:
            click.echo(f"{'':>6}  Warning: {visible(known.warning)}")


def _decide(app: App, slug: str, ident: str, approve: bool) -> None:
    from poggio.identity.app_access import decide, request_of

    ws = app.workspace(slug)
    grant = decide(request_of(ws, ident), approve, Actor.cli())
    who = visible(grant.user.email) if grant.user is not None else "its requester"
    if approve:
        click.echo(f"Approved {visible(grant.client.name)!s} (g{grant.id}) for {who}: its next call works.")
    else:
        click.echo(f"Denied {visible(grant.client.name)!s} (g{grant.id}) for {who}: its access has ended.")


@oauth.command("approve")
@click.option("--workspace", "slug", required=True)
@click.argument("ident", metavar="ID")
@pass_app
@friendly_errors
def oauth_approve(app: App, slug: str, ident: str) -> None:
    """Approve a member's request (ID from poggio oauth requests); the app's next call works."""
    _decide(app, slug, ident, True)


@oauth.command("deny")
@click.option("--workspace", "slug", required=True)
@click.argument("ident", metavar="ID")
@pass_app
@friendly_errors
def oauth_deny(app: App, slug: str, ident: str) -> None:
    """Deny a member's request; the app's access ends at once."""
    _decide(app, slug, ident, False)


@oauth.group("client")
def oauth_client() -> None:
    """OAuth clients that get tokens with the client_credentials grant (machine to machine)."""


@oauth_client.command("create")
@click.option("--workspace", "slug", required=True)
@click.option("--name", required=True, help="A name that says what the client is.")
@click.option(
    "--packs",
    default=None,
    help="The tool packs it may use and how: accounts:write,revenue (no suffix = read). Default: read every pack.",
)
@click.option(
    "--grant",
    "grant_type",
    type=click.Choice(["client_credentials", "jwt-bearer"]),
    default="client_credentials",
    show_default=True,
    help="client_credentials: acts as itself; jwt-bearer: acts for employees with ID-JAGs from the "
    "workspace's identity provider (Enterprise-Managed Authorization).",
)
@pass_app
@friendly_errors
def oauth_client_create(app: App, slug: str, name: str, packs: str | None, grant_type: str) -> None:
    """Create a confidential client; its id and secret are printed once on standard output."""
    ws = app.workspace(slug)
    issued = app.oauth().create_confidential(
        ws, name, Actor.cli(), packs=packs, resource=app.settings.mcp_public_url, grant=grant_type
    )
    click.echo(
        f"Created OAuth client {issued.client.name!r}. The secret is shown only now; the token "
        f"endpoint is {app.settings.portal_public_url}/oauth/token.",
        err=True,
    )
    click.echo(f"client_id={issued.client.client_id}")
    click.echo(f"client_secret={issued.secret}")


# -- import, demo, packs ------------------------------------------------------------------------------
@main.command("import")
@click.argument("kind")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--workspace", "slug", required=True)
@pass_app
@friendly_errors
def import_command(app: App, kind: str, file: Path, slug: str) -> None:
    """Import a CSV file of KIND (any kind the loaded packs import, as `poggio packs list` shows:
    accounts, contacts, opportunities, ...): every row is checked first, then all are written, or none."""
    from poggio.commands.csv_import import MAX_REPORTED, import_csv

    workspace = app.workspace(slug)
    started = time.monotonic()
    with (
        file.open("rb") as stream,
        click.progressbar(length=file.stat().st_size, label=f"{kind:>13}", file=sys.stderr) as bar,
    ):
        report = import_csv(
            app.registry, workspace, kind, stream, Actor.cli(), progress=lambda read: bar.update(read - bar.pos)
        )
    if report.errors:
        for line, column, message in report.errors[:MAX_REPORTED]:
            click.echo(f"{visible(file.name)}:{line}: {visible(column)}: {visible(message)}", err=True)
        more = len(report.errors) - MAX_REPORTED
        if more > 0:
            click.echo(f"... and {more} more", err=True)
        raise click.ClickException(f"{len(report.errors)} bad row(s); nothing was imported.")
    refresh_statistics()
    seconds = time.monotonic() - started
    click.echo(f"Imported {report.imported} {kind} in {seconds:.1f}s ({report.imported / max(seconds, 1e-6):,.0f}/s).")


@main.command("demo")
@click.option("--workspace", "slug", default="acme", show_default=True)
@click.option("--accounts", default=200, show_default=True, type=click.IntRange(1, 5_000_000))
@click.option("--seed", default=7, show_default=True, type=int)
@pass_app
@friendly_errors
def demo_command(app: App, slug: str, accounts: int, seed: int) -> None:
    """Build a deterministic demo workspace with the MCP entitlement, an admin and data from every pack."""
    from poggio.commands import demo
    from poggio.runtime.schema import upgrade

    app.db()
    upgrade(app.registry)
    bars: dict[str, ProgressBar[int]] = {}
    closed: set[str] = set()
    started = time.monotonic()

    def progress(pack: str, done: int, total: int) -> None:
        bar = bars.get(pack)
        if bar is None:
            bar = bars[pack] = click.progressbar(length=total, label=f"{pack:>10}", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)
        if done >= total and pack not in closed:
            closed.add(pack)
            bar.__exit__(None, None, None)

    result = demo.build(app.registry, slug, accounts, seed, progress)
    if result.seeded:
        refresh_statistics()
    for pack, bar in bars.items():
        if pack not in closed:
            bar.__exit__(None, None, None)
    for pack, reason in result.failures.items():
        click.echo(f"Tool pack {pack} failed to add demo data and was skipped: {visible(reason)}", err=True)
    if result.seeded:
        click.echo(
            f"Demo workspace {result.workspace.slug}: {accounts:,} accounts in {time.monotonic() - started:.1f}s."
        )
    else:
        click.echo(f"Demo workspace {result.workspace.slug} already has data; left as it is.")
    if result.admin_password:
        click.echo(f"Sign in to the portal as {result.admin_email} with password {result.admin_password}")
    else:
        click.echo(f"Admin: {result.admin_email} (its password was changed since the demo was built).")


@main.group()
def packs() -> None:
    """Tool packs."""


@packs.command("list")
@pass_app
def packs_list(app: App) -> None:
    """Installed tool packs: versions, tools, and load errors."""
    registry = app.registry
    for name, pack in registry.packs.items():
        read_only = {t.name: t.read_only for t in pack.tools}
        click.echo(visible(f"{name} {pack.info.version}  {pack.info.title}: {pack.info.description}"))
        for t in pack.tools:
            click.echo("    " + visible(f"{t.name}{'' if read_only[t.name] else ' (writes)'}  {t.title}"))
        if pack.importers:
            click.echo(f"    poggio import {' | '.join(i.kind for i in pack.importers)}")
    for name, reason in sorted(registry.errors.items()):
        click.echo(visible(f"{name}  FAILED: {reason}"))
    if not registry.packs and not registry.errors:
        click.echo("No tool packs installed.")


@main.group()
def pack() -> None:
    """Writing a tool pack of your own."""


@pack.command("new")
@click.argument("name")
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to create the project (default: ./poggio-NAME).",
)
@friendly_errors
def pack_new(name: str, directory: Path | None) -> None:
    """Create a tool pack project NAME: pyproject.toml with the entry point, a tool, a test.

    NAME is the pack's name (crm_notes) or its distribution's (poggio-crm-notes, crm-notes)."""
    from poggio.commands.scaffold import create_pack, distribution_name, pack_name

    pack = pack_name(name)
    dist = distribution_name(pack)
    target = create_pack(pack, directory or Path(dist))
    click.echo(
        f"Created the {pack} tool pack (distribution {dist}, module poggio_{pack}) in {target}. Next:\n"
        f"  cd {target}\n  pip install -e '.[test]'\n  pytest\n  poggio packs list"
    )


# -- servers -----------------------------------------------------------------------------------------------
# How long both servers keep an idle connection open: longer than clients keep theirs in their pools
# (httpx 5 s, Node 4-5 s), so a client never sends a request on a connection the server is closing at
# that moment (it would get a read error, and a POST is not retried). uvicorn's default is 5 s and
# gunicorn's 2 s.
KEEP_ALIVE_SECONDS = 30


def _mcp_argv(settings: Settings, host: str | None, port: int | None, workers: int) -> list[str]:
    # The app applies POGGIO_TRUSTED_PROXIES itself (mcp_server.proxies), whatever runs it; uvicorn's
    # own forwarded-header handling (which trusts 127.0.0.1 by default) stays off.
    proxies = ["--no-proxy-headers"]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "mcp_server.app:create_app",
        "--factory",
        "--host",
        host or settings.mcp_host,
        "--port",
        str(port or settings.mcp_port),
        "--workers",
        str(workers),
        "--no-server-header",
        "--timeout-graceful-shutdown",
        "10",
        "--timeout-keep-alive",
        str(KEEP_ALIVE_SECONDS),
        "--log-level",
        "warning",
        *proxies,
    ]


def _portal_argv(settings: Settings, host: str | None, port: int | None, workers: int = 2) -> list[str]:
    # gunicorn believes X-Forwarded-Proto from loopback by default; the portal app applies
    # X-Forwarded-For itself (portal.TrustedProxies), both from POGGIO_TRUSTED_PROXIES only.
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "portal:create_app()",
        "--bind",
        f"{host or settings.portal_host}:{port or settings.portal_port}",
        "--workers",
        str(workers),
        "--threads",
        "4",
        "--graceful-timeout",
        "10",
        "--access-logfile",
        "-",
        "--keep-alive",
        str(KEEP_ALIVE_SECONDS),
        "--config",
        "python:portal.gunicorn_conf",
        "--forwarded-allow-ips",
        ",".join(settings.trusted_proxies),
    ]


def _check_port_free(host: str, port: int, moved_by: str) -> None:
    """Fail in one line, before any banner, when the port cannot be listened on (the servers would
    print that they are starting and then die, or gunicorn retry for seconds)."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and gunicorn bind
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise click.ClickException(
                    f"Port {port} on {host} is already in use by another program; choose another port with {moved_by}."
                ) from None
            raise click.ClickException(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None


@main.command("mcp")
@click.option("--host", default=None, help="Bind address (default POGGIO_MCP_HOST or 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default POGGIO_MCP_PORT or 8001).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@pass_app
def mcp_command(app: App, host: str | None, port: int | None, workers: int) -> None:
    """Run the MCP server (uvicorn)."""
    s = app.settings
    _check_port_free(host or s.mcp_host, port or s.mcp_port, "POGGIO_MCP_PORT or --port")
    if workers > 1 and not s.redis_url:
        # each worker would count a token's requests by itself: the limit would hold N times over
        raise click.ClickException(
            f"--workers {workers} needs POGGIO_REDIS_URL: without Redis each worker counts the rate limit "
            f"({s.rate_limit} per token) on its own, so a token could make {workers} times as many "
            "requests. Set POGGIO_REDIS_URL, or run one worker per process behind a load balancer."
        )
    app.check_database()
    os.execv(sys.executable, _mcp_argv(app.settings, host, port, workers))


@main.command("portal")
@click.option("--host", default=None)
@click.option("--port", default=None, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@pass_app
def portal_command(app: App, host: str | None, port: int | None, workers: int) -> None:
    """Run the admin portal (gunicorn)."""
    s = app.settings
    _check_port_free(host or s.portal_host, port or s.portal_port, "POGGIO_PORTAL_PORT or --port")
    if workers > 1 and not s.redis_url:
        # each worker counts registrations in its own memory: the limit holds once per worker
        click.echo(
            f"Warning: POGGIO_OAUTH_REGISTRATION_LIMIT ({s.oauth_registration_limit} per address) is counted "
            f"per worker: {workers} portal workers without POGGIO_REDIS_URL let an address register up to "
            f"{workers} times as many apps. Set POGGIO_REDIS_URL to share the count, or run one worker.",
            err=True,
        )
    app.check_database()
    os.execv(sys.executable, _portal_argv(app.settings, host, port, workers))


@main.command("up")
@pass_app
@friendly_errors
def up_command(app: App) -> None:
    """Run the portal on :8000 and the MCP server on :8001 together; Ctrl-C stops both cleanly."""
    from poggio.commands.supervise import Child, Supervisor
    from poggio.runtime.schema import upgrade

    s = app.settings
    _check_port_free(s.portal_host, s.portal_port, "POGGIO_PORTAL_PORT")
    _check_port_free(s.mcp_host, s.mcp_port, "POGGIO_MCP_PORT")
    app.db()
    upgrade(app.registry)
    children = [
        Child("portal", _portal_argv(s, None, None, 1), signal.SIGINT),  # gunicorn's quick shutdown
        Child("MCP server", [*_mcp_argv(s, None, None, 1), "--timeout-graceful-shutdown", "3"], signal.SIGTERM),
    ]
    click.echo(
        f"Portal: http://{s.portal_host}:{s.portal_port}/   MCP server: {s.mcp_public_url}   (Ctrl-C stops both)"
    )
    status = Supervisor(children, echo=lambda line: click.echo(line, err=True)).run()
    if status:
        raise SystemExit(status)


# -- webhook -------------------------------------------------------------------------------------------
@main.group()
def webhook() -> None:
    """Webhook endpoints of a workspace: signed posts of its events (Standard Webhooks)."""


@webhook.command("add")
@click.option("--workspace", "slug", required=True, help="Workspace slug.")
@click.argument("url")
@click.option(
    "--events",
    default=None,
    metavar="a,b",
    help="Event types, comma-separated (token.created, app.connected, ...). Default: all but tool.write.",
)
@pass_app
@friendly_errors
def webhook_add(app: App, slug: str, url: str, events: str | None) -> None:
    """Add an endpoint and print its signing secret, once, on standard output."""
    from poggio.notices import webhooks

    added = webhooks.add_endpoint(
        app.workspace(slug),
        url,
        events,
        Actor.cli(),
        allow_private=app.settings.webhook_allow_private,
        secret_key=app.settings.secret_key,
    )
    click.echo(
        f"Added webhook endpoint {added.endpoint.id} for {', '.join(added.endpoint.event_list)}. "
        "Its signing secret is shown only now:",
        err=True,
    )
    click.echo(added.secret)


@webhook.command("list")
@click.option("--workspace", "slug", required=True)
@pass_app
@friendly_errors
def webhook_list(app: App, slug: str) -> None:
    """The workspace's endpoints (never their secrets)."""
    from poggio.notices import webhooks

    rows = webhooks.endpoints(app.workspace(slug))
    if not rows:
        click.echo("No webhook endpoints.")
        return
    click.echo(f"{'ID':>5}  {'STATUS':8}  {'PENDING':>7}  URL  EVENTS")
    for e in rows:
        click.echo(
            f"{e.id:>5}  {'paused' if e.paused_at else 'active':8}  {webhooks.pending_count(e):>7}  "
            f"{e.url}  {','.join(e.event_list)}"
        )


@webhook.command("remove")
@click.option("--workspace", "slug", required=True)
@click.argument("endpoint_id", type=int)
@pass_app
@friendly_errors
def webhook_remove(app: App, slug: str, endpoint_id: int) -> None:
    """Remove an endpoint; its undelivered messages go with it."""
    from poggio.notices import webhooks

    if not webhooks.remove_endpoint(app.workspace(slug), endpoint_id, Actor.cli()):
        raise click.ClickException(f"no webhook endpoint {endpoint_id} in workspace {slug}")
    click.echo(f"Removed webhook endpoint {endpoint_id}.")


workspace.add_command(identity_cli.workspace_sso)
main.add_command(identity_cli.scim)
