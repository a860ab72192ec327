"""The identity commands (contract): ``poggio workspace sso``, ``poggio scim token create`` and
``poggio oauth client create --grant``; bad input is one line and exit status 1, never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from poggio.commands.cli import main
from poggio.identity import scim
from poggio.identity.sso import SsoProvider
from poggio.storage.models import AuditEvent, OAuthClient, OAuthGrant


@pytest.fixture
def run(instance):
    runner = CliRunner()

    def invoke(*args, env=None):
        return runner.invoke(main, list(args), catch_exceptions=False, env=env)

    assert invoke("workspace", "create", "acme", "--name", "Acme", "--mcp").exit_code == 0
    return invoke


def test_workspace_sso_configures_and_shows_the_redirect_uri(run):
    done = run(
        "workspace",
        "sso",
        "acme",
        "--issuer",
        "https://idp.example.com/",
        "--client-id",
        "poggio",
        "--client-secret-env",
        "ACME_SSO_SECRET",
        "--domain",
        "example.com",
        "--domain",
        "Example.org",
        "--admin-group",
        "admins",
        "--id-jag",
        env={"POGGIO_PORTAL_PUBLIC_URL": "https://poggio.example.com"},
    )
    assert done.exit_code == 0, done.output
    assert "https://poggio.example.com/sign-in/oidc/callback" in done.output
    assert "https://poggio.example.com/sign-in/sso/acme" in done.output
    row = SsoProvider.get()
    assert (row.issuer, row.client_secret_env, row.client_secret_sealed) == (
        "https://idp.example.com",
        "ACME_SSO_SECRET",
        None,
    )
    assert row.domain_list == ["example.com", "example.org"] and row.trust_id_jag and not row.require_sso
    refused = run(
        "workspace", "sso", "acme", "--issuer", "https://idp.example.com", "--client-id", "poggio", "--require"
    )
    assert refused.exit_code == 1 and "cannot be required yet" in refused.output
    assert "Traceback" not in refused.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--issuer", "http://idp.example.com", "--client-id", "x", "--client-secret-env", "V"], "issuer"),
        (["--issuer", "https://idp.example.com", "--client-id", "x"], "client secret"),
        (["--issuer", "https://idp.example.com", "--client-id", "x", "--client-secret-env", "1BAD"], "variable"),
        (
            ["--issuer", "https://idp.example.com", "--client-id", "x", "--client-secret-env", "V", "--domain", "no"],
            "not an e-mail domain",
        ),
    ],
)
def test_workspace_sso_bad_input(run, args, says):
    result = run("workspace", "sso", "acme", *args)
    assert result.exit_code == 1 and says in result.output and "Traceback" not in result.output
    assert SsoProvider.select().count() == 0


def test_scim_token_create_prints_it_once(run):
    result = run("scim", "token", "create", "--workspace", "acme", "--name", "Okta")
    token = result.output.strip()
    assert result.exit_code == 0 and token.startswith("pgsc_") and len(token.splitlines()) == 1
    assert scim.verify_token(token).name == "Okta"
    assert AuditEvent.get(AuditEvent.action == "scim.token_created").target == "Okta"
    assert run("scim", "token", "create", "--workspace", "nope").exit_code == 1


def test_oauth_client_create_for_the_jwt_bearer_grant(run):
    result = run(
        "oauth",
        "client",
        "create",
        "--workspace",
        "acme",
        "--name",
        "Agent",
        "--packs",
        "accounts",
        "--grant",
        "jwt-bearer",
    )
    assert result.exit_code == 0 and "client_secret=pgos_" in result.output
    client = OAuthClient.get(OAuthClient.name == "Agent")
    assert "urn:ietf:params:oauth:grant-type:jwt-bearer" in client.metadata
    assert not OAuthGrant.select().where(OAuthGrant.client == client).exists()  # grants come per employee
    bad = run("oauth", "client", "create", "--workspace", "acme", "--name", "X", "--grant", "password")
    assert bad.exit_code == 2 and "client_credentials" in bad.output
