"""Cost of verifying one bearer token, as the MCP server does per request: an API token and an OAuth
access token side by side, and what bcrypt would cost.

    .venv/bin/python benchmarks/auth.py [--tokens 1000] [--rounds 20000]

Builds a temp SQLite instance with N tokens, then times TokenService.verify (shape and checksum,
SHA-256 digest, indexed look-up joined with the workspace, expiry/revocation/entitlement checks) on
one pooled connection; as many OAuth grants with one access token each, and OAuthService.verify_access
(the same checks through the token, its grant, its client and the workspace); and bcrypt.checkpw at
costs 10 and 12 for comparison. Prints medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import bcrypt

from poggio.identity.oauth import OAuthService
from poggio.identity.tokens import TokenService
from poggio.identity.workspaces import create_user, create_workspace
from poggio.records.audit import Actor
from poggio.runtime.plugins import PackRegistry
from poggio.runtime.schema import upgrade
from poggio.security.token_format import digest, well_formed
from poggio.storage.db import bind
from poggio.storage.models import OAuthCode, User

RESOURCE = "http://127.0.0.1:8001/mcp"


def oauth_tokens(ws, n: int) -> list[str]:
    """``n`` grants as the authorization code flow leaves them, one access token each."""
    service = OAuthService(known_packs={"accounts"})
    user = User.get_or_none(User.email == "bench@example.com") or create_user(
        "bench@example.com", "bench-password-1", ws, "admin", Actor.cli()
    )
    client = service.register(
        {"client_name": "bench", "redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"}
    ).client
    found = []
    for i in range(n):
        service.issue_code(
            code=f"bench-code-{i}",
            client=client,
            user=user,
            workspace=ws,
            packs={"accounts"},
            redirect_uri="http://127.0.0.1:9/cb",
            resource=RESOURCE,
            code_challenge="x" * 43,
            code_challenge_method="S256",
            grant_days=None,
            actor=Actor.cli(),
        )
        grant = service.grant_from_code(OAuthCode.select().order_by(OAuthCode.id.desc()).first())
        found.append(service.issue_tokens(grant, refresh=False)["access_token"])
    return found


def per_call(fn, n: int) -> float:
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = bind(f"sqlite:///{tmp}/bench.db")
        with db.connection_context():
            upgrade(PackRegistry.load())
            ws = create_workspace("bench", "Bench", True, Actor.cli())
            service = TokenService(max_active_tokens=args.tokens + 1)
            issued = [service.create(ws, f"t{i}", Actor.cli(), expires="never").plaintext for i in range(args.tokens)]
            token = issued[len(issued) // 2]
            checks = per_call(lambda: well_formed(token), args.rounds)
            digests = per_call(lambda: digest(token), args.rounds)
            verify = per_call(lambda: service.verify(token), args.rounds // 4)
            access_tokens = oauth_tokens(ws, args.tokens)
            access = access_tokens[len(access_tokens) // 2]
            oauth = OAuthService()
            verify_oauth = per_call(lambda: oauth.verify_access(access, RESOURCE), args.rounds // 4)
        print(f"tokens in the table:            {args.tokens}")
        print(f"shape + checksum:                {checks * 1e6:8.2f} µs")
        print(f"SHA-256 digest:                  {digests * 1e6:8.2f} µs")
        print(f"verify (incl. SQLite look-up):   {verify * 1e6:8.2f} µs   target < 200 µs")
        print(f"OAuth access token verify:       {verify_oauth * 1e6:8.2f} µs   ({args.tokens} grants)")
        for cost in (10, 12):
            hashed = bcrypt.hashpw(token.encode(), bcrypt.gensalt(cost))
            b = per_call(lambda hashed=hashed: bcrypt.checkpw(token.encode(), hashed), 3)
            print(
                f"bcrypt.checkpw cost {cost}:          {b * 1e3:8.1f} ms   = at most {1 / b:,.0f} requests/s per core"
            )


if __name__ == "__main__":
    main()
