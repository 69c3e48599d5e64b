"""``Vary``: responses that depend on a cookie or a header must say so.

A response built from the session (or counted against the session's rate limit) is
that client's own: a shared cache that ignored the ``Cookie`` or token header it
depends on could serve it to someone else.  Both the session and the rate limiter
add their names here, merged case-insensitively with what the view set.
"""

from __future__ import annotations

from collections.abc import Collection

from pyramid.response import Response


def add_vary(response: Response, names: Collection[str]) -> None:
    """Add *names* to the response's ``Vary`` header, once each, ignoring case."""
    if not names:
        return
    headerlist = response.headerlist
    if not any(header.lower() == "vary" for header, _ in headerlist):
        # the common case, a response without Vary: one header appended, without
        # WebOb's parsing and rebuilding of the header
        unique: dict[str, str] = {}
        for name in names:
            unique.setdefault(name.lower(), name)
        if unique:
            headerlist.append(("Vary", ", ".join(unique.values())))
        return
    vary = list(response.vary or ())
    present = {name.lower() for name in vary}
    missing = []
    for name in names:
        if name.lower() not in present:
            present.add(name.lower())
            missing.append(name)
    if missing:
        response.vary = (*vary, *missing)
