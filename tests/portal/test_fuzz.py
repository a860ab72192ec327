"""Every route of the portal, enumerated from the app's URL map (so routes added later are covered
without editing this file), fuzzed with random path, query and form values (hypothesis), signed in as
an admin and anonymous, GET and POST with a valid CSRF token so POSTs reach their views: nothing may
answer 500. The app runs with TESTING on, so an exception in a view fails the test with its traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask_wtf import FlaskForm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portal_client import Browser
from werkzeug.datastructures import MultiDict
from werkzeug.routing import IntegerConverter

import portal
import portal.forms  # noqa: F401  (its forms are FlaskForm subclasses by the time names are read)

EXAMPLES = 60  # per route, method and role


PARAM_READ = re.compile(r"""request\.(?:args|form|values)(?:\.get|\.getlist)?[(\[]\s*["']([\w-]+)["']""")
# OAuth 2.1 parameters, read through dictionaries rather than by name
OAUTH = {
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
    "grant_type",
    "code",
    "code_verifier",
    "refresh_token",
    "client_secret",
    "token",
}


def _parameter_names() -> set[str]:
    """Every parameter a view reads by name (found in the portal's source) and every field of every
    form, so parameters added later are fuzzed too; random names come on top."""
    names = {"page", "show", "next", "workspace_id", "token_id", *OAUTH}
    for source in Path(portal.__file__).parent.rglob("*.py"):
        names.update(PARAM_READ.findall(source.read_text()))
    forms, seen = [FlaskForm], set()
    while forms:
        cls = forms.pop()
        forms.extend(c for c in cls.__subclasses__() if c not in seen)
        seen.add(cls)
        names.update(name for name, value in vars(cls).items() if hasattr(value, "field_class"))
    return names


KEYS = st.one_of(st.sampled_from(sorted(_parameter_names())), st.text(min_size=1, max_size=12))
NUMBERS = st.integers(min_value=-(2**80), max_value=2**80).map(str)
VALUES = st.one_of(
    st.text(max_size=40),
    NUMBERS,
    st.sampled_from(
        [
            "",
            "all",
            "active",
            "keep",
            "date",
            "never",
            "7",
            "30",
            "1",
            "0",
            "-1",
            "2001-01-01",
            "9999-12-31",
            "99999999999999999999999",
            "accounts",
            "//evil.example/",
            "https://evil.example/",
            "\x00",
            "\x1f",
            "\r\n",
            "%",
            "admin@acme.example",
            "code",
            "authorization_code",
            "S256",
            "accounts:read",
            "http://127.0.0.1:9/cb",
        ]
    ),
)
PATH_INT = st.one_of(st.integers(min_value=0, max_value=2**80), st.sampled_from([1, 2, 3]))
PATH_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="/?#", blacklist_categories=("Cs",)), min_size=1, max_size=20
)
REQUESTS = st.tuples(
    st.lists(st.tuples(KEYS, VALUES), max_size=6),
    st.lists(st.tuples(KEYS, VALUES), max_size=6),
    st.booleans(),
    st.data(),
)


def _routes(app):
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            yield rule, method


def _build(app, rule, data) -> str | None:
    values = {}
    for name in rule.arguments:
        converter = rule._converters[name]
        values[name] = data.draw(PATH_INT if isinstance(converter, IntegerConverter) else PATH_TEXT, label=name)
    try:
        return app.url_map.bind("localhost").build(rule.endpoint, values, method=None)
    except Exception:  # a value the rule cannot build (e.g. a negative int): not a request a client can make
        return None


def _fuzz(app, client_factory, make_tokens=None):
    client = client_factory()
    if make_tokens:
        make_tokens(client)
    rules = list(_routes(app))
    assert len(rules) >= 12, [r.rule for r, _ in rules]

    for rule, method in rules:
        # `one` runs within this iteration, so it sees this rule and method (ruff's B023 cannot tell)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(REQUESTS)
        def one(request):
            nonlocal client
            query, form, htmx, data = request
            url = _build(app, rule, data)  # noqa: B023
            if url is None:
                return
            headers = (
                {"HX-Request": "true", "HX-Target": data.draw(st.sampled_from(["token-list", "dialog-body", ""]))}
                if htmx
                else {}
            )
            if method == "GET":  # noqa: B023
                r = client.client.get(url, query_string=MultiDict(query), headers=headers)
            else:
                form_data = MultiDict([*form, ("csrf_token", client.csrf)])
                r = client.client.post(url, query_string=MultiDict(query), data=form_data, headers=headers)
            assert r.status_code < 500, (method, url, query, form, r.status_code)  # noqa: B023
            if rule.endpoint == "auth.sign_out" and r.status_code == 302:  # noqa: B023
                client = client_factory()  # signed out: carry on as a signed-in admin again

        one()


def test_every_route_anonymous(app):
    def anonymous():
        b = Browser(app.test_client())
        b.get("/sign-in")
        return b

    _fuzz(app, anonymous)


def test_every_route_as_admin(app):
    def admin():
        b = Browser(app.test_client())
        assert b.sign_in("admin@acme.example").status_code == 302
        b.get("/settings/mcp/")
        return b

    def tokens(b):
        for name in ("one", "two", "three"):
            b.post("/settings/mcp/tokens", {"name": name, "expiry": "30"}, htmx=True)

    _fuzz(app, admin, tokens)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_control_character_in_an_oauth_parameter_is_a_400(admin, method):
    """Found by the fuzzing above: authlib raised ValueError building an error that quoted it."""
    r = admin.client.open(
        "/oauth/authorize", method=method, query_string={"response_type": "\x1f"}, data={"csrf_token": admin.csrf}
    )
    assert r.status_code == 400 and "not valid" in r.get_data(as_text=True)
