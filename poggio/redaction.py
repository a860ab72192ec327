"""A logging filter that masks anything shaped like a Poggio secret (API token, OAuth token or client
secret), wherever it appears."""

from __future__ import annotations

import logging

from poggio.tokens import TOKEN_PATTERN


def redact(text: str) -> str:
    return TOKEN_PATTERN.sub(lambda m: f"{m.group(0).split('_', 1)[0]}_…{m.group(0)[-4:]}[redacted]", text)


class TokenRedactingFilter(logging.Filter):
    """Rewrites a record's message (after %-formatting) and its exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's problem, not ours
            return True
        if "pgo" in message:
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and "pgo" in record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of ``logger`` (the root logger by default)."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, TokenRedactingFilter) for f in handler.filters):
            handler.addFilter(TokenRedactingFilter())


def configure_logging(level: str | None = None) -> None:
    """WARNING by default (``POGGIO_LOG_LEVEL`` to change): per-request INFO lines of the MCP SDK
    ("Terminating session") cost more CPU than a whole tools/list."""
    import os

    level = level or os.environ.get("POGGIO_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    for noisy in ("mcp", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.getLogger().level, logging.WARNING))
    install()
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access"):
        install(logging.getLogger(name))
