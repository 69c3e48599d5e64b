"""The Perl session page: ``request.perlsess`` reading a session a Perl site stored.

The demo has no Perl and no server, so "logging in on the Perl side" writes the
session a CGI::Session application would have written - a Storable hash with its
``_SESSION_*`` fields, made with :func:`pyramid_kvs.storable.nfreeze` - into the
memory store, and sets the cookie.  Everything after that is what a real
deployment does: the cookie names the session, ``request.perlsess`` reads it.
"""

from __future__ import annotations

import secrets
import time
from html import escape
from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.view import view_config

from pyramid_kvs import get_components
from pyramid_kvs.perlsess import PerlSessionReader

from . import page, store_note

#: how long the sample session lives, by CGI::Session's own expiry fields
SAMPLE_LIFETIME = 3600


def perl_sessions(request: Any) -> PerlSessionReader:
    """The application's Perl session reader (configured in demo.ini)."""
    reader = get_components(request.registry).perlsess
    assert reader is not None, "kvs.perlsess is not configured"
    return reader


def sample_session(session_id: str) -> dict[str, Any]:
    """What a CGI::Session application keeps for a logged-in user."""
    now = int(time.time())
    return {
        "_SESSION_ID": session_id,
        "_SESSION_CTIME": now,
        "_SESSION_ATIME": now,
        "_SESSION_ETIME": SAMPLE_LIFETIME,
        "user": "alice",
        "name": "Zoë Perlmonger",
        "roles": ["admin", "editor"],
        "cart": {"items": 3, "total": "42.50"},
    }


@view_config(route_name="perl_login")
def perl_login(request: Any) -> Any:
    """Play the Perl site: store a session under a new id and set its cookie."""
    reader = perl_sessions(request)
    session_id = secrets.token_hex(16)
    # CGI::Session thaws the value itself, so no memcached Storable flag (0)
    reader.write(session_id, sample_session(session_id), ttl=SAMPLE_LIFETIME, memcached_flags=0)
    response = HTTPSeeOther(request.route_url("perl"))
    cookie_name = reader.settings.cookie_name
    response.set_cookie(cookie_name, session_id, httponly=True, samesite="Lax")
    return response


@view_config(route_name="perl_forge")
def perl_forge(request: Any) -> Any:
    """Send a forged cookie: the page stays up, the session is empty, a warning is logged."""
    response = HTTPSeeOther(request.route_url("perl"))
    cookie_name = perl_sessions(request).settings.cookie_name
    response.set_cookie(cookie_name, "../../etc/passwd", httponly=True, samesite="Lax")
    return response


def _rows(session: Any) -> str:
    return "".join(
        f"<tr><td><code>{escape(str(key))}</code></td><td><code>{escape(repr(value))}</code>"
        "</td></tr>"
        for key, value in sorted(session.items(), key=lambda item: str(item[0]))
    )


@view_config(route_name="perl")
def perl_page(request: Any) -> Any:
    session = request.perlsess
    login = escape(request.route_url("perl_login"))
    forge = escape(request.route_url("perl_forge"))
    if session:
        shown = escape((session.session_id or "")[:6])
        state = f"""
<p class="hit">Logged in on the Perl side as <b>{escape(str(session["name"]))}</b>
(session <code>{shown}...</code>).</p>
<table id="perl-session">{_rows(session)}</table>"""
    elif session.expired:
        state = '<p class="miss">The Perl session has expired (CGI::Session expiry).</p>'
    else:
        state = '<p class="miss">No Perl session: <code>request.perlsess</code> is empty.</p>'
    cookie = escape(perl_sessions(request).settings.cookie_name)
    body = f"""
<p>A Perl application (CGI::Session, Plack, Cache::Memcached...) keeps its sessions in a
store this Pyramid application shares.  <code>request.perlsess</code> reads the one its
cookie names: one store read, on first use, never written back.  Here the Perl
site's cookie is <code>{cookie}</code> (<code>kvs.perlsess.cookie_name</code>, as
CGI::Session names it), separate from this application's own session cookie.</p>
{store_note(perl_sessions(request).store, "kvs.perlsess")}
{state}
<p><a id="perl-login" href="{login}">Log in on the "Perl side"</a> (writes a Storable
session with <code>pyramid_kvs.storable.nfreeze</code> and sets the
<code>{cookie}</code> cookie) |
<a id="perl-forge" href="{forge}">Send a forged cookie</a> (empty session, a warning in
the log, no error)</p>
"""
    return page(request, "Perl session", body)
