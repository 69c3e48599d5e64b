"""The session page: a counter, flash messages, a login that rotates the id, CSRF."""

from __future__ import annotations

from html import escape
from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.view import view_config

from . import MENU, ROUTES, page

MENU.append(("session", "Session"))
ROUTES.extend(
    [
        ("session", "/session"),
        ("session_note", "/session/note"),
        ("session_login", "/session/login"),
        ("session_logout", "/session/logout"),
    ]
)


def _back(request: Any) -> HTTPSeeOther:
    return HTTPSeeOther(location=request.route_url("session"))


@view_config(route_name="session", request_method="GET")
def session_page(request: Any) -> Any:
    session = request.session
    session["visits"] = session.get("visits", 0) + 1
    flashes = "".join(f"<li>{escape(str(message))}</li>" for message in session.pop_flash())
    user = session.get("user")
    notes = "".join(f"<li>{escape(note)}</li>" for note in session.get("notes", []))
    token = escape(session.get_csrf_token())
    created = escape(f"{session.created:.0f}")
    if user:
        account = f"""<p>Logged in as <b>{escape(user)}</b>.</p>
<form method="post" action="{escape(request.route_url("session_logout"))}">
<input type="hidden" name="csrf_token" value="{token}">
<button>Log out (invalidates the session)</button></form>"""
    else:
        account = f"""<form method="post" action="{escape(request.route_url("session_login"))}">
<input type="hidden" name="csrf_token" value="{token}">
<input name="user" placeholder="your name" required>
<button>Log in (rotates the session id)</button></form>"""
    body = f"""
<ul class="flash">{flashes}</ul>
<p>Visits in this session: <b id="visits">{session["visits"]}</b>
(session created at Unix time {created}).</p>
{account}
<h2>Notes (a CSRF-protected form)</h2>
<ul>{notes}</ul>
<form method="post" action="{escape(request.route_url("session_note"))}">
<input type="hidden" name="csrf_token" value="{token}">
<input name="note" placeholder="a note" required> <button>Add</button></form>
<p>The session is one record in the store, one field per key; each request writes
only the keys it changed.</p>
"""
    return page(request, "Session", body)


@view_config(route_name="session_note", request_method="POST", require_csrf=True)
def add_note(request: Any) -> Any:
    note = request.POST.get("note", "").strip()
    if note:
        request.session.setdefault("notes", []).append(note[:200])  # an in-place change
        request.session.flash("Note added.")
    return _back(request)


@view_config(route_name="session_login", request_method="POST", require_csrf=True)
def login(request: Any) -> Any:
    user = request.POST.get("user", "").strip()[:40]
    if user:
        request.session.regenerate_id()  # an id seen before the login is now worthless
        request.session["user"] = user
        request.session.flash(f"Welcome, {user}! Your session id has changed.")
    return _back(request)


@view_config(route_name="session_logout", request_method="POST", require_csrf=True)
def logout(request: Any) -> Any:
    request.session.invalidate()
    request.session.flash("Logged out: the old session is gone, this message is in a new one.")
    return _back(request)
