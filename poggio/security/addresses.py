"""Where a URL typed by someone else may lead the server: its host resolved once, every address checked
public (loopback, private and link-local refused unless the caller allows them), and the one address to
connect to, so that DNS cannot answer differently the second time. Used for every server-side fetch or
post to such a URL: client metadata documents (portal) and webhook deliveries (both servers)."""

from __future__ import annotations

import ipaddress
import socket
import threading

_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are the IPv4 address reached
_REFUSED_V6 = (
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215): a private translator
    ipaddress.ip_network("fec0::/10"),  # site-local (RFC 3879), deprecated but still routed by some
    ipaddress.ip_network("::/96"),
)  # IPv4-compatible (RFC 4291), deprecated: nothing public uses it


def is_public_address(host: str) -> bool:
    """False for loopback, private, link-local and other addresses that are not on the internet. An
    IPv6 address that carries an IPv4 address (IPv4-mapped, NAT64, 6to4) is as public as that IPv4
    address; other IPv6 forms that reach a private network are refused."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped.is_global
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF).is_global
        if address.sixtofour is not None:
            return address.sixtofour.is_global
        if address.teredo is not None or any(address in net for net in _REFUSED_V6):
            return False
    return address.is_global


class AddressRefused(Exception):
    """The host does not resolve, or resolves to an address the server must not reach."""


def _lookup(host: str, port: int, seconds: float | None, what: str, error: type[Exception]) -> list:
    """``getaddrinfo``, waited for at most ``seconds`` (None: as long as the resolver takes): the
    resolver's own timeouts can be longer than a fetch's deadline, so a bounded look-up runs in a thread
    of its own, left to finish by itself when it is late."""
    answer: dict = {}

    def run():
        try:
            answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            answer["error"] = exc

    if seconds is None:
        run()
    else:
        thread = threading.Thread(target=run, name="address-lookup", daemon=True)
        thread.start()
        thread.join(seconds)
        if thread.is_alive():
            raise error(f"the host {host} of {what} did not resolve within {seconds:g} seconds")
    if "error" in answer:
        raise error(f"the host {host} of {what} does not resolve")
    return answer["infos"]


def resolve_checked(
    host: str,
    port: int,
    allow_private: bool,
    *,
    what: str = "the URL",
    fetched: str = "URLs",
    error: type[Exception] = AddressRefused,
    seconds: float | None = None,
) -> str:
    """The address to connect to for ``host``, all of whose addresses were checked; ``error`` (naming
    ``what``, and what this server fetches from public addresses only: ``fetched``) otherwise. The
    look-up is given at most ``seconds`` when set."""
    infos = _lookup(host, port, seconds, what, error)
    addresses = sorted({info[4][0] for info in infos})
    if not addresses:
        raise error(f"the host {host} has no address")
    if not allow_private and not all(is_public_address(a) for a in addresses):
        raise error(
            f"{what} points at a private or loopback address ({host}); "
            f"this server fetches {fetched} from public addresses only"
        )
    return addresses[0]
