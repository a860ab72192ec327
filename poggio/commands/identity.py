"""The ``poggio`` commands of company identity: ``workspace sso`` and ``scim token create``
(attached to the command groups by :mod:`poggio.commands.cli`)."""

from __future__ import annotations

import click

from poggio.commands.base import App, friendly_errors, pass_app
from poggio.records.audit import Actor


@click.command("sso")
@click.argument("slug")
@click.option("--issuer", required=True, help="The OpenID Connect provider's issuer URL (discovery is read from it).")
@click.option("--client-id", required=True, help="The client ID the provider gave Poggio.")
@click.option(
    "--client-secret-env",
    default=None,
    metavar="VAR",
    help="The environment variable that holds the client secret (read by the portal at sign-in; "
    "the secret itself is never stored).",
)
@click.option("--domain", "domains", multiple=True, metavar="D", help="An allowed e-mail domain (repeatable).")
@click.option("--admin-group", default=None, metavar="G", help="The role claim value that makes an admin.")
@click.option(
    "--member-group",
    default=None,
    metavar="G",
    help="The role claim value that makes a member (unset: everyone signed in is a member).",
)
@click.option("--role-claim", default=None, metavar="CLAIM", help="The claim holding the groups (default: groups).")
@click.option("--scopes", default=None, help='Scopes to ask for (default: "openid email profile").')
@click.option(
    "--require/--no-require",
    default=None,
    help="Turn password sign-in off for the workspace's people (POGGIO_SSO_BREAK_GLASS excepted).",
)
@click.option(
    "--id-jag/--no-id-jag",
    default=None,
    help="Trust ID-JAGs from this issuer (its JWKS by discovery) for Enterprise-Managed Authorization.",
)
@pass_app
@friendly_errors
def workspace_sso(
    app: App,
    slug: str,
    issuer: str,
    client_id: str,
    client_secret_env: str | None,
    domains,
    admin_group,
    member_group,
    role_claim,
    scopes,
    require,
    id_jag,
) -> None:
    """Set up single sign-on for workspace SLUG through an OpenID Connect provider."""
    from poggio.identity import sso

    ws = app.workspace(slug)
    provider = sso.configure(
        ws,
        Actor.cli(),
        issuer=issuer,
        client_id=client_id,
        secret_key=app.settings.secret_key,
        client_secret_env=client_secret_env,
        domains=list(domains) if domains else None,
        scopes=scopes,
        role_claim=role_claim,
        admin_group=admin_group,
        member_group=member_group,
        require=require,
        id_jag=id_jag,
    )
    notes = (" (required)" if provider.require_sso else "") + ("; ID-JAGs trusted" if provider.trust_id_jag else "")
    click.echo(f"Workspace {ws.slug}: single sign-on through {provider.issuer}{notes}.")
    click.echo(f"Redirect URI to register at the provider: {app.settings.portal_public_url}/sign-in/oidc/callback")
    click.echo(f"Sign-in link: {app.settings.portal_public_url}/sign-in/sso/{ws.slug}")


@click.group()
def scim() -> None:
    """SCIM provisioning tokens."""


@scim.group("token")
def scim_token() -> None:
    """The bearer tokens identity providers provision users with."""


@scim_token.command("create")
@click.option("--workspace", "slug", required=True, help="Workspace slug.")
@click.option("--name", default="SCIM", show_default=True, help="What the token is for (e.g. the identity provider).")
@pass_app
@friendly_errors
def scim_token_create(app: App, slug: str, name: str) -> None:
    """Create a SCIM bearer token for workspace SLUG; prints it once."""
    from poggio.identity import scim as core

    click.echo(core.create_token(app.workspace(slug), Actor.cli(), name, app.settings.token_pepper))
