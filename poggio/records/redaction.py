"""A logging filter that masks anything shaped like a Poggio secret (API token, OAuth token or client
secret), wherever it appears."""

from __future__ import annotations

import logging

from poggio.security.token_format import TOKEN_PATTERN


def redact(text: str) -> str:
    return TOKEN_PATTERN.sub(lambda m: f"{m.group(0).split('_', 1)[0]}_…{m.group(0)[-4:]}[redacted]", text)


class TokenRedactingFilter(logging.Filter):
    """Rewrites a record's message and arguments, and its exception text, keeping the record's shape:
    formatters that read ``record.args`` themselves (uvicorn's access log unpacks them) still get
    them, so the line is written, redacted, rather than lost."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's problem, not ours
            return True
        if "pgo" in message:
            if isinstance(record.msg, str):
                record.msg = redact(record.msg)
            if isinstance(record.args, dict):
                record.args = {k: _redacted(v) for k, v in record.args.items()}
            elif isinstance(record.args, tuple):
                record.args = tuple(_redacted(v) for v in record.args)
            try:
                still = "pgo" in record.getMessage() and TOKEN_PATTERN.search(record.getMessage()) is not None
            except Exception:
                still = True
            if still:  # a token only an argument's formatting revealed: keep the line, as plain text
                record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and "pgo" in record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def _redacted(value):
    """A log argument with any token masked; values that show none keep their type (``%d`` needs it)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (int, float)) or value is None:
        return value
    text = str(value)
    return redact(text) if "pgo_" in text else value


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
