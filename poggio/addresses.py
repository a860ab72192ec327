"""Where a URL typed by someone else may lead the server: its host resolved once, every address checked
public (loopback, private and link-local refused unless the caller allows them), and the one address to
connect to, so that DNS cannot answer differently the second time. Used for every server-side fetch or
post to such a URL: client metadata documents (portal) and webhook deliveries (both servers)."""

from __future__ import annotations

import socket

from poggio.oauth import is_public_address


class AddressRefused(Exception):
    """The host does not resolve, or resolves to an address the server must not reach."""


def resolve_checked(host: str, port: int, allow_private: bool, *, what: str = "the URL",
                    fetched: str = "URLs", error: type[Exception] = AddressRefused) -> str:
    """The address to connect to for ``host``, all of whose addresses were checked; ``error`` (naming
    ``what``, and what this server fetches from public addresses only: ``fetched``) otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise error(f"the host {host} of {what} does not resolve") from None
    addresses = sorted({info[4][0] for info in infos})
    if not addresses:
        raise error(f"the host {host} has no address")
    if not allow_private and not all(is_public_address(a) for a in addresses):
        raise error(f"{what} points at a private or loopback address ({host}); "
                    f"this server fetches {fetched} from public addresses only")
    return addresses[0]
