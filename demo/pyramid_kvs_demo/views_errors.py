"""The demo's pages for refused requests: a failed CSRF check (400) and a 429.

Exception views, so that a refusal is rendered in the demo's layout with a way back
instead of Pyramid's bare error text.  The CSRF page only links back to the form: a
refused request saves nothing in the session, so a form rendered here with a fresh
token would not be accepted either.
"""

from __future__ import annotations

from html import escape
from typing import Any

from pyramid.exceptions import BadCSRFOrigin, BadCSRFToken
from pyramid.view import view_config

from pyramid_kvs.ratelimit import RateLimitError

from . import page

REASONS = {
    BadCSRFToken: "its CSRF token is missing or wrong",
    BadCSRFOrigin: "it comes from another site (its Origin or Referer)",
}


@view_config(context=BadCSRFToken)
@view_config(context=BadCSRFOrigin)
def csrf_refused(exc: BadCSRFToken | BadCSRFOrigin, request: Any) -> Any:
    back = escape(request.route_url("session"))
    body = f"""
<p id="refused">Pyramid refused this form: <b>{REASONS[type(exc)]}</b>.</p>
<p>A form of this site carries a CSRF token, a secret kept in the session; a form
another site makes cannot know it.  This request came without the right token, so
its view did not run.  pyramid_kvs saved nothing for it: your session, its cookie
and your login are as they were.</p>
<p><a id="back" href="{back}">Back to the session page</a></p>
"""
    return page(request, "Form refused (400)", body, status=400)


@view_config(context=RateLimitError)
def too_many_requests(exc: RateLimitError, request: Any) -> Any:
    wait = exc.outcome.retry_after
    offers = request.accept.acceptable_offers(["text/html", "application/json"])
    if offers and offers[0][0] == "application/json":  # the rate limit page's fetch()
        response = request.response
        response.status = 429
        response.content_type = "application/json"
        response.json_body = {"allowed": False, "retry_after": wait}
        return response
    back = escape(request.route_url("ratelimit"))
    body = f"""
<p id="refused">Over the limit: this request was refused before its view ran.  Try
again in <b id="retry-after">{wait}</b> second(s) (the <code>Retry-After</code>
header says the same to programs).</p>
<p><a id="back" href="{back}">Back to the rate limit page</a></p>
"""
    return page(request, "Too many requests (429)", body, status=429)
