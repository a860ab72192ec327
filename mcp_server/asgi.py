"""Request bodies and headers on the raw ASGI interface: read once, handed on as they came.

For the ASGI apps of the MCP server that look at a request before passing it on (the front door,
the lean path, the write rate limit): what they read of the body is replayed to the app behind them.
"""

from __future__ import annotations


async def read_body(receive, max_body: int):
    """The request body, read whole: ``(body, trailing, whole)``. ``trailing`` is a message that
    came instead of more body (to replay after it), ``whole`` is False when the body outgrew
    ``max_body`` (the rest is left unread for the SDK to refuse); None if the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            if message["type"] == "http.disconnect":
                return None  # the client went away before its request was whole: no one to answer
            return b"".join(chunks), message, False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > max_body:
            return b"".join(chunks), None, False
        if not message.get("more_body", False):
            return b"".join(chunks), None, True


def first_headers(scope) -> dict[bytes, bytes]:
    """The request's headers, the first of each name (as Starlette's ``Headers.get`` reads them)."""
    headers: dict[bytes, bytes] = {}
    for key, value in scope["headers"]:
        if key not in headers:
            headers[key] = value
    return headers


async def send_answer(send, answer) -> None:
    status, headers, payload = answer
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def replay(body: bytes, trailing, whole: bool, receive):
    """A ``receive`` that gives the app behind the body already read, then what came after it."""
    pending = [{"type": "http.request", "body": body, "more_body": not whole}]
    if trailing is not None:
        pending.append(trailing)

    async def replayed():
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
