"""Single sign-on in the core: the ID token's checks (signature, issuer, audience, expiry, nonce), the
role mapping, the sealed client secret, and a demotion by the provider ending the grants the
demoted admin approved (as a demotion in Poggio does). The flow through a real provider is
tests/e2e/test_sso_browser.py."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from poggio.identity.oauth import OAuthService
from poggio.identity.sso import SsoError, SsoProvider, client_secret, configure, mapped_role, seal_secret, sign_in
from poggio.identity.tokens import TokenRejected
from poggio.records.audit import Actor
from poggio.storage.models import OAuthClient, OAuthGrant, Workspace
from portal.sso import verify_id_token

ISSUER = "https://idp.example"
DOCUMENT = {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks", "id_token_signing_alg_values_supported": ["RS256"]}
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
KEYS = KeySet([RSAKey.import_key(KEY.as_dict(private=False))])


def _token(**changes) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "poggio",
        "sub": "u1",
        "exp": now + 300,
        "iat": now,
        "nonce": "n1",
        "email": "ada@acme.example",
        **changes,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, KEY)


def test_a_good_id_token_verifies():
    assert verify_id_token(_token(), DOCUMENT, "poggio", "n1", keys=KEYS)["email"] == "ada@acme.example"


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"aud": "another-app"}, "another application"),
        ({"aud": ["poggio", "other"], "azp": "other"}, "another application"),
        ({"iss": "https://evil.example"}, "another provider"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nonce": "replayed"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"iat": int(time.time()) + 3600}, "future"),
    ],
)
def test_an_id_token_is_refused_with_a_reason(changes, says):
    with pytest.raises(SsoError, match=says):
        verify_id_token(_token(**changes), DOCUMENT, "poggio", "n1", keys=KEYS)


def test_a_token_signed_by_another_key_or_not_a_jwt_is_refused():
    other = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    forged = jwt.encode({"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "aud": "poggio", "nonce": "n1"}, other)
    with pytest.raises(SsoError, match="signature does not verify"):
        verify_id_token(forged, DOCUMENT, "poggio", "n1", keys=KEYS)
    with pytest.raises(SsoError, match="not a signed JWT"):
        verify_id_token("not-a-jwt", DOCUMENT, "poggio", "n1", keys=KEYS)


def test_the_role_mapping():
    p = SsoProvider(role_claim="groups", admin_group="admins", member_group="staff")
    assert mapped_role(p, {"groups": ["staff", "admins"]}) == "admin"
    assert mapped_role(p, {"groups": ["staff"]}) == "member"
    assert mapped_role(p, {"groups": "staff"}) == "member"
    assert mapped_role(p, {"groups": []}) is None
    assert mapped_role(SsoProvider(role_claim="groups", admin_group="admins"), {}) == "member"


def test_the_sealed_secret_needs_the_secret_key():
    p = SsoProvider(client_secret_sealed=seal_secret("s3cret", "key-one"))
    assert client_secret(p, "key-one") == "s3cret"
    with pytest.raises(SsoError, match="POGGIO_SECRET_KEY changed"):
        client_secret(p, "key-two")
    with pytest.raises(SsoError, match="MISSING_VAR"):
        client_secret(SsoProvider(client_secret_env="MISSING_VAR"), "key-one", env={})


def test_a_demotion_by_the_provider_ends_the_grants_the_admin_approved(instance):
    ws = Workspace.create(slug="acme", name="Acme", mcp_enabled=True)
    provider = configure(
        ws, Actor.cli(), issuer=ISSUER, client_id="poggio", secret_key="k", client_secret="s", admin_group="admins"
    )
    claims = {"sub": "u1", "email": "ada@acme.example", "groups": ["admins"]}
    ada = sign_in(provider, claims).user
    oauth = OAuthService(known_packs={"accounts"})
    client = OAuthClient.create(client_id="pgc_app", kind="dynamic", name="App", metadata="{}")
    grant = OAuthGrant.create(workspace=ws, client=client, user=ada, packs="accounts", resource="http://mcp/mcp")
    access = oauth.issue_tokens(grant, refresh=False)["access_token"]
    assert oauth.verify_access(access, "http://mcp/mcp").workspace_id == ws.id
    again = sign_in(provider, {**claims, "groups": []})
    assert again.role == "member" and again.role_before == "admin"
    with pytest.raises(TokenRejected):
        oauth.verify_access(access, "http://mcp/mcp")
    # the same subject with another e-mail is the same user (the provider's 'sub' decides)
    assert sign_in(provider, {**claims, "email": "ada.lovelace@acme.example"}).user.id == ada.id


def test_require_is_refused_until_an_admin_signed_in_through_the_provider(instance):
    from poggio.errors import InvalidInput

    ws = Workspace.create(slug="acme", name="Acme", mcp_enabled=True)
    kwargs = {"issuer": ISSUER, "client_id": "poggio", "secret_key": "k", "client_secret": "s", "admin_group": "admins"}
    provider = configure(ws, Actor.cli(), **kwargs)
    with pytest.raises(InvalidInput, match="cannot be required yet"):
        configure(ws, Actor.cli(), **kwargs, require=True)
    sign_in(provider, {"sub": "m", "email": "m@acme.example", "groups": []})  # a member is not enough
    with pytest.raises(InvalidInput, match="cannot be required yet"):
        configure(ws, Actor.cli(), **kwargs, require=True)
    sign_in(provider, {"sub": "a", "email": "a@acme.example", "groups": ["admins"]})
    assert configure(ws, Actor.cli(), **kwargs, require=True).require_sso is True


def test_apps_acting_for_an_employee_follow_their_role_and_end_with_their_membership(instance):
    from poggio.identity import id_jag
    from poggio.identity.workspaces import remove_user

    ws = Workspace.create(slug="acme", name="Acme", mcp_enabled=True)
    provider = configure(
        ws,
        Actor.cli(),
        issuer=ISSUER,
        client_id="poggio",
        secret_key="k",
        client_secret="s",
        admin_group="admins",
        id_jag=True,
    )
    claims = {"sub": "u1", "email": "ada@acme.example", "groups": ["admins"]}
    ada = sign_in(provider, claims).user
    oauth = OAuthService(known_packs={"accounts", "contacts"})
    client = oauth.create_confidential(
        ws, "Agent", Actor.cli(), packs="accounts:write,contacts", grant="jwt-bearer"
    ).client
    assert oauth.standing_grant(client) is None  # acts only for employees, by ID-JAG
    grant = id_jag.grant_for(client, ada, "admin", ISSUER, "http://mcp/mcp", None)
    access = oauth.issue_tokens(grant, refresh=False)["access_token"]
    assert oauth.verify_access(access, "http://mcp/mcp").writable
    sign_in(provider, {**claims, "groups": []})  # demoted by the provider
    assert not oauth.verify_access(access, "http://mcp/mcp").writable  # on the very next request
    assert OAuthGrant.get_by_id(grant.id).packs == "accounts,contacts"
    remove_user(ada, ws, Actor.cli())
    with pytest.raises(TokenRejected):
        oauth.verify_access(access, "http://mcp/mcp")


def test_a_workspaces_provider_cannot_sign_in_as_another_workspaces_account(instance):
    from poggio.identity.workspaces import create_user, create_workspace

    other = create_workspace("other", "Other", True, Actor.cli())
    create_user("victim@acme.example", "a-long-password-1", other, "admin", Actor.cli())
    ws = Workspace.create(slug="acme", name="Acme", mcp_enabled=True)
    provider = configure(ws, Actor.cli(), issuer=ISSUER, client_id="poggio", secret_key="k", client_secret="s")
    with pytest.raises(SsoError, match="not part of this workspace"):
        sign_in(provider, {"sub": "evil", "email": "victim@acme.example"})
