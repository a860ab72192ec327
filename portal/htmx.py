"""Flask's ``request``, typed with the ``.htmx`` headers the htmx-flask extension gives it (its own
``htmx_flask.request`` keeps flask's type for a type checker). The same object as ``flask.request``."""

from typing import cast

from flask import request as flask_request
from htmx_flask.requests import HtmxAwareRequest

request = cast(HtmxAwareRequest, flask_request)
