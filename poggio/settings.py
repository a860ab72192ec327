"""Settings of one Poggio installation, read from ``POGGIO_*`` variables and ``instance/config.toml``.

The environment wins over the file; the file wins over the defaults. Both processes (portal and MCP
server) read the same settings, so they agree on the database, the secret key and the public URL.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """A setting has a value Poggio cannot use; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    instance_path: Path
    database_url: str
    secret_key: str = field(repr=False)
    mcp_public_url: str
    product_name: str = "Poggio"
    portal_host: str = "127.0.0.1"
    portal_port: int = 8000
    mcp_host: str = "127.0.0.1"
    mcp_port: int = 8001
    token_pepper: str | None = field(default=None, repr=False)
    packs: tuple[str, ...] | None = None
    usage_flush_seconds: float = 2.0
    redis_url: str | None = None
    rate_limit: str = "1200/minute"
    write_rate_limit: str = "60/minute"  # calls of write tools per token, besides rate_limit
    max_active_tokens: int = 100
    tool_timeout_seconds: float = 10.0
    mcp_lean_path: bool = True  # tools/list and tools/call without the SDK's per-request machinery
    max_body_bytes: int = 1_000_000
    allowed_hosts: tuple[str, ...] = ()
    session_idle_hours: float = 12.0
    session_max_days: float = 7.0
    trusted_proxies: tuple[str, ...] = ()
    portal_public_url: str = ""  # the portal's own public URL, the OAuth issuer; from portal_port if unset
    oauth_access_token_seconds: int = 3600
    oauth_registration_limit: str = "20/hour"  # dynamic client registrations per client IP
    oauth_unused_client_days: int = 7  # registered apps never approved are forgotten after this
    oauth_spent_refresh_days: int = 30  # a spent refresh token is remembered (reuse detection) this long
    oauth_metadata_allow_private: bool = False  # fetch client metadata documents from private addresses
    oauth_dynamic_registration: bool = True  # /oauth/register open to any app (RFC 7591); false: 404
    # the Client ID Metadata Document URLs that may connect: exact URLs, or https://host/ prefixes (ending
    # in /); empty: any
    oauth_trusted_client_metadata: tuple[str, ...] = ()
    oauth_refresh_grace_seconds: int = 10  # a lost refresh answer may be fetched again this long
    oauth_denied_redirect_schemes: tuple[str, ...] = ()  # redirect URI schemes no client may register
    cors_origins: tuple[str, ...] = ()
    metrics_token: str | None = field(default=None, repr=False)
    activity_retention_days: int = 90  # how long the MCP server keeps each request on the activity record
    # e-mails that may still sign in with a password when a workspace of theirs requires single sign-on
    sso_break_glass: tuple[str, ...] = ()
    webhook_allow_private: bool = False  # deliver webhooks to private and loopback addresses
    webhook_timeout_seconds: float = 10.0  # one delivery attempt, connection to last byte read
    webhook_first_retry_seconds: float = 5.0  # the wait after a first failed attempt; doubled each time
    webhook_retry_for_seconds: int = 86400  # a message is tried this long; an endpoint failing this long is paused
    webhook_poll_seconds: float = 1.0  # how often each server looks for messages due

    @property
    def mcp_allowed_hosts(self) -> list[str]:
        """Host headers the MCP server accepts: the public URL's host, loopback, and any extras."""
        public = urlsplit(self.mcp_public_url)
        hosts = {"127.0.0.1:*", "localhost:*", "[::1]:*"}
        if public.hostname:
            hosts.add(public.netloc.rsplit("@", 1)[-1])
            hosts.add(f"{public.hostname}:*" if ":" not in public.hostname else f"[{public.hostname}]:*")
            hosts.add(public.hostname)
        hosts.update(self.allowed_hosts)
        return sorted(hosts)

    @property
    def mcp_allowed_origins(self) -> list[str]:
        """Browser origins the MCP server accepts, in its Origin check and in CORS alike: the public
        URL's origin, loopback on any port, and ``cors_origins``."""
        public = urlsplit(self.mcp_public_url)
        origins = {"http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"}
        if public.scheme and public.netloc:
            origins.add(f"{public.scheme}://{public.netloc}")
        origins.update(o.rstrip("/") for o in self.cors_origins)
        return sorted(origins)


def _kinds() -> dict[str, type]:
    """Every setting a file or the environment may give, with the type it is parsed to: read off the
    dataclass, so a new setting is one new field."""
    kinds: dict[str, type] = {}
    for f in fields(Settings):
        if f.name == "instance_path":
            continue
        text = str(f.type)
        kinds[f.name] = (
            int
            if text.startswith("int")
            else float
            if text.startswith("float")
            else tuple
            if text.startswith("tuple")
            else bool
            if text.startswith("bool")
            else str
        )
    return kinds


_KINDS = _kinds()


def _read_config_file(instance: Path) -> dict[str, object]:
    path = instance / "config.toml"
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    unknown = set(data) - set(_KINDS)
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return data


def _secret_key(instance: Path) -> str:
    """The installation's secret key, created once in the instance folder when none is configured."""
    path = instance / "secret_key"
    try:
        if path.exists():
            return path.read_text().strip()
        instance.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        # O_EXCL: when two processes start at once, one writes and the other reads what it wrote.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key
    except OSError as exc:
        raise SettingsError(
            f"Cannot keep the secret key in {path}: {exc.strerror}. Set POGGIO_SECRET_KEY, or "
            "POGGIO_INSTANCE_PATH to a folder Poggio may write to."
        ) from None


def load_settings(env: dict[str, str] | None = None, instance_path: Path | str | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    # the instance folder: ./instance of the current directory (a checkout's own, where `make run` works)
    instance = Path(instance_path or env.get("POGGIO_INSTANCE_PATH") or "instance").resolve()
    values: dict[str, object] = _read_config_file(instance)
    for key in _KINDS:
        env_value = env.get(f"POGGIO_{key.upper()}")
        if env_value not in (None, ""):
            values[key] = env_value

    for key, kind in _KINDS.items():
        if key not in values:
            continue
        if kind in (int, float):
            try:
                values[key] = kind(values[key])  # type: ignore[call-overload, arg-type]  # any value: a wrong one raises below
            except (TypeError, ValueError):
                raise SettingsError(f"POGGIO_{key.upper()} must be a number, got {values[key]!r}") from None
        elif kind is bool and not isinstance(values[key], bool):
            text = str(values[key]).strip().lower()
            if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise SettingsError(f"POGGIO_{key.upper()} must be true or false, got {values[key]!r}")
            values[key] = text in ("1", "true", "yes", "on")
        elif kind is tuple:
            if isinstance(values[key], str):
                values[key] = tuple(p.strip() for p in str(values[key]).split(",") if p.strip())
            elif isinstance(values[key], list):
                values[key] = tuple(values[key])  # type: ignore[arg-type]  # a list, checked above

    values.setdefault("database_url", f"sqlite:///{instance / 'poggio.db'}")
    if not values.get("secret_key"):
        values["secret_key"] = _secret_key(instance)
    port = values.get("mcp_port", 8001)
    values.setdefault("mcp_public_url", f"http://127.0.0.1:{port}/mcp")
    values.setdefault("portal_public_url", f"http://127.0.0.1:{values.get('portal_port', 8000)}")
    values["portal_public_url"] = str(values["portal_public_url"]).rstrip("/")
    for key in ("mcp_public_url", "portal_public_url"):
        public = urlsplit(str(values[key]))
        if public.scheme not in ("http", "https") or not public.netloc:
            raise SettingsError(f"POGGIO_{key.upper()} must be an http(s) URL, got {values[key]!r}")
    for proxy in values.get("trusted_proxies", ()):  # type: ignore[attr-defined]  # a tuple, made above
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SettingsError(f"POGGIO_TRUSTED_PROXIES: {proxy!r} is not an IP address or network (CIDR)") from None
    for entry in values.get("oauth_trusted_client_metadata", ()):  # type: ignore[attr-defined]  # a tuple, made above
        parts = urlsplit(str(entry))
        if parts.scheme != "https" or not parts.hostname or not parts.path or parts.fragment:
            raise SettingsError(
                f"POGGIO_OAUTH_TRUSTED_CLIENT_METADATA: {entry!r} is neither an https URL of a "
                "client metadata document nor an https://host/ prefix (ending in /)"
            )
    if int(values.get("oauth_refresh_grace_seconds", 10)) < 0:  # type: ignore[call-overload]
        raise SettingsError("POGGIO_OAUTH_REFRESH_GRACE_SECONDS must be 0 or more")
    return Settings(instance_path=instance, **values)  # type: ignore[arg-type]
