"""Fetching Client ID Metadata Documents from URLs anyone may name: a slow or hostile server cannot
hold the fetch, or the portal, past the fetch's deadline; a failure is remembered briefly; the
address filter refuses what is not on the internet, IPv6 spellings of private IPv4 included."""

from __future__ import annotations

import threading
import time

import pytest
from oauth_support import DribblingServer, MetadataDocumentServer, self_signed_certificate

from portal import client_metadata
from portal.client_metadata import MetadataError, fetch_client_metadata


@pytest.fixture
def tls(tmp_path, monkeypatch):
    """A certificate for 127.0.0.1 that this process trusts, and no failure remembered from before."""
    cert, key = self_signed_certificate(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    client_metadata.failures.clear()
    yield cert, key
    client_metadata.failures.clear()


def _fetch_in_thread(url: str) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run():
        started = time.monotonic()
        try:
            fetch_client_metadata(url, allow_private=True)
        except MetadataError as exc:
            outcome["error"] = str(exc)
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_dribbling_server_is_given_up_on_at_the_deadline(tls, monkeypatch):
    """A byte every half second never trips a read timeout: only a deadline for the whole fetch ends it."""
    monkeypatch.setattr(client_metadata, "DEADLINE_SECONDS", 2.0)
    slow = DribblingServer(*tls, interval=0.3)
    try:
        thread, outcome = _fetch_in_thread(slow.url())
        thread.join(timeout=30)
        assert not thread.is_alive(), "the fetch was still running after 30 s"
        assert outcome["seconds"] < 2.0 + 3.0  # the deadline, plus at most one read's wait
        assert "did not answer in full within 2 seconds" in outcome["error"]
        # remembered: asked again at once, the portal answers the same without connecting again
        assert slow.connections == 1
        with pytest.raises(MetadataError, match="did not answer in full"):
            fetch_client_metadata(slow.url(), allow_private=True)
        assert slow.connections == 1
    finally:
        slow.close()


def test_a_failure_is_forgotten_after_a_while(tls, monkeypatch):
    cert, key = tls
    document = MetadataDocumentServer(
        cert,
        key,
        {"client_name": "App", "redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none"},
    )
    try:
        real = document.client_id
        monkeypatch.setattr(client_metadata, "FAILURE_SECONDS", 0.2)
        wrong = real.replace("/oauth/client.json", "/missing.json")
        with pytest.raises(MetadataError, match="HTTP 404"):
            fetch_client_metadata(wrong, allow_private=True)
        with pytest.raises(MetadataError, match="HTTP 404"):
            fetch_client_metadata(wrong, allow_private=True)
        got, _ = fetch_client_metadata(real, allow_private=True)  # another URL is not affected
        assert got["client_name"] == "App" and document.requests == 1
        deadline = time.monotonic() + 10
        while client_metadata.failures.get(wrong) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client_metadata.failures.get(wrong) is None
    finally:
        document.close()


def test_fetches_at_once_are_capped_and_the_next_is_told_to_wait(tls, monkeypatch):
    monkeypatch.setattr(client_metadata, "DEADLINE_SECONDS", 3.0)
    slow = DribblingServer(*tls, interval=0.3)
    try:
        running = [_fetch_in_thread(slow.url(f"/slow{i}.json")) for i in range(client_metadata.MAX_CONCURRENT)]
        deadline = time.monotonic() + 10
        while slow.connections < client_metadata.MAX_CONCURRENT and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        with pytest.raises(MetadataError, match="busy"):
            fetch_client_metadata(slow.url("/one-more.json"), allow_private=True)
        assert time.monotonic() - started < 1.0
        assert client_metadata.failures.get(slow.url("/one-more.json")) is None  # busy is not the URL's fault
        for thread, _ in running:
            thread.join(timeout=30)
            assert not thread.is_alive()
    finally:
        slow.close()


def test_an_oversized_document_is_refused(tls, monkeypatch):
    cert, key = tls
    document = MetadataDocumentServer(
        cert, key, {"redirect_uris": ["https://app.example/cb"], "padding": "x" * (client_metadata.MAX_BYTES + 10)}
    )
    try:
        with pytest.raises(MetadataError, match="larger than 16 KB"):
            fetch_client_metadata(document.client_id, allow_private=True)
    finally:
        document.close()


def test_slow_metadata_urls_do_not_freeze_the_portal(tmp_path):
    """The portal as production runs it (gunicorn, one worker of four threads): four sign-in links
    naming slow metadata URLs at once; pages keep answering meanwhile, and every link gets its error
    page within the fetch's deadline."""
    import httpx
    from oauth_support import oauth_stack
    from portal_client import CSRF

    with oauth_stack(tmp_path, "sqlite") as stack:
        slow = DribblingServer(stack.cert, stack.key, interval=0.5)
        try:
            with httpx.Client(base_url=stack.portal.url, timeout=60) as person:
                page = person.get("/sign-in").text
                token = next(g for g in CSRF.search(page).groups() if g)
                signed = person.post(
                    "/sign-in", data={"email": stack.email, "password": stack.password, "csrf_token": token}
                )
                assert signed.status_code == 302, signed.text
                answers: list[tuple[int, str, float]] = []

                def authorize(i):
                    started = time.monotonic()
                    r = person.get(
                        "/oauth/authorize", params={"client_id": slow.url(f"/slow{i}.json"), "response_type": "code"}
                    )
                    answers.append((r.status_code, r.text, time.monotonic() - started))

                threads = [threading.Thread(target=authorize, args=(i,), daemon=True) for i in range(4)]
                for thread in threads:
                    thread.start()
                deadline = time.monotonic() + 20
                while slow.connections < client_metadata.MAX_CONCURRENT and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert slow.connections >= 1
                for path in ("/healthz", "/sign-in", "/healthz"):
                    started = time.monotonic()
                    assert httpx.get(stack.portal.url + path, timeout=5).status_code == 200
                    assert time.monotonic() - started < 2.0, f"{path} waited behind the slow fetches"
                for thread in threads:
                    thread.join(timeout=60)
                assert not any(t.is_alive() for t in threads)
                assert len(answers) == 4
                for status, text, seconds in answers:
                    assert status == 400 and seconds < client_metadata.DEADLINE_SECONDS + 5
                    assert "did not answer in full" in text or "busy" in text
                assert slow.connections <= client_metadata.MAX_CONCURRENT
        finally:
            slow.close()


@pytest.mark.parametrize(
    "address, public",
    [
        ("8.8.8.8", True),
        ("10.0.0.1", False),
        ("2606:4700::1111", True),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped: the IPv4 address decides
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::10.0.0.1", False),  # NAT64 (RFC 6052): the embedded IPv4 address decides
        ("64:ff9b::8.8.8.8", True),
        ("64:ff9b::127.0.0.1", False),
        ("64:ff9b:1::8.8.8.8", False),  # local-use NAT64 (RFC 8215): a private translator
        ("2002:0a00:0001::", False),  # 6to4 of 10.0.0.1
        ("2002:7f00:0001::1", False),  # 6to4 of 127.0.0.1
        ("2002:0808:0808::1", True),  # 6to4 of 8.8.8.8
        ("::10.0.0.1", False),  # IPv4-compatible, deprecated (RFC 4291): refused whatever it embeds
        ("::8.8.8.8", False),
        ("fec0::1", False),  # site-local, deprecated (RFC 3879)
        ("fc00::1", False),
        ("fe80::1", False),
        ("::1", False),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("[2606:4700::1111]", True),
        ("not an address", False),
    ],
)
def test_only_addresses_on_the_internet_are_public(address, public):
    from poggio.security.addresses import is_public_address

    assert is_public_address(address) is public


def test_a_name_that_does_not_resolve_in_time_is_given_up_on(tls, monkeypatch):
    """A hostile name server that never answers: the fetch gives up at the read bound, not the resolver's."""
    import socket

    released = threading.Event()

    def slow_getaddrinfo(*args, **kwargs):
        released.wait(30)
        raise socket.gaierror("late")

    monkeypatch.setattr(client_metadata, "READ_SECONDS", 0.5)
    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    try:
        started = time.monotonic()
        with pytest.raises(MetadataError, match="did not resolve within 0.5 seconds"):
            fetch_client_metadata("https://slow-dns.example/client.json")
        assert time.monotonic() - started < 5
    finally:
        released.set()
