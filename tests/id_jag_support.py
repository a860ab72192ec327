"""A small identity provider for the Enterprise-Managed Authorization tests, built on joserfc: it
signs ID tokens for people who "signed in" and exchanges them (RFC 8693 token exchange) for ID-JAGs
(``typ`` ``oauth-id-jag+jwt``) addressed to Poggio, serving its discovery document and JWKS over
real HTTP on 127.0.0.1. (``oidc-provider``, which the single sign-on tests use, issues no ID-JAGs
without custom grant code, so this provider stands in for the identity provider's leg 1.)"""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import time
from urllib.parse import parse_qs

from instances import free_port
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ID_JAG_TYPE = "urn:ietf:params:oauth:token-type:id-jag"


class IdJagProvider:
    """``login(sub, email)`` gives an ID token; ``POST /token`` (token exchange) turns it into an
    ID-JAG; ``mint(**claims)`` signs any ID-JAG a test wants (expired, for another audience, …)."""

    def __init__(self):
        self.key = RSAKey.generate_key(2048, parameters={"kid": f"k-{secrets.token_hex(4)}", "use": "sig"})
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.exchanges = 0
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _json(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                if self.path == "/.well-known/openid-configuration":
                    self._json(200, provider.discovery())
                elif self.path == "/jwks":
                    self._json(200, KeySet([RSAKey.import_key(provider.key.as_dict(private=False))]).as_dict())
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                status, body = provider.exchange(form)
                self._json(status, body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def discovery(self) -> dict:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/jwks",
            "token_endpoint": f"{self.issuer}/token",
            "authorization_endpoint": f"{self.issuer}/authorize",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "grant_types_supported": [TOKEN_EXCHANGE],
            "identity_chaining_requested_token_types_supported": [ID_JAG_TYPE],
        }

    def sign(self, claims: dict, typ: str = "JWT") -> str:
        return jwt.encode({"alg": "RS256", "kid": self.key.kid, "typ": typ}, claims, self.key)

    def login(self, sub: str, email: str, audience: str = "the-agent-at-the-idp") -> str:
        now = int(time.time())
        return self.sign(
            {"iss": self.issuer, "sub": sub, "email": email, "aud": audience, "iat": now, "exp": now + 600}
        )

    def mint(self, **claims) -> str:
        """An ID-JAG with ``claims`` over sensible defaults (a ``None`` value leaves a claim out)."""
        now = int(time.time())
        base = {"iss": self.issuer, "iat": now, "exp": now + 300, "jti": secrets.token_urlsafe(16)}
        typ = claims.pop("typ", "oauth-id-jag+jwt")
        merged = {k: v for k, v in {**base, **claims}.items() if v is not None}
        return self.sign(merged, typ=typ)

    def exchange(self, form: dict) -> tuple[int, dict]:
        """RFC 8693 token exchange: an ID token this provider issued -> an ID-JAG for ``audience``."""
        if form.get("grant_type") != TOKEN_EXCHANGE or form.get("requested_token_type") != ID_JAG_TYPE:
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(form.get("subject_token", ""), self.key).claims
        except Exception:  # noqa: BLE001 - any bad subject token is the same answer
            return 400, {"error": "invalid_grant", "error_description": "subject_token"}
        if claims.get("iss") != self.issuer or claims.get("exp", 0) < time.time():
            return 400, {"error": "invalid_grant"}
        self.exchanges += 1
        id_jag = self.mint(
            sub=claims["sub"],
            email=claims.get("email"),
            aud=form.get("audience"),
            resource=form.get("resource"),
            client_id=form.get("client_id"),
            scope=form.get("scope"),
        )
        return 200, {"access_token": id_jag, "issued_token_type": ID_JAG_TYPE, "token_type": "N_A", "expires_in": 300}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
