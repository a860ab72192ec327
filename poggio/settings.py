"""Settings of one Poggio installation, read from ``POGGIO_*`` variables and ``instance/config.toml``.

The environment wins over the file; the file wins over the defaults. Both processes (portal and MCP
server) read the same settings, so they agree on the database, the secret key and the public URL.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE = PROJECT_ROOT / "instance"


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
    max_active_tokens: int = 100
    tool_timeout_seconds: float = 10.0
    max_body_bytes: int = 1_000_000
    allowed_hosts: tuple[str, ...] = ()

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
        public = urlsplit(self.mcp_public_url)
        origins = {"http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"}
        if public.scheme and public.netloc:
            origins.add(f"{public.scheme}://{public.netloc}")
        return sorted(origins)


_INT = {"portal_port", "mcp_port", "max_active_tokens", "max_body_bytes"}
_FLOAT = {"usage_flush_seconds", "tool_timeout_seconds"}
_KNOWN = {
    "database_url", "secret_key", "mcp_public_url", "product_name", "portal_host", "portal_port",
    "mcp_host", "mcp_port", "token_pepper", "packs", "usage_flush_seconds", "redis_url", "rate_limit",
    "max_active_tokens", "tool_timeout_seconds", "max_body_bytes", "allowed_hosts",
}


def _read_config_file(instance: Path) -> dict[str, object]:
    path = instance / "config.toml"
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    unknown = set(data) - _KNOWN
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return data


def _secret_key(instance: Path) -> str:
    """The installation's secret key, created once in the instance folder when none is configured."""
    path = instance / "secret_key"
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


def load_settings(env: dict[str, str] | None = None, instance_path: Path | str | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    instance = Path(instance_path or env.get("POGGIO_INSTANCE_PATH") or DEFAULT_INSTANCE).resolve()
    values: dict[str, object] = _read_config_file(instance)
    for key in _KNOWN:
        env_value = env.get(f"POGGIO_{key.upper()}")
        if env_value not in (None, ""):
            values[key] = env_value

    for key in _INT | _FLOAT:
        if key in values:
            try:
                values[key] = (int if key in _INT else float)(values[key])  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise SettingsError(f"POGGIO_{key.upper()} must be a number, got {values[key]!r}") from None
    for key in ("packs", "allowed_hosts"):
        if isinstance(values.get(key), str):
            values[key] = tuple(p.strip() for p in str(values[key]).split(",") if p.strip())
        elif isinstance(values.get(key), list):
            values[key] = tuple(values[key])  # type: ignore[arg-type]

    values.setdefault("database_url", f"sqlite:///{instance / 'poggio.db'}")
    if not values.get("secret_key"):
        values["secret_key"] = _secret_key(instance)
    port = values.get("mcp_port", 8001)
    values.setdefault("mcp_public_url", f"http://127.0.0.1:{port}/mcp")
    public = urlsplit(str(values["mcp_public_url"]))
    if public.scheme not in ("http", "https") or not public.netloc:
        raise SettingsError(f"POGGIO_MCP_PUBLIC_URL must be an http(s) URL, got {values['mcp_public_url']!r}")
    return Settings(instance_path=instance, **values)  # type: ignore[arg-type]
