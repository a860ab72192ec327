"""What the MCP server's lifespan sets up for a long-running process."""

from __future__ import annotations

import asyncio
import gc


def test_start_up_objects_are_kept_out_of_full_collections(instance):
    """A full collection walked every object start-up built (~100,000: a pause of tens of ms that a
    waiting request adds to its time); the lifespan freezes them after start-up."""
    from mcp_server.app import create_app

    app = create_app()
    starlette = app
    while not hasattr(starlette, "router"):  # inside the app's own wrappers (proxies, front door)
        starlette = starlette.app
    gc.unfreeze()

    async def started():
        async with starlette.router.lifespan_context(starlette):
            return gc.get_freeze_count()

    try:
        assert asyncio.run(started()) > 10_000
    finally:
        gc.unfreeze()


def test_uvicorn_still_wraps_apps_by_the_name_poggio_replaces():
    """mcp_server.proxies relies on one of uvicorn's internals: Config.load wraps the loaded app in
    ``uvicorn.config.ProxyHeadersMiddleware``, looked up by that module-level name. When a uvicorn
    release changes that, this fails (and the forwarded-header tests under gunicorn would too)."""
    import inspect

    import uvicorn.config
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    source = inspect.getsource(uvicorn.config.Config.load)
    assert "ProxyHeadersMiddleware(" in source, "uvicorn no longer wraps the app by this name"
    assert uvicorn.config.ProxyHeadersMiddleware is ProxyHeadersMiddleware or getattr(
        uvicorn.config.ProxyHeadersMiddleware, "leaves_trusted_proxies_to_the_app", False
    )
