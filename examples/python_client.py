"""Connect to a Poggio MCP server with the official `mcp` Python SDK.

    POGGIO_MCP_URL=http://127.0.0.1:8001/mcp POGGIO_TOKEN=pgo_... python examples/python_client.py example.com

Lists the tools your token can use, then prints what Poggio knows about one account. Exits non-zero
with a one-line reason when the token is refused (401), the workspace lacks the MCP entitlement
(403), the URL is not the MCP server's (the portal's address, a missing /mcp), or the server cannot
be reached.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


class Refused(Exception):
    pass


HINT = "is this the MCP server URL shown in Settings > MCP Server?"


async def main(url: str, token: str, domain: str) -> int:
    async def check(response: httpx2.Response) -> None:
        """Turn an answer that is not MCP into one line; the SDK would bury it in an exception group."""
        status = response.status_code
        if status in (401, 403):
            await response.aread()
            try:
                reason = response.json().get("error_description", "")
            except ValueError:
                reason = ""
            raise Refused(f"HTTP {status}: {reason or 'refused'}")
        if response.request.method != "POST":
            return  # the SDK copes with a server that offers no GET stream or DELETE
        if status == 429:
            raise Refused(f"HTTP 429: rate limited; retry after {response.headers.get('Retry-After', 'a while')} s")
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        if status >= 300:
            moved = f" (a redirect to {response.headers['location']})" if "location" in response.headers else ""
            raise Refused(f"{url} answered {status}{moved}: {HINT}")
        if status < 300 and kind not in ("application/json", "text/event-stream", ""):
            raise Refused(f"{url} answered {status} with {kind}, not MCP: {HINT}")

    # --8<-- [start:connect]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30, event_hooks={"response": [check]}) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            print(f"Connected to {client.server_info.name if client.server_info else 'server'} at {url}")
            tools = await client.list_tools()
            print("Tools:", ", ".join(t.name for t in tools.tools))
            result = await client.call_tool("get_account", {"domain": domain})
            text = "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")
            if result.is_error:
                print(f"get_account failed: {text}", file=sys.stderr)
                return 1
            print(text)
            # --8<-- [end:connect]
            if os.environ.get("POGGIO_JSON"):
                print(json.dumps(result.structured_content, indent=2))
    return 0


def _first(exc: BaseException, kind: type) -> BaseException | None:
    stack = [exc]
    while stack:
        e = stack.pop()
        if isinstance(e, kind):
            return e
        stack.extend(getattr(e, "exceptions", ()))
        stack.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    return None


def run() -> int:
    url = os.environ.get("POGGIO_MCP_URL", "http://127.0.0.1:8001/mcp")
    token = os.environ.get("POGGIO_TOKEN")
    if not token:
        print("error: set POGGIO_TOKEN to an API token from Settings > MCP Server", file=sys.stderr)
        return 2
    domain = sys.argv[1] if len(sys.argv) > 1 else "example.com"
    try:
        return asyncio.run(main(url, token, domain))
    except BaseException as exc:  # noqa: BLE001 - the SDK wraps transport errors in exception groups
        if isinstance(exc, KeyboardInterrupt):
            return 130
        refused = _first(exc, Refused)
        if refused is not None:
            print(f"error: {refused}", file=sys.stderr)
            return 1
        if _first(exc, httpx2.TransportError) is not None or _first(exc, OSError) is not None:
            print(f"error: cannot reach {url}", file=sys.stderr)
            return 1
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run())
