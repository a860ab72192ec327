"""Stored text made safe to show: what an outsider chose (an app's self-asserted name, the client name
and version an MCP client sends, a token or account name) printed by the ``poggio`` command or written
to a CSV export must not reach a terminal or a spreadsheet as something it acts on.

:func:`visible` writes every C0 and C1 control character, DEL, and the Unicode bidirectional
formatting characters as a visible escape (``\\x1b``, ``\\u202e``): an ``ESC ]0;…BEL`` cannot retitle
the admin's window, an OSC 52 cannot write their clipboard, a right-to-left override cannot make a
name read as another. Tabs and line breaks inside a value are escaped too: a value is one field on one
line. :func:`cell` is the same for a CSV cell, and also prefixes what a spreadsheet would run as a
formula with an apostrophe, as OWASP advises for CSV exports.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value) -> str:
    """``value`` as text with every control character written as a visible escape; None -> ''."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return _CONTROL.sub(_escape, text)


def cell(value) -> str:
    """:func:`visible`, and a leading apostrophe before what a spreadsheet would take for a formula."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    if text[:1] in _FORMULA_START:
        text = "'" + text
    return visible(text)
