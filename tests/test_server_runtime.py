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
