"""The composition root: what a process builds once from its settings and shares.

The portal, the MCP server and the ``poggio`` command each hold one :class:`Services`, built from the same
:class:`~poggio.settings.Settings` by the same code, instead of constructing the token and OAuth services
their own way. A part is built on first use and kept, so a command that needs only the settings does not
load the tool packs, and tests pass the registry they want::

    services = Services(load_settings(), registry=PackRegistry.load(["accounts"]))
    services.tokens.verify(presented)

It binds no database: each process binds its own (the MCP server with a statement timeout, the command
only when a command needs one).
"""

from __future__ import annotations

import functools

from poggio.identity.oauth import OAuthService
from poggio.identity.switches import SwitchService
from poggio.identity.tokens import TokenService
from poggio.runtime.plugins import PackRegistry
from poggio.settings import Settings, load_settings


class Services:
    """Settings, the tool-pack registry and the services built from them, one of each per process."""

    def __init__(self, settings: Settings | None = None, registry: PackRegistry | None = None) -> None:
        self.settings: Settings = settings if settings is not None else load_settings()
        if registry is not None:
            self.__dict__["registry"] = registry  # given: the cached property below is not consulted

    @functools.cached_property
    def registry(self) -> PackRegistry:
        """The installed tool packs that ``POGGIO_PACKS`` allows, loaded through their entry points."""
        return PackRegistry.load(self.settings.packs)

    @functools.cached_property
    def known_packs(self) -> set[str]:
        return set(self.registry.names)

    @functools.cached_property
    def tokens(self) -> TokenService:
        """API tokens: creation, verification (the MCP hot path), rotation, revocation."""
        return TokenService.from_settings(self.settings, self.known_packs, self.registry)

    @functools.cached_property
    def oauth(self) -> OAuthService:
        """The OAuth authorization server's state: clients, grants, codes, access and refresh tokens."""
        return OAuthService.from_settings(self.settings, self.known_packs)

    @functools.cached_property
    def switches(self) -> SwitchService:
        """Which tools each workspace has switched off, and switching them (Settings > MCP Server > Tools)."""
        return SwitchService(self.registry)
