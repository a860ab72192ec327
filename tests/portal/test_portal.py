"""Every portal route through Flask's test client: access rules, CSRF, HTMX fragments vs full pages,
the token shown exactly once."""

from __future__ import annotations

import re

import pytest

from poggio.records.usage import UsageRecorder
from poggio.security.token_format import TOKEN_PATTERN
from poggio.storage.models import ApiToken, AuditEvent, TokenUsage


def body(r) -> str:
    return r.get_data(as_text=True)


def create(admin, name="Slack agent", expiry="30", htmx=True, **extra):
    return admin.post("/settings/mcp/tokens", {"name": name, "expiry": expiry, **extra}, htmx=htmx)


# -- access -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/", "/settings", "/settings/mcp/", "/settings/audit/", "/settings/mcp/tokens/new"])
def test_anonymous_goes_to_sign_in(browser, url):
    r = browser.get(url)
    assert r.status_code == 302 and r.headers["Location"].startswith("/sign-in")


def test_member_gets_403_and_no_menu_item(browser):
    browser.sign_in("member@acme.example")
    assert browser.get("/settings/mcp/").status_code == 403
    assert browser.get("/settings/audit/").status_code == 403
    assert "MCP Server" not in body(browser.get("/settings"))


def test_non_entitled_admin_gets_404_and_the_note(browser):
    browser.sign_in("admin@initrode.example")
    assert browser.get("/settings/mcp/").status_code == 404
    page = body(browser.get("/settings"))
    assert "may not be enabled for your workspace" in page
    assert 'href="/settings/mcp/"' not in page


def test_entitled_admin_sees_menu_and_url(admin):
    page = body(admin.get("/settings"))
    assert 'href="/settings/mcp/"' in page
    mcp = admin.get("/settings/mcp/")
    assert mcp.status_code == 200
    assert "http://127.0.0.1:8001/mcp" in body(mcp) and "acme" not in re.search(
        r'<code id="server-url">([^<]*)', body(mcp)
    ).group(1)


def test_switching_workspace_changes_what_the_menu_offers(browser):
    browser.sign_in("both@example.com")
    assert browser.get("/settings/mcp/").status_code == 200
    from poggio.storage.models import Workspace

    initrode = Workspace.get(slug="initrode")
    browser.post("/workspace", {"workspace_id": initrode.id})
    assert browser.get("/settings/mcp/").status_code == 404
    browser.post("/workspace", {"workspace_id": 99999})  # not a member: ignored
    assert browser.get("/settings/mcp/").status_code == 404


# -- sign in ---------------------------------------------------------------------------------------------
def test_sign_in_failures_are_inline_and_throttled(browser):
    r = browser.sign_in("admin@acme.example", "wrong password")
    assert r.status_code == 401 and "do not match" in body(r)
    for _ in range(4):
        browser.sign_in("admin@acme.example", "wrong password")
    blocked = browser.sign_in("admin@acme.example")  # even the right password waits now
    assert blocked.status_code == 429 and "Too many failed sign-ins" in body(blocked)
    assert AuditEvent.select().where(AuditEvent.action == "user.sign_in_failed").count() == 5


def test_sign_in_redirects_only_to_local_paths(browser):
    browser.get("/sign-in")
    r = browser.post(
        "/sign-in?next=https://evil.example/", {"email": "admin@acme.example", "password": "correct horse battery"}
    )
    assert r.headers["Location"] == "/"


def test_sign_out_needs_csrf_and_ends_the_session(admin):
    assert admin.post("/sign-out", csrf=False).status_code == 400
    assert admin.post("/sign-out").status_code == 302
    assert admin.get("/settings/mcp/").status_code == 302


def test_session_cookie_flags(browser):
    r = browser.sign_in("admin@acme.example")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


# -- CSRF and headers -------------------------------------------------------------------------------------
def test_every_state_change_needs_a_csrf_token(admin):
    create(admin)
    token = ApiToken.get()
    for url in (
        "/settings/mcp/tokens",
        f"/settings/mcp/tokens/{token.id}",
        f"/settings/mcp/tokens/{token.id}/revoke",
        f"/settings/mcp/tokens/{token.id}/rotate",
        "/workspace",
    ):
        assert admin.post(url, {"name": "x", "expiry": "30"}, csrf=False).status_code == 400, url
        assert admin.post(url, {"name": "x", "expiry": "30"}, htmx=True, csrf=False).status_code == 400, url
    assert ApiToken.get().revoked_at is None and ApiToken.select().count() == 1


def test_security_headers_and_local_htmx(browser):
    r = browser.get("/sign-in")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "same-origin"
    assert "<script>" not in body(r) and "http" not in re.findall(r'<script src="([^"]+)"', body(r))[0]
    js = browser.get("/vendor/htmx.min.js")
    assert js.status_code == 200 and b"htmx" in js.data[:2000]


# -- token life cycle -------------------------------------------------------------------------------------
def test_generate_shows_the_token_exactly_once(admin):
    dialog = admin.get("/settings/mcp/tokens/new", htmx=True)
    assert "<html" not in body(dialog) and "Create API Token".lower() in body(dialog).lower()
    r = create(admin, packs="accounts")
    assert r.status_code == 201
    shown = TOKEN_PATTERN.findall(body(r))
    assert len(shown) == 1
    plaintext = shown[0]
    assert "will not be shown again" in body(r)
    assert 'id="token-list" hx-swap-oob="true"' in body(r) and "Slack agent" in body(r)
    for url in (
        "/settings/mcp/",
        "/settings/mcp/?show=all",
        "/settings/audit/",
        f"/settings/mcp/tokens/{ApiToken.get().id}",
    ):
        page = body(admin.get(url))
        assert plaintext not in page and plaintext[4:-4] not in page
    assert f"pgo_…{plaintext[-4:]}" in body(admin.get("/settings/mcp/"))
    assert ApiToken.get().packs == "accounts"


def test_generate_without_javascript_renders_the_full_page_once(admin):
    r = create(admin, htmx=False, expiry="never")
    assert r.status_code == 201 and "<html" in body(r)
    assert len(TOKEN_PATTERN.findall(body(r))) == 1 and "never expires" in body(r)


@pytest.mark.parametrize(
    "data,message",
    [
        ({"name": "", "expiry": "30"}, "a name is required"),
        ({"name": "x" * 101, "expiry": "30"}, "100"),
        ({"name": "ok", "expiry": "date", "expiry_date": "2001-01-01"}, "in the future"),
        ({"name": "ok", "expiry": "date"}, "choose a date"),
        ({"name": "ok", "expiry": "30", "packs": "nonexistent"}, "not a valid choice"),
    ],
)
def test_validation_errors_show_inline_in_the_dialog(admin, data, message):
    r = admin.post("/settings/mcp/tokens", data, htmx=True)
    assert r.status_code == 422 and message in body(r)
    assert "<html" not in body(r) and 'class="field-error"' in body(r)
    assert ApiToken.select().count() == 0


def test_duplicate_name_is_refused_inline(admin):
    create(admin, "RevOps Control Panel")
    r = create(admin, "revops control panel")
    assert r.status_code == 422 and "already named" in body(r)


def _same_csrf(html: str) -> str:
    """The CSRF token is signed with the second it was made in: two renders a second apart differ there
    and nowhere else."""
    return re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token" value="…"', html)


def test_full_page_renders_the_same_partials(admin):
    create(admin)
    token = ApiToken.get()
    page = _same_csrf(body(admin.get("/settings/mcp/")))
    fragment = _same_csrf(body(admin.get("/settings/mcp/?show=active", htmx=True, headers={"HX-Target": "token-list"})))
    assert fragment.strip().startswith('<div id="token-list"')
    row = _same_csrf(body(admin.get(f"/settings/mcp/tokens/{token.id}", htmx=True)))
    assert row.strip() in page  # the row inside the page is byte for byte the row HTMX swaps in
    assert fragment.strip() in page


def test_inline_edit_swaps_row_into_form_and_back(admin):
    create(admin)
    token = ApiToken.get()
    form = admin.get(f"/settings/mcp/tokens/{token.id}/edit", htmx=True)
    assert 'class="editing"' in body(form) and "<html" not in body(form)
    bad = admin.post(f"/settings/mcp/tokens/{token.id}", {"name": "", "expiry": "keep"}, htmx=True)
    assert bad.status_code == 422 and "a name is required" in body(bad)
    ok = admin.post(f"/settings/mcp/tokens/{token.id}", {"name": "Renamed", "expiry": "7"}, htmx=True)
    assert ok.status_code == 200 and "Renamed" in body(ok) and 'class="editing"' not in body(ok)
    token = ApiToken.get()
    assert token.name == "Renamed" and token.expires_at is not None
    assert "Expiring soon" in body(ok)
    no_js = admin.post(f"/settings/mcp/tokens/{token.id}", {"name": "Again", "expiry": "never"})
    assert no_js.status_code == 302 and ApiToken.get().expires_at is None


def test_revoke_shows_revoked_at_once(admin):
    create(admin)
    token = ApiToken.get()
    r = admin.post(f"/settings/mcp/tokens/{token.id}/revoke", htmx=True)
    assert r.status_code == 200 and "Revoked" in body(r) and f'id="token-{token.id}"' in body(r)
    assert ApiToken.get().revoked_at is not None
    assert "Revoked" not in body(admin.get("/settings/mcp/")) or "No active tokens" in body(admin.get("/settings/mcp/"))
    assert "Revoked" in body(admin.get("/settings/mcp/?show=all"))


def test_rotate_shows_the_new_secret_once(admin):
    first = TOKEN_PATTERN.findall(body(create(admin)))[0]
    token = ApiToken.get()
    r = admin.post(f"/settings/mcp/tokens/{token.id}/rotate", htmx=True)
    shown = TOKEN_PATTERN.findall(body(r))
    assert len(shown) == 1 and shown[0] != first
    assert ApiToken.get().last_four == shown[0][-4:]


def test_another_workspaces_token_is_404(admin, app):
    from poggio.identity.tokens import TokenService
    from poggio.records.audit import Actor
    from poggio.storage.models import Workspace

    foreign = TokenService().create(Workspace.get(slug="initrode"), "theirs", Actor.cli()).token
    for url in (
        f"/settings/mcp/tokens/{foreign.id}",
        f"/settings/mcp/tokens/{foreign.id}/edit",
        f"/settings/mcp/tokens/{foreign.id}/activity",
    ):
        assert admin.get(url, htmx=True).status_code == 404
    assert admin.post(f"/settings/mcp/tokens/{foreign.id}/revoke", htmx=True).status_code == 404
    assert ApiToken.get_by_id(foreign.id).revoked_at is None


def test_activity_chart_and_breakdown(admin):
    create(admin)
    token = ApiToken.get()
    recorder = UsageRecorder()
    for i in range(12):
        recorder.record(token.id, "search_accounts", ok=i != 0, ip="203.0.113.9", client="Claude 1.0")
    recorder.record(token.id, "get_account")
    recorder.flush()
    page = body(admin.get("/settings/mcp/"))
    assert "13 calls, 1 errors" in page and 'class="err"' in page and "Claude 1.0" in page and "203.0.113.9" in page
    breakdown = admin.get(f"/settings/mcp/tokens/{token.id}/activity", htmx=True)
    assert "search_accounts" in body(breakdown) and "1 errors" in body(breakdown)
    assert TokenUsage.select().count() == 2


def test_long_token_lists_come_in_pages(admin):
    from poggio.identity.tokens import TokenService
    from poggio.records.audit import Actor
    from poggio.storage.models import Workspace
    from portal.mcp_sections import PAGE_SIZE

    acme = Workspace.get(Workspace.slug == "acme")
    for i in range(PAGE_SIZE + 3):
        TokenService().create(acme, f"bot {i:02d}", Actor.cli())
    first = body(admin.get("/settings/mcp/"))
    assert first.count('<tr id="token-') == PAGE_SIZE and "bot 52" in first and "bot 02" not in first  # newest first
    assert "Older &rarr;" in first and "&larr; Newer" not in first
    second = body(admin.get("/settings/mcp/?page=2", htmx=True, headers={"HX-Target": "token-list"}))
    assert "<html" not in second and second.count('<tr id="token-') == 3 and "bot 00" in second
    assert "&larr; Newer" in second and "Older &rarr;" not in second
    assert admin.get("/settings/mcp/?page=junk").status_code == 200  # a bad page number is page 1


def test_audit_log_lists_token_events(admin):
    create(admin)
    token = ApiToken.get()
    admin.post(f"/settings/mcp/tokens/{token.id}", {"name": "Renamed", "expiry": "keep"}, htmx=True)
    admin.post(f"/settings/mcp/tokens/{token.id}/revoke", htmx=True)
    page = body(admin.get("/settings/audit/"))
    for label in ("Token created", "Token renamed", "Token revoked", "Signed in"):
        assert label in page
    assert "admin@acme.example" in page and "127.0.0.1" in page


def test_connect_panel_has_the_url_and_no_secret(admin):
    create(admin)
    page = body(admin.get("/settings/mcp/"))
    for snippet in (
        'streamable_http_client("http://127.0.0.1:8001/mcp"',
        "@modelcontextprotocol/inspector",
        "mcp-remote",
        "mcpServers",
        "&lt;YOUR_TOKEN&gt;",
    ):
        assert snippet in page
    assert not TOKEN_PATTERN.search(page)


def test_errors_are_pages_not_tracebacks(admin):
    r = admin.get("/settings/mcp/tokens/999999/edit")
    assert r.status_code == 404 and "Traceback" not in body(r)


def test_an_expired_token_can_only_be_rotated_back(admin):
    import datetime as dt

    from poggio.identity.tokens import status
    from poggio.storage.db import utcnow

    first = TOKEN_PATTERN.findall(body(create(admin, "Old bot", expiry="30")))[0]
    token = ApiToken.get()
    ApiToken.update(
        created_at=token.created_at - dt.timedelta(days=31), expires_at=token.expires_at - dt.timedelta(days=31)
    ).execute()
    form = body(admin.get(f"/settings/mcp/tokens/{token.id}/edit", htmx=True))
    assert 'name="expiry"' not in form and "Rotate it to get a new secret" in form
    r = admin.post(f"/settings/mcp/tokens/{token.id}", {"name": "Old bot", "expiry": "30"}, htmx=True)
    assert r.status_code == 422 and "expiry cannot change" in body(r) and 'class="field-error"' in body(r)
    assert status(ApiToken.get()) == "expired"
    renamed = admin.post(f"/settings/mcp/tokens/{token.id}", {"name": "Older bot"}, htmx=True)
    assert renamed.status_code == 200 and ApiToken.get().name == "Older bot" and status(ApiToken.get()) == "expired"
    rotated = admin.post(f"/settings/mcp/tokens/{token.id}/rotate", htmx=True)
    secret = TOKEN_PATTERN.findall(body(rotated))
    assert len(secret) == 1 and secret[0] != first
    assert ApiToken.get().expires_at > utcnow() + dt.timedelta(days=29)


def test_sign_out_is_in_the_workspace_audit_log(admin):
    admin.post("/sign-out")
    admin.sign_in("admin@acme.example")
    page = body(admin.get("/settings/audit/"))
    assert "Signed out" in page


@pytest.mark.parametrize("page", ["99999999999999999999", "-99999999999999999999", "9223372036854775807", "0", "x"])
def test_audit_page_number_out_of_range_is_not_an_error(admin, page):
    r = admin.get(f"/settings/audit/?page={page}")
    assert r.status_code == 200 and "Audit log" in body(r)


# -- write scopes -------------------------------------------------------------------------------------------
def test_generate_offers_read_or_write_per_pack_with_a_warning(admin):
    dialog = body(admin.get("/settings/mcp/tokens/new", htmx=True))
    for pack in ("accounts", "contacts", "revenue"):
        assert f'name="packs" value="{pack}"' in dialog and f'name="write" value="{pack}"' in dialog
    assert "Write lets it change your data." in dialog and "audit log" in dialog
    assert create(admin, packs=["accounts", "contacts"], write=["accounts", "revenue"]).status_code == 201
    assert ApiToken.get().packs == "accounts:write,contacts,revenue:write"  # write includes read
    assert "accounts (read and write), contacts (read), revenue (read and write)" in body(admin.get("/settings/mcp/"))
    r = create(admin, "other", write=["nonexistent"])
    assert r.status_code == 422 and "not a valid choice" in body(r)


def test_edit_changes_a_tokens_packs_and_is_audited(admin):
    create(admin, packs=["accounts"])
    token = ApiToken.get()
    form = body(admin.get(f"/settings/mcp/tokens/{token.id}/edit", htmx=True))
    assert 'name="packs" value="accounts" checked' in form and 'name="write" value="accounts" checked' not in form
    r = admin.post(
        f"/settings/mcp/tokens/{token.id}",
        {
            "name": token.name,
            "expiry": "keep",
            "pack_scopes": "shown",
            "packs": ["accounts", "revenue"],
            "write": ["revenue"],
        },
        htmx=True,
    )
    assert r.status_code == 200 and ApiToken.get().packs == "accounts,revenue:write"
    assert "Token packs changed" in body(admin.get("/settings/audit/"))
    # a post that did not show the packs (rename only) leaves them as they are
    admin.post(f"/settings/mcp/tokens/{token.id}", {"name": "Renamed", "expiry": "keep"}, htmx=True)
    assert ApiToken.get().packs == "accounts,revenue:write" and ApiToken.get().name == "Renamed"


def test_audit_log_filters_writes_only(admin):
    from poggio.records import audit
    from poggio.storage.models import Workspace

    create(admin)
    audit.record(
        "data.written",
        audit.Actor(label="token: Slack agent"),
        Workspace.get(slug="acme"),
        target="account example.com",
        tool="update_account",
        token_id=ApiToken.get().id,
        before={"name": "Example Corp"},
        after={"name": "Example Group"},
    )
    everything = body(admin.get("/settings/audit/"))
    assert "Token created" in everything and "Changed by a tool" in everything
    writes = body(admin.get("/settings/audit/?writes=1"))
    assert "Token created" not in writes and "Changed by a tool" in writes
    assert "update_account; name: Example Corp → Example Group" in writes and "token: Slack agent" in writes
