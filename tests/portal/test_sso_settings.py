"""Settings > Sign-in: admins only, the redirect URI to register, the provider checked by discovery
before anything is saved, the client secret sealed, "require single sign-on" refused until an admin
has signed in through the provider; and the sign-in page's "Sign in with single sign-on"."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from instances import free_port
from sso_support import openid_provider

from poggio.identity.sso import SsoProvider, client_secret
from poggio.storage.models import AuditEvent, Workspace


def test_members_cannot_open_it(browser):
    browser.sign_in("member@acme.example")
    assert browser.get("/settings/sign-in").status_code == 403


def test_an_unreachable_provider_is_an_inline_error_and_saves_nothing(admin):
    page = admin.get("/settings/sign-in").get_data(as_text=True)
    assert "http://127.0.0.1:8000/sign-in/oidc/callback" in page or "/sign-in/oidc/callback" in page
    answer = admin.post(
        "/settings/sign-in",
        {
            "issuer": f"http://127.0.0.1:{free_port()}",
            "client_id": "poggio",
            "client_secret": "s3cret",
            "role_claim": "groups",
        },
    )
    assert answer.status_code == 422
    assert "cannot be reached" in answer.get_data(as_text=True)
    assert SsoProvider.select().count() == 0


@pytest.mark.parametrize("issuer", ["ftp://idp.example", "http://idp.example", "https://idp.example/?x=1"])
def test_a_malformed_issuer_is_an_inline_error(admin, issuer):
    answer = admin.post("/settings/sign-in", {"issuer": issuer, "client_id": "poggio", "client_secret": "s"})
    assert answer.status_code == 422 and "issuer URL" in answer.get_data(as_text=True)
    assert SsoProvider.select().count() == 0


def test_saved_against_a_real_provider_with_the_secret_sealed(admin, app, tmp_path):
    with openid_provider(tmp_path, [], {}) as idp:
        answer = admin.post(
            "/settings/sign-in",
            {
                "issuer": idp.issuer,
                "client_id": "poggio",
                "client_secret": "the-provider-secret",
                "domains": "acme.example, @Acme.Example\nexample.org",
                "role_claim": "groups",
                "admin_group": "poggio-admins",
                "scopes": "email profile groups",
            },
        )
        text = answer.get_data(as_text=True)
        assert answer.status_code == 200, text
        assert "Sign-in settings saved" in text and "/sign-in/sso/acme" in text
        row = SsoProvider.get()
        assert row.domain_list == ["acme.example", "example.org"]
        assert row.scopes == "openid email profile groups"
        assert "the-provider-secret" not in (row.client_secret_sealed or "")
        assert client_secret(row, app.config["SECRET_KEY"]) == "the-provider-secret"
        detail = AuditEvent.get(AuditEvent.action == "sso.configured").detail
        assert "the-provider-secret" not in detail and "sealed" in detail

        # required: refused while no admin has signed in through the provider
        refused = admin.post(
            "/settings/sign-in", {"issuer": idp.issuer, "client_id": "poggio", "role_claim": "groups", "require": "y"}
        )
        assert refused.status_code == 422 and "cannot be required yet" in refused.get_data(as_text=True)
        assert SsoProvider.get().require_sso is False
        assert client_secret(SsoProvider.get(), app.config["SECRET_KEY"]) == "the-provider-secret"  # kept

        # the sign-in page offers the provider for the domain, and nothing for others
        admin.post("/sign-out", {})
        admin.get("/sign-in")
        offered = admin.post("/sign-in/sso", {"email": "someone@example.org"})
        assert offered.status_code == 200 and "Sign in with 127.0.0.1" in offered.get_data(as_text=True)
        assert 'href="/sign-in/sso/acme"' in offered.get_data(as_text=True)
        none = admin.post("/sign-in/sso", {"email": "someone@nowhere.example"})
        assert none.status_code == 404 and "No single sign-on is set up for nowhere.example" in none.get_data(
            as_text=True
        )
        # an app's authorization request that sent the person to sign in is where single sign-on returns
        back = "/oauth/authorize?client_id=x&state=y"
        page = admin.get(f"/sign-in?next={quote(back)}").get_data(as_text=True)
        offered = admin.post(f"/sign-in/sso?next={quote(back)}", {"email": "someone@example.org"})
        link = re.search(r'href="(/sign-in/sso/acme[^"]*)"', offered.get_data(as_text=True)).group(1)
        assert "next=" in page and parse_qs(urlsplit(html.unescape(link)).query)["next"] == [back]
        admin.get(html.unescape(link))
        with admin.client.session_transaction() as cookie:
            assert cookie["sso"]["next"] == back
        start = admin.get("/sign-in/sso/acme")
        assert start.status_code == 302 and start.headers["Location"].startswith(f"{idp.issuer}/")
        for part in ("code_challenge_method=S256", "nonce=", "state=", "client_id=poggio"):
            assert part in start.headers["Location"]
    assert Workspace.get(slug="acme")
