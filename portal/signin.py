"""Who is signed in: flask-login's user and loader, and opening a session after a sign-in (by password,
:mod:`portal.auth`, or by single sign-on, :mod:`portal.sso`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import session, url_for
from flask_login import LoginManager, UserMixin, login_user

from poggio.identity import sessions
from poggio.storage.db import parse_id
from poggio.storage.models import User
from portal.access import client_ip, core

login_manager = LoginManager()
login_manager.login_view = "auth.sign_in"
login_manager.login_message = "Sign in to continue."


class SessionUser(UserMixin, User):
    """The core's user with what flask-login asks of a user (the data layer knows nothing of Flask)."""

    class Meta:
        table_name = "user"

    def get_id(self) -> str:
        return str(self.id)


@login_manager.user_loader
def load_user(user_id: str):
    """The signed-in user, only while the session the cookie names is alive on the server (a cookie
    alone, or flask-login's remember cookie, opens nothing)."""
    if parse_id(user_id) is None:
        return None
    settings = core().settings
    if not sessions.alive(session.get("sid"), int(user_id), *sessions.lifetimes(settings)):
        session.clear()
        return None
    user = SessionUser.get_or_none(SessionUser.id == int(user_id))
    return user if user is not None and user.is_active else None


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site, or home (never another site)."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("views.home")


def open_session(user) -> None:
    """Sign ``user`` in: a new server-side session (poggio.identity.sessions) named by the cookie."""
    session.clear()
    sessions.purge(*sessions.lifetimes(core().settings))
    session["sid"] = sessions.start(user, client_ip())
    login_user(user)  # never remember=True: sessions live on the server (poggio.identity.sessions)
