"""Reading one cookie of a request without parsing all of them.

WebOb's ``request.cookies`` parses every cookie of the header, quoting rules and
all (14 µs for a header of one cookie), where the session and the Perl session
reader each need one, whose valid values are plain tokens.  A header as browsers
send it (``a=1; b=2``: RFC 6265 allows no semicolon in a value) is split here; one
with quotes or backslashes goes to WebOb, whose rules it needs.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from webob.cookies import RequestCookies


def cookie_value(environ: MutableMapping[str, Any], name: str) -> str | None:
    """The value of the cookie *name* in the WSGI *environ*; ``None`` when absent.

    As ``request.cookies.get(name)``: the last of two cookies of the same name wins,
    and ``UnicodeDecodeError`` is raised when the value is not UTF-8.  Where the two
    would read a malformed header differently (``id=abc,def``: WebOb stops at the
    comma, this does not), the value read here is one no valid id matches, so it is
    refused.  Bytes that are not UTF-8 in *another* cookie do not hide this one, as
    they made WebOb's parse of the whole header fail.
    """
    header: str = environ.get("HTTP_COOKIE", "")
    if name not in header:
        return None
    if '"' in header or "\\" in header:
        value: str | None = RequestCookies(environ).get(name)
        return value
    value = None
    for pair in header.split(";"):
        key, equals, found = pair.partition("=")
        if equals and key.strip() == name:
            value = found.strip()
    if value is not None and not value.isascii():
        try:  # WSGI gives the header's bytes as Latin-1 text
            raw = value.encode("latin-1")
        except UnicodeEncodeError as exc:  # not a WSGI header: no bytes to decode
            raise UnicodeDecodeError("utf-8", b"", 0, 1, str(exc)) from exc
        value = raw.decode("utf-8")
    return value
