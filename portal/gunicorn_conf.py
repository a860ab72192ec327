"""gunicorn's settings for the portal, read with ``--config python:portal.gunicorn_conf``."""

from __future__ import annotations

import os


def worker_int(worker) -> None:
    """A quick shutdown (SIGINT or SIGQUIT) ends the worker at once.

    gunicorn would leave through ``sys.exit``, and the interpreter would then wait for every thread of
    the worker's pool: one of them may be blocked reading a socket a browser opened in advance and never
    used, so the worker lived on until the arbiter's SIGKILL at the end of the graceful timeout, logged
    as an error. A quick shutdown has nothing to finish: each request's writes are in its own
    transaction, which the database rolls back if the request is cut."""
    worker.log.info("Worker exiting (pid: %s)", worker.pid)
    os._exit(0)


def post_worker_init(worker) -> None:
    """Each worker delivers the webhook outbox too, as the MCP server does (a portal-only installation
    still delivers); the outbox is claimed message by message, so none goes out twice."""
    from poggio.notices.webhook_delivery import Deliverer
    from poggio.settings import load_settings

    Deliverer.from_settings(load_settings()).start()
