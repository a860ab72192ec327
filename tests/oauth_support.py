"""What the OAuth end-to-end tests share: a running portal + MCP server on one demo instance, a local
redirect listener standing in for an app's callback, a browser that signs in and approves, a
self-signed TLS server for Client ID Metadata Documents.

Every piece is real: the portal is gunicorn, the MCP server uvicorn, the browser Debian's Chromium
through Playwright, the certificate a real X.509 certificate for 127.0.0.1 that the portal trusts
through ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import http.server
import ipaddress
import json
import queue
import re
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from instances import ROOT, Instance, PortalProcess, ServerProcess, drop_instance, free_port, make_instance

from poggio.commands import demo
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ALL_TOOLS = {
    "search_accounts",
    "get_account",
    "search_contacts",
    "get_contact",
    "get_revenue_summary",
    "list_opportunities",
}


def mint(service, workspace, user, packs: set[str], resource: str):
    """A grant approved by ``user`` and its first tokens, the way the authorization code flow ends."""
    import time

    from poggio.records.audit import Actor
    from poggio.storage.models import OAuthCode

    client = service.register(
        {"client_name": "Test agent", "redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"}
    ).client
    service.issue_code(
        code="c" * 43 + str(time.monotonic_ns()),
        client=client,
        user=user,
        workspace=workspace,
        packs=packs,
        redirect_uri="http://127.0.0.1:9/cb",
        resource=resource,
        code_challenge="x" * 43,
        code_challenge_method="S256",
        grant_days=30,
        actor=Actor(user),
    )
    code = OAuthCode.select().order_by(OAuthCode.id.desc()).first()
    grant = service.grant_from_code(code)
    return grant, service.issue_tokens(grant)


@dataclass
class OAuthStack:
    instance: Instance
    mcp: ServerProcess
    portal: PortalProcess
    email: str
    password: str
    cert: Path  # the portal trusts it: serve metadata documents with it and its key
    key: Path

    @property
    def mcp_url(self) -> str:
        return self.mcp.mcp_url

    def oauth_metadata(self) -> dict:
        return httpx.get(f"{self.portal.url}/.well-known/oauth-authorization-server", timeout=10).json()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate (and its key) for https://127.0.0.1, written as PEM files into ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@contextlib.contextmanager
def oauth_stack(tmp: Path, backend: str, access_token_seconds: int = 3600) -> Iterator[OAuthStack]:
    """The demo workspace (admin admin@acme.example) served by a portal and an MCP server that know
    each other's URLs. The portal fetches metadata documents from loopback and trusts ``cert``."""
    inst = make_instance(tmp / "instance", backend)
    db = inst.activate()
    with db.connection_context():
        upgrade(PackRegistry.load())
        result = demo.build(PackRegistry.load(), "acme", accounts=25)
    cert, key = self_signed_certificate(tmp / "tls")
    portal_port = free_port()
    mcp = ServerProcess(inst, extra_env={"POGGIO_PORTAL_PUBLIC_URL": f"http://127.0.0.1:{portal_port}"})
    portal = None
    try:
        portal = PortalProcess(
            inst,
            mcp.mcp_url,
            port=portal_port,
            extra_env={
                "POGGIO_OAUTH_ACCESS_TOKEN_SECONDS": str(access_token_seconds),
                "POGGIO_OAUTH_METADATA_ALLOW_PRIVATE": "true",
                "SSL_CERT_FILE": str(cert),
            },
        )
        yield OAuthStack(inst, mcp, portal, result.admin_email, result.admin_password, cert, key)
    finally:
        if portal is not None:
            portal.stop()
        mcp.stop()
        db.close()
        drop_instance(inst)
    for name, log in (("portal", portal.log_path), ("MCP server", mcp.log_path)):
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, f"the {name} logged a traceback:\n{text[-6000:]}"


def _send(
    handler: http.server.BaseHTTPRequestHandler, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> None:
    handler.send_response(200)
    for name, value in {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


@contextlib.asynccontextmanager
async def chromium():
    """Debian's Chromium, headless, through Playwright's async API."""
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (make system-deps)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def portal_page(browser, stack: OAuthStack):
    """A fresh browser context's page on which a console error from a portal page (a CSP form-action
    refusal, a script error, a failed load) fails the test when the block ends."""
    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = await context.new_page()
        errors: list[str] = []
        page.on(
            "console",
            lambda m: (
                errors.append(f"{m.location.get('url')}: {m.text}")
                if m.type == "error" and m.location.get("url", "").startswith(stack.portal.url)
                else None
            ),
        )
        page.on("dialog", lambda d: d.accept())  # confirmations (disconnect, revoke)
        yield page
        assert not errors, f"browser console errors: {errors}"
    finally:
        await context.close()


async def sign_in(page, stack: OAuthStack, url: str) -> None:
    """Open ``url``; the portal asks for a sign-in first and then goes on to it."""
    await page.goto(url)
    assert "/sign-in" in page.url, page.url
    await page.fill("#email", stack.email)
    await page.fill("#password", stack.password)
    await page.click("button[type=submit]")


async def sign_in_and_approve(browser, stack: OAuthStack, url: str, screenshot: str | None = None) -> tuple[str, str]:
    """What the person does with an authorization URL: open it in a fresh browser context, sign in
    to the portal when it asks, approve on the consent page as shown, and land on the app's redirect
    URI. Returns (the consent page's text, the text of the page the redirect landed on)."""
    redirect_uri = parse_qs(urlsplit(url).query)["redirect_uri"][0]
    async with portal_page(browser, stack) as page:
        await sign_in(page, stack, url)
        await page.wait_for_selector("form.consent-form")
        assert page.url.startswith(f"{stack.portal.url}/oauth/authorize?"), page.url
        consent = await page.inner_text("section.consent")
        if screenshot:
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
        await page.click("button[value=approve]")
        await page.wait_for_url(f"{redirect_uri}?**")
        return consent, await page.inner_text("body")


async def disconnect_in_settings(browser, stack: OAuthStack, grant_id: int, screenshot: str | None = None) -> str:
    """The admin disconnects a connected app in Settings > MCP Server; returns its row's text after."""
    from playwright.async_api import expect

    async with portal_page(browser, stack) as page:
        await sign_in(page, stack, f"{stack.portal.url}/")
        await page.click("nav.sidebar >> text=Settings")
        await page.click("nav.sidebar >> text=MCP Server")
        row = page.locator(f"#app-{grant_id}")
        await expect(row).to_contain_text("Connected")
        if screenshot:
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
        await row.locator("button[title=Disconnect]").click()
        await expect(page.locator(f"#app-{grant_id}")).to_contain_text("Disconnected")
        return await page.locator(f"#app-{grant_id}").inner_text()


class FormPerson:
    """The person at the consent page without a browser: the portal's own HTML forms, filled and
    posted as a browser would (cookies, the CSRF token, the consent form's seal), with httpx. Signs
    in the first time, approves what the page offers as it stands (reads ticked, no write) plus
    the "change" boxes of ``writes``, and follows the redirect to the app's listener. Each consent
    page's text is kept in ``consents``."""

    def __init__(self, stack: OAuthStack, writes: set[str] | None = None):
        self.stack = stack
        self.writes = set(writes or ())
        self.http = httpx.Client(timeout=20, follow_redirects=False)
        self.consents: list[str] = []
        self.urls: list[str] = []

    @staticmethod
    def _field(page: str, name: str) -> str:
        found = re.search(rf'name="{name}"[^>]*value="([^"]*)"', page) or re.search(
            rf'value="([^"]*)"[^>]*name="{name}"', page
        )
        assert found, f"no {name} field on the page:\n{page[:3000]}"
        return html.unescape(found.group(1))

    def approve(self, url: str) -> str:
        """Open ``url``, sign in if asked, approve; returns the redirect back to the app."""
        self.urls.append(url)
        page = self.http.get(url)
        if page.status_code == 302 and "/sign-in" in page.headers["location"]:
            form = self.http.get(urljoin(url, page.headers["location"]))
            signed = self.http.post(
                str(form.url),
                data={
                    "csrf_token": self._field(form.text, "csrf_token"),
                    "email": self.stack.email,
                    "password": self.stack.password,
                },
            )
            assert signed.status_code == 302, signed.text[:2000]
            page = self.http.get(url)
        assert page.status_code == 200, page.text[:2000]
        text = page.text
        self.consents.append(re.sub(r"<[^>]+>", " ", text))
        ticked = re.findall(r'name="packs" value="([^"]+)" checked', text)
        offered = set(re.findall(r'name="write" value="([^"]+)"', text))
        answer = self.http.post(
            url,
            data={
                "csrf_token": self._field(text, "csrf_token"),
                "seal": self._field(text, "seal"),
                "workspace": re.search(r'name="workspace" value="(\d+)"', text).group(1),
                "decision": "approve",
                "packs": ticked,
                "write": sorted(self.writes & offered),
                "lifetime": "90",
            },
        )
        assert answer.status_code == 302, answer.text[:2000]
        return answer.headers["location"]

    def close(self) -> None:
        self.http.close()


class RedirectListener:
    """An app's loopback redirect URI (RFC 8252): a real HTTP server on 127.0.0.1 that keeps the
    query of every request to ``/callback`` and answers the browser with a short page."""

    def __init__(self):
        self.received: queue.Queue[dict[str, str]] = queue.Queue()
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                parts = urlsplit(self.path)
                if parts.path != "/callback":  # the browser's /favicon.ico
                    self.send_response(204)
                    self.end_headers()
                    return
                listener.received.put({k: v[0] for k, v in parse_qs(parts.query).items()})
                _send(self, b"<!doctype html><title>Connected</title><p>You can close this window.</p>", "text/html")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, timeout: float = 60) -> dict[str, str]:
        return self.received.get(timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MetadataDocumentServer:
    """A Client ID Metadata Document served over https from 127.0.0.1; ``client_id`` is its URL.
    ``requests`` counts the GETs it answered."""

    def __init__(
        self,
        cert: Path,
        key: Path,
        document: dict,
        path: str = "/oauth/client.json",
        files: dict[str, dict] | None = None,
    ):
        """``files``: other JSON documents served beside it (``{path: document}``, e.g. a JWKS),
        each GET of which is counted in ``fetched[path]``."""
        self.requests = 0
        self.files = dict(files or {})
        self.fetched: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path in server.files:
                    server.fetched[self.path] = server.fetched.get(self.path, 0) + 1
                    _send(
                        self,
                        json.dumps(server.files[self.path]).encode(),
                        "application/json",
                        {"Cache-Control": "max-age=300"},
                    )
                    return
                if self.path != path:
                    self.send_error(404)
                    return
                server.requests += 1
                _send(self, json.dumps(server.document).encode(), "application/json", {"Cache-Control": "max-age=300"})

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.origin = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.client_id = f"{self.origin}{path}"
        self.document = {**document, "client_id": self.client_id}
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class DribblingServer:
    """A hostile metadata URL: a TLS server on 127.0.0.1 that reads the request and then answers one
    byte every ``interval`` seconds, for as long as the client stays. ``connections`` counts the
    connections it accepted; ``url(path)`` is an https URL the portal trusts (``cert``)."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n" + b" " * 100000

    def __init__(self, cert: Path, key: Path, interval: float = 0.5):
        import socket

        self.interval = interval
        self.connections = 0
        self.stopping = threading.Event()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/slow.json") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._dribble, args=(conn,), daemon=True).start()

    def _dribble(self, conn) -> None:
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(65536)
                for i in range(len(self.ANSWER)):
                    if self.stopping.wait(self.interval):
                        return
                    tls.sendall(self.ANSWER[i : i + 1])
        except OSError:
            return

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
