"""A test client of the portal that signs in and carries CSRF tokens like a browser (Flask's test
client underneath); the portal tests' users share one password."""

from __future__ import annotations

import re

PASSWORD = "correct horse battery"

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"|name="csrf_token" type="hidden" value="([^"]+)"')


class Browser:
    def __init__(self, client):
        self.client = client
        self.csrf = None

    def _remember(self, response):
        m = CSRF.search(response.get_data(as_text=True))
        if m:
            self.csrf = m.group(1) or m.group(2)
        return response

    def get(self, url, htmx=False, **kw):
        headers = {"HX-Request": "true"} if htmx else {}
        headers.update(kw.pop("headers", {}))
        return self._remember(self.client.get(url, headers=headers, **kw))

    def post(self, url, data=None, htmx=False, csrf=True, **kw):
        data = dict(data or {})
        headers = {"HX-Request": "true"} if htmx else {}
        if csrf:
            if htmx:
                headers["X-CSRFToken"] = self.csrf
            else:
                data.setdefault("csrf_token", self.csrf)
        headers.update(kw.pop("headers", {}))
        return self._remember(self.client.post(url, data=data, headers=headers, **kw))

    def sign_in(self, email, password=PASSWORD):
        self.get("/sign-in")
        return self.post("/sign-in", {"email": email, "password": password})
