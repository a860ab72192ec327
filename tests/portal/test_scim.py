"""SCIM provisioning's effects on Poggio (the protocol itself is checked by scim2-tester in
tests/test_scim_compliance.py): deprovisioning ends sessions and the grants the person approved on
the next request, keeps their API tokens working but flagged for review, and is on record with the
SCIM client's name; groups map to roles; bad requests get SCIM errors and an audit line."""

from __future__ import annotations

import json

import pytest
from portal_client import PASSWORD, Browser

from poggio.identity import scim
from poggio.identity.oauth import OAuthService
from poggio.identity.tokens import TokenRejected, TokenService
from poggio.records.audit import Actor
from poggio.storage.models import AuditEvent, Membership, OAuthClient, OAuthGrant, User, Workspace

MCP = "http://127.0.0.1:8001/mcp"
SCIM_TYPE = "application/scim+json"


class Scim:
    def __init__(self, client, token):
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def __call__(self, method, path, body=None, **kw):
        data = json.dumps(body) if body is not None and not isinstance(body, str) else body
        return self.client.open(
            f"/scim/v2{path}", method=method, data=data, headers=self.headers, content_type=SCIM_TYPE, **kw
        )


@pytest.fixture
def okta(app):
    return Scim(app.test_client(), scim.create_token(Workspace.get(slug="acme"), Actor.cli(), "Okta"))


def _user(email, active=True):
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "active": active,
        "name": {"givenName": "Both", "familyName": "Ways"},
        "emails": [{"value": email, "primary": True}],
    }


def test_deprovisioning_ends_sessions_and_grants_and_flags_tokens(app, okta):
    Workspace.update(mcp_enabled=True).where(Workspace.slug == "initrode").execute()
    acme, initrode = Workspace.get(slug="acme"), Workspace.get(slug="initrode")
    both = User.get(email="both@example.com")
    created = okta("POST", "/Users", _user("both@example.com"))
    assert created.status_code == 201 and created.content_type.startswith(SCIM_TYPE), created.get_data(as_text=True)
    scim_id = created.get_json()["id"]
    found = okta("GET", '/Users?filter=userName eq "Both@Example.com"').get_json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == scim_id

    person = Browser(app.test_client())
    assert person.sign_in("both@example.com").status_code == 302
    assert person.get("/").status_code == 200
    oauth = OAuthService(known_packs={"accounts"})
    client = OAuthClient.create(client_id="pgc_app", kind="dynamic", name="App", metadata="{}")
    grants = {
        ws.slug: OAuthGrant.create(workspace=ws, client=client, user=both, packs="accounts", resource=MCP)
        for ws in (acme, initrode)
    }
    access = {slug: oauth.issue_tokens(g, refresh=False)["access_token"] for slug, g in grants.items()}
    tokens = TokenService(known_packs={"accounts"})
    api_token = tokens.create(acme, "Both's agent", Actor(both), expires="never")

    patched = okta(
        "PATCH",
        f"/Users/{scim_id}",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": False}],
        },
    )
    assert patched.status_code == 200 and patched.get_json()["active"] is False

    # the very next request: signed out; the acme grant refused; initrode's untouched; the API token works
    assert person.get("/").status_code == 302
    with pytest.raises(TokenRejected):
        oauth.verify_access(access["acme"], MCP)
    assert oauth.verify_access(access["initrode"], MCP).workspace_id == initrode.id
    assert tokens.verify(api_token.plaintext).workspace_id == acme.id
    assert not Membership.select().where((Membership.user == both) & (Membership.workspace == acme)).exists()
    assert User.get_by_id(both.id).is_active  # still in initrode
    assert scim.flagged_tokens(acme)[api_token.token.id].reason.startswith("its creator both@example.com")
    event = AuditEvent.get(AuditEvent.action == "scim.user_deprovisioned")
    assert (event.actor_label, event.target, event.workspace_id) == ("scim: Okta", "both@example.com", acme.id)
    assert json.loads(event.detail)["grants_revoked"] == 1 and json.loads(event.detail)["tokens_flagged"] == 1

    # Settings > MCP Server shows the flag to an admin
    admin = Browser(app.test_client())
    admin.sign_in("admin@acme.example")
    page = admin.get("/settings/mcp/").get_data(as_text=True)
    assert "review: its creator both@example.com was deprovisioned by scim: Okta" in page
    admin.post(f"/settings/mcp/tokens/{api_token.token.id}/reviewed", {})
    assert "review: its creator" not in admin.get("/settings/mcp/").get_data(as_text=True)
    assert AuditEvent.select().where(AuditEvent.action == "token.review_cleared").exists()

    # reactivated: back in the workspace as a member
    okta(
        "PATCH",
        f"/Users/{scim_id}",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": True}],
        },
    )
    assert Membership.get((Membership.user == both) & (Membership.workspace == acme)).role == "member"


def test_delete_deprovisions_a_user_of_one_workspace_entirely(app, okta):
    created = okta("POST", "/Users", _user("new.hire@acme.example")).get_json()
    user = User.get(email="new.hire@acme.example")
    assert Membership.get(Membership.user == user).role == "member"
    assert okta("DELETE", f"/Users/{created['id']}").status_code == 204
    assert not User.get_by_id(user.id).is_active
    assert okta("GET", f"/Users/{created['id']}").status_code == 404
    browser = Browser(app.test_client())
    assert browser.sign_in("new.hire@acme.example", PASSWORD).status_code == 401


def test_the_admins_group_makes_admins(app, okta):
    ada = okta("POST", "/Users", _user("ada@acme.example")).get_json()
    group = okta(
        "POST",
        "/Groups",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "admins",
            "members": [{"value": ada["id"]}],
        },
    )
    assert group.status_code == 201, group.get_data(as_text=True)
    ada_user = User.get(email="ada@acme.example")
    assert Membership.get(Membership.user == ada_user).role == "admin"
    removed = okta(
        "PATCH",
        f"/Groups/{group.get_json()['id']}",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": f'members[value eq "{ada["id"]}"]'}],
        },
    )
    assert removed.status_code == 200, removed.get_data(as_text=True)
    assert Membership.get(Membership.user == ada_user).role == "member"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "scim_type"),
    [
        ("POST", "/Users", "not json at all", 400, "invalidSyntax"),
        ("POST", "/Users", [1, 2], 400, "invalidSyntax"),
        ("POST", "/Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}, 400, None),
        ("PATCH", "/Users/1", {"Operations": "nope"}, 404, None),
        ("GET", "/Users?filter=userName eq", None, 400, "invalidFilter"),
        ("GET", "/Nothing", None, 404, None),
    ],
)
def test_bad_requests_get_scim_errors(okta, method, path, body, status, scim_type):
    answer = okta(method, path, body)
    error = answer.get_json()
    assert answer.status_code == status and answer.content_type.startswith(SCIM_TYPE)
    assert error["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"] and error["status"] == str(status)
    assert error.get("detail")
    if scim_type:
        assert error["scimType"] == scim_type
    assert User.select().count() == 4  # nothing half-created
    if status == 400:
        assert AuditEvent.select().where(AuditEvent.action == "scim.request_refused").exists()


def test_a_duplicate_user_is_a_uniqueness_conflict(okta):
    assert okta("POST", "/Users", _user("dup@acme.example")).status_code == 201
    again = okta("POST", "/Users", _user("DUP@acme.example"))
    assert again.status_code == 409 and again.get_json()["scimType"] == "uniqueness"


def test_no_token_or_another_workspaces_token(app, okta):
    anonymous = app.test_client().get("/scim/v2/Users")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = app.test_client().get("/scim/v2/Users", headers={"Authorization": "Bearer pgsc_nottherightshape"})
    assert wrong.status_code == 401
    created = okta("POST", "/Users", _user("only.acme@acme.example")).get_json()
    other = Scim(app.test_client(), scim.create_token(Workspace.get(slug="initrode"), Actor.cli(), "Other"))
    assert other("GET", f"/Users/{created['id']}").status_code == 404
    assert other("DELETE", f"/Users/{created['id']}").status_code == 404
    assert other("GET", "/Users").get_json()["totalResults"] == 0


def test_scim_tokens_in_settings_shown_once_and_revocable(admin):
    page = admin.post("/settings/sign-in/scim-tokens", {"name": "Okta"}).get_data(as_text=True)
    assert "/scim/v2" in page and "pgsc_" in page
    token = page.split('class="new-scim-token">')[1].split("<")[0]
    assert scim.verify_token(token) is not None
    assert token not in admin.get("/settings/sign-in").get_data(as_text=True)
    row = scim.ScimToken.get()
    admin.post(f"/settings/sign-in/scim-tokens/{row.id}/revoke", {})
    assert scim.verify_token(token) is None


def test_another_workspaces_account_cannot_be_taken_over(okta):
    # admin@initrode.example belongs to initrode only: acme's SCIM client may neither link nor rename it
    taken = okta("POST", "/Users", _user("admin@initrode.example"))
    assert taken.status_code == 409 and "another workspace" in taken.get_json()["detail"]
    shared = okta("POST", "/Users", _user("both@example.com")).get_json()  # in acme and initrode
    renamed = okta("PUT", f"/Users/{shared['id']}", _user("someone.else@example.com"))
    assert renamed.status_code == 400 and "another workspace" in renamed.get_json()["detail"]
    assert User.select().where(User.email == "both@example.com").exists()
