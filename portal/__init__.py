"""The admin portal: a Flask application factory (``gunicorn 'portal:create_app()'``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from flask import Flask, jsonify, send_from_directory
from flask_cors import CORS
from flask_wtf.csrf import CSRFError, CSRFProtect
from htmx_flask import Htmx
from peewee import DatabaseError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from poggio.errors import database_trouble
from poggio.identity import scopes
from poggio.records import redaction
from poggio.runtime.plugins import PackRegistry
from poggio.services import Services
from poggio.settings import Settings, load_settings
from poggio.storage.db import MAX_ID, bind, database
from portal.signin import login_manager

HTMX_DIR = Path(__file__).parent / "static" / "vendor" / "htmx"  # htmx.org 2.0.3, see its README.md
# The portal's Jinja templates: the top-level templates/ folder of a checkout, shipped inside the
# package (portal/templates) by the wheel.
TEMPLATES = next(
    p for p in (Path(__file__).parent / "templates", Path(__file__).parent.parent / "templates") if p.is_dir()
)

csrf = CSRFProtect()

PAGE_MESSAGES = {  # the database refused for a reason a person can wait out or an administrator fix
    "busy": "The database is busy with other writes; nothing was saved. Try again shortly.",
    "full": "The database server is out of disk space; nothing was saved. A Poggio administrator must free or "
    "add space.",
}


class DatabaseInt(IntegerConverter):
    """``<int:...>`` in a URL: only ids the database can hold (a larger one is a 404, not an overflow
    error in the query), for every route, the ones added later included."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


class TrustedProxies:
    """werkzeug's ProxyFix (one proxy hop: X-Forwarded-For and -Proto), applied only to requests whose
    peer is in POGGIO_TRUSTED_PROXIES; anyone else's forwarded headers are ignored."""

    def __init__(self, wsgi_app, trusted: tuple[str, ...]):
        self.plain = wsgi_app
        self.fixed = ProxyFix(wsgi_app, x_for=1, x_proto=1)
        self.networks = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def _trusted(self, peer: str | None) -> bool:
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def __call__(self, environ, start_response):
        app = self.fixed if self.networks and self._trusted(environ.get("REMOTE_ADDR")) else self.plain
        return app(environ, start_response)


def create_app(settings: Settings | None = None, registry: PackRegistry | None = None) -> Flask:
    settings = settings or load_settings()
    redaction.configure_logging()
    app = Flask(__name__, template_folder=str(TEMPLATES), static_folder="static")
    app.url_map.converters["int"] = DatabaseInt
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies)  # type: ignore[method-assign]
    https = settings.portal_public_url.startswith("https://")
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=https,
        WTF_CSRF_TIME_LIMIT=None,  # bound to the session instead
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
    )
    bind(settings.database_url)
    app.extensions["poggio"] = Services(settings, registry)
    csrf.init_app(app)
    login_manager.init_app(app)
    Htmx(app)

    from portal import (
        activity,
        activity_chart,
        app_requests,
        audit_log,
        auth,
        connected_apps,
        id_jag,
        mcp_settings,
        oauth,
        scim,
        sso,
        views,
        webhooks,
    )
    from portal.throttle import Throttle

    app.extensions["poggio.throttle"] = Throttle()
    app.register_blueprint(auth.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(mcp_settings.bp)
    app.register_blueprint(connected_apps.bp)
    app.register_blueprint(app_requests.bp)
    app.register_blueprint(app_requests.mine)
    app.register_blueprint(activity.bp)
    app.register_blueprint(audit_log.bp)
    app.register_blueprint(sso.bp)
    app.register_blueprint(scim.bp)
    app.register_blueprint(id_jag.bp)
    csrf.exempt(scim.bp)  # called by identity providers with a bearer token, not by browsers
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(activity_chart.bp)
    # a stored pack scope in words: "accounts (read and write), contacts (read)"
    app.add_template_filter(lambda text: scopes.describe(scopes.parse(text)), "scope_words")
    oauth.init_app(app)
    for endpoint in ("oauth.token", "oauth.register", "oauth.revoke"):  # called by apps, not browsers
        csrf.exempt(app.view_functions[endpoint])
    # Browser-based MCP clients call the metadata and the machine endpoints from their own origin.
    # No cookies ride along (credentials are not allowed), so any origin may.
    CORS(
        app,
        resources={r"/\.well-known/oauth-authorization-server.*": {}, r"/oauth/(token|register|revoke)": {}},
        origins="*",
        send_wildcard=True,
        supports_credentials=False,
        allow_headers=["Authorization", "Content-Type"],
        max_age=86400,
    )

    @app.before_request
    def _connect():
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(exc):
        if not database.is_closed():
            database.close()

    @app.after_request
    def _security_headers(response):
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
        )
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(CSRFError)
    def _csrf_error(exc):
        return views.error_page(400, "Your form expired or came from elsewhere. Reload the page and try again.")

    @app.errorhandler(DatabaseError)
    def _database_error(exc):
        """The database busy with other writes, or out of disk space: a 503 that says so (and when to
        come back); any other database error is a 500, logged."""
        trouble = database_trouble(exc)
        if trouble is None:
            app.log_exception((type(exc), exc, exc.__traceback__))
            return views.error_page(500, "Something went wrong on our side. It has been logged.")
        app.logger.warning("the database refused a request: %s", exc)
        page, code = views.error_page(503, PAGE_MESSAGES[trouble])
        return page, code, {"Retry-After": "5"}

    for code, message in (
        (403, "You do not have access to this page."),
        (404, "This page does not exist."),
        (405, "That action is not allowed here."),
        (413, "That upload is too large."),
        (500, "Something went wrong on our side. It has been logged."),
    ):
        app.register_error_handler(code, lambda exc, c=code, m=message: views.error_page(c, m))

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/vendor/htmx.min.js")
    def htmx_js():
        return send_from_directory(HTMX_DIR, "htmx.min.js", max_age=86400)

    return app
