"""htmx is vendored: the pinned release, unchanged, with its licence, served by the portal."""

from __future__ import annotations

import hashlib

from portal import HTMX_DIR

HTMX_VERSION = "2.0.3"  # npm htmx.org, dist/htmx.min.js
HTMX_SHA256 = "491955cd1810747d7d7b9ccb936400afb760e06d25d53e4572b64b6563b2784e"


def test_vendored_htmx_is_the_pinned_release_with_its_licence():
    script = (HTMX_DIR / "htmx.min.js").read_bytes()
    assert hashlib.sha256(script).hexdigest() == HTMX_SHA256
    assert f'version:"{HTMX_VERSION}"'.encode() in script
    assert "Zero-Clause BSD" in (HTMX_DIR / "LICENSE").read_text()
    assert HTMX_VERSION in (HTMX_DIR / "README.md").read_text() and HTMX_SHA256 in (HTMX_DIR / "README.md").read_text()


def test_portal_serves_the_vendored_htmx(app):
    response = app.test_client().get("/vendor/htmx.min.js")
    assert response.status_code == 200
    assert hashlib.sha256(response.get_data()).hexdigest() == HTMX_SHA256


UPLOT_DIR = HTMX_DIR.parent / "uplot"
UPLOT_VERSION = "1.6.32"  # npm uplot, dist/uPlot.iife.min.js and dist/uPlot.min.css
UPLOT_SHA256 = {
    "uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
}


def test_vendored_uplot_is_the_pinned_release_with_its_licence():
    readme = (UPLOT_DIR / "README.md").read_text()
    for name, digest in UPLOT_SHA256.items():
        assert hashlib.sha256((UPLOT_DIR / name).read_bytes()).hexdigest() == digest
        assert digest in readme
    assert UPLOT_VERSION in readme
    assert "MIT License" in (UPLOT_DIR / "LICENSE").read_text()


def test_portal_serves_the_vendored_uplot(app):
    for name, digest in UPLOT_SHA256.items():
        response = app.test_client().get(f"/static/vendor/uplot/{name}")
        assert response.status_code == 200 and hashlib.sha256(response.get_data()).hexdigest() == digest
