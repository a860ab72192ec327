"""What every ``poggio`` command shares: the :class:`App` a command is passed (settings, services and the
database, each made on first use), and :func:`friendly_errors`, which turns the core's input errors into
one line and exit status 1."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import click

from poggio.errors import InvalidInput, NotFound, PoggioError
from poggio.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from poggio.identity.oauth import OAuthService
    from poggio.identity.tokens import TokenService
    from poggio.runtime.plugins import PackRegistry
    from poggio.services import Services


class App:
    """What every command needs, built on first use: settings, the bound database, the packs."""

    def __init__(self) -> None:
        self._services: Services | None = None
        self._db = None

    @property
    def services(self) -> Services:
        """The composition root every process builds (poggio.services), made on first use."""
        if self._services is None:
            # here, not at the top: `poggio --help` and the commands that need no service start without
            # loading the token and OAuth services (a third of the command's start-up)
            from poggio.services import Services

            try:
                self._services = Services(load_settings())
            except SettingsError as exc:
                raise click.ClickException(str(exc)) from None
        return self._services

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def registry(self) -> PackRegistry:
        return self.services.registry

    def db(self):
        if self._db is None:
            from poggio.storage.db import DatabaseUnavailable, connect

            try:
                self._db = connect(self.settings.database_url)
            except DatabaseUnavailable as exc:
                raise click.ClickException(str(exc)) from None
        return self._db

    def check_database(self) -> None:
        """Open the database once and close it again: a server about to start fails here in one line,
        not in a traceback of its own."""
        from playhouse.pool import PooledDatabase

        db = self.db()
        db.close()
        if isinstance(db, PooledDatabase):
            db.close_all()
        self._db = None

    def tokens(self) -> TokenService:
        return self.services.tokens

    def oauth(self) -> OAuthService:
        self.db()
        return self.services.oauth

    def workspace(self, slug: str):
        from poggio.identity.workspaces import get_workspace

        self.db()
        return get_workspace(slug)


pass_app = click.make_pass_decorator(App, ensure=True)


def friendly_errors(fn):
    """Turn the core's input errors into a one-line message and exit status 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InvalidInput as exc:
            raise click.ClickException(f"{exc.field}: {exc.message}") from None
        except (NotFound, PoggioError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper
