"""A real OpenID Connect provider for the single sign-on tests: ``oidc-provider`` (the certified
Node.js implementation, pinned in scripts/node/package.json) run under Node 22 by
``tests/sso/oidc_provider.mjs``, with its own development login and consent pages.

Its accounts live in a JSON file the provider reads on every sign-in, so a test changes someone's
groups between two sign-ins by writing the file. Started and stopped by :func:`openid_provider`
(stopped on failure too).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from clients.node_tools import NODE_DIR, node_env
from instances import free_port

SCRIPT = Path(__file__).resolve().parent / "sso" / "oidc_provider.mjs"


@dataclass
class OpenIdProvider:
    issuer: str
    accounts_file: Path
    log: Path
    process: subprocess.Popen

    def set_accounts(self, accounts: dict[str, dict]) -> None:
        """``{login: {email, name, groups}}``: who may sign in, with which claims (read at each sign-in)."""
        tmp = self.accounts_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(accounts))
        tmp.replace(self.accounts_file)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def openid_provider(tmp: Path, clients: list[dict], accounts: dict[str, dict]) -> Iterator[OpenIdProvider]:
    """``oidc-provider`` on a free loopback port with ``clients`` registered (their metadata, e.g.
    ``client_id``, ``client_secret``, ``redirect_uris``) and ``accounts`` able to sign in."""
    node, env = node_env(tmp / "node-home")
    port = free_port()
    accounts_file = tmp / "oidc-accounts.json"
    accounts_file.write_text(json.dumps(accounts))
    env.update(
        {
            "OIDC_PROVIDER_MODULE": str(NODE_DIR / "node_modules" / "oidc-provider" / "lib" / "index.js"),
            "OIDC_PORT": str(port),
            "OIDC_CLIENTS": json.dumps(clients),
            "OIDC_ACCOUNTS_FILE": str(accounts_file),
            "NODE_ENV": "development",
        }
    )
    log = tmp / "oidc-provider.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [node, str(SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp
        )
    provider = OpenIdProvider(f"http://127.0.0.1:{port}", accounts_file, log, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"oidc-provider exited ({process.returncode}):\n{provider.output()}")
            try:
                if httpx.get(f"{provider.issuer}/.well-known/openid-configuration", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"oidc-provider did not answer within 60 s:\n{provider.output()}")
            time.sleep(0.1)
        yield provider
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def stop(provider: OpenIdProvider) -> None:
    """Stop the provider now (a provider that is down), and wait until its port refuses."""
    if provider.process.poll() is None:
        provider.process.terminate()
        provider.process.wait(timeout=10)
