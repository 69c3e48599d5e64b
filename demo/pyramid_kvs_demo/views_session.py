"""The session page: a counter, flash messages, a login that rotates the id, CSRF.

The session id is shown shortened (its first 8 characters): enough to see it change
at login, not enough to be the credential the full id is.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from html import escape
from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.view import view_config

from pyramid_kvs import get_components

from . import page, store_note

#: how much of the session id the page shows
SHOWN_ID = 8


def _back(request: Any) -> HTTPSeeOther:
    return HTTPSeeOther(location=request.route_url("session"))


def describe_id(session: Any) -> str:
    """The session id as the page shows it: shortened, or why there is none yet."""
    if session.new or session.ref is None:
        return (
            '<span id="session-id">new</span> (this session gets its id when this '
            "response saves it: reload to see it)"
        )
    return f'<code id="session-id">{escape(session.ref.id[:SHOWN_ID])}</code>&hellip;'


def describe_created(created: float) -> str:
    """A creation time as people read it: a UTC date and time, and how long ago."""
    when = datetime.fromtimestamp(created, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    ago = max(0, round(time.time() - created))
    return f'<span id="created">{when}</span> ({ago} seconds ago)'


@view_config(route_name="session", request_method="GET")
def session_page(request: Any) -> Any:
    session = request.session
    session["visits"] = session.get("visits", 0) + 1
    flashes = "".join(f"<li>{escape(str(message))}</li>" for message in session.pop_flash())
    user = session.get("user")
    notes = "".join(f"<li>{escape(note)}</li>" for note in session.get("notes", []))
    token = escape(session.get_csrf_token())
    factory = get_components(request.registry).session_factory
    assert factory is not None, "kvs.session is not configured"
    settings = factory.settings
    login_url = escape(request.route_url("session_login"))
    logout_url = escape(request.route_url("session_logout"))
    if user:
        account = f"""<p>Logged in as <b id="user">{escape(user)}</b>.</p>
<form id="logout" method="post" action="{logout_url}">
<input type="hidden" name="csrf_token" value="{token}">
<button>Log out (invalidates the session)</button></form>"""
    else:
        account = f"""<form id="login" method="post" action="{login_url}">
<input type="hidden" name="csrf_token" value="{token}">
<input name="user" placeholder="your name" required>
<button>Log in (rotates the session id)</button></form>"""
    body = f"""
<p><code>request.session</code> is a server-side session: the browser's
<code>{escape(settings.key_name)}</code> cookie carries only the session id (signed
with <code>kvs.session.secret</code>); the data is one record in the store, under a
keyed hash of the id, one field per key, and each request writes only the keys it
changed.  Sessions idle for {settings.ttl} seconds expire.</p>
{store_note(factory.store, "kvs.session")}
<ul class="flash">{flashes}</ul>
<p>Visits in this session: <b id="visits">{session["visits"]}</b>.
Session id: {describe_id(session)}; created {describe_created(session.created)}.</p>
{account}
<h2>Notes: a CSRF-protected form</h2>
<ul id="notes">{notes}</ul>
<form id="note" method="post" action="{escape(request.route_url("session_note"))}">
<input type="hidden" name="csrf_token" value="{token}">
<input name="note" placeholder="a note" required> <button>Add</button></form>
<h2>A forged form</h2>
<p>This form posts to the same URL without the CSRF token, as a form on another site
would: Pyramid refuses it (400), and pyramid_kvs saves nothing for a refused request,
so your session and its cookie stay as they are.</p>
<form id="forged" method="post" action="{escape(request.route_url("session_note"))}">
<input type="hidden" name="note" value="forged note">
<button>Submit the forged form</button></form>
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
