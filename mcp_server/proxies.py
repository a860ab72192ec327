"""Whose ``X-Forwarded-For`` the MCP server believes: the peers in ``POGGIO_TRUSTED_PROXIES`` only,
whatever server runs the app.

uvicorn applies forwarded headers itself before the app sees a request, from the peers in its own
``forwarded_allow_ips``: by default loopback's, and under gunicorn's ``UvicornWorker`` gunicorn's
``forwarded_allow_ips`` (loopback too), so with the README's gunicorn command a local client could
name any address and pass a token's allowed networks. The app therefore applies the setting itself
(:class:`TrustedProxies`, uvicorn's own ``ProxyHeadersMiddleware`` fed with
``POGGIO_TRUSTED_PROXIES``), and :func:`leave_forwarded_headers_to_the_app` stops the server's
copy of that middleware from wrapping this app (it would rewrite the peer's address before the app
could see it): the server's wrapping is skipped for an app that applies the setting itself, and
only for such an app.
"""

from __future__ import annotations

import ipaddress

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware


class TrustedProxies:
    """ASGI app around the whole MCP server: the client's address (and scheme) as a proxy in
    ``trusted`` forwarded them, the peer's otherwise."""

    applies_trusted_proxies = True  # read by the server-side guard below

    def __init__(self, app, trusted: tuple[str, ...]):
        self.app = app
        hosts = [str(ipaddress.ip_network(t, strict=False)) if "/" in t else t for t in trusted]
        self.inner = ProxyHeadersMiddleware(app, trusted_hosts=hosts) if hosts else app

    async def __call__(self, scope, receive, send):
        await self.inner(scope, receive, send)


def leave_forwarded_headers_to_the_app() -> None:
    """Make uvicorn (its command line, or gunicorn's ``UvicornWorker``) load a :class:`TrustedProxies`
    app without its own forwarded-header middleware in front; any other app it loads is wrapped as
    before. uvicorn wraps the app it loaded after calling the factory (or, under gunicorn, after
    gunicorn built the app), by the name in ``uvicorn.config``."""
    try:
        import uvicorn.config as config
    except ImportError:  # another server: it applies no forwarded header of its own
        return
    server_side = config.ProxyHeadersMiddleware
    if getattr(server_side, "leaves_trusted_proxies_to_the_app", False):
        return

    def wrap(app, *args, **kwargs):
        if getattr(app, "applies_trusted_proxies", False):
            return app
        return server_side(app, *args, **kwargs)

    wrap.leaves_trusted_proxies_to_the_app = True  # type: ignore[attr-defined]
    config.ProxyHeadersMiddleware = wrap  # type: ignore[misc,assignment]  # uvicorn names a class; a wrapping function stands in
