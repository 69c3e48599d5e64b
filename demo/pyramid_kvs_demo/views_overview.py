"""The overview page: what the demo shows, each feature and the store it runs on."""

from __future__ import annotations

from html import escape
from typing import Any

from pyramid.view import view_config

from pyramid_kvs import get_components

from . import page


@view_config(route_name="home")
def overview(request: Any) -> Any:
    components = get_components(request.registry)
    features = [
        (
            "cache",
            "Cache",
            "request.cache",
            "kvs.cache",
            components.cache.store if components.cache else None,
            "A slow report computed once and served from the cache with "
            "<code>get_or_set</code>; a visit counter with the atomic <code>incr</code>.",
        ),
        (
            "session",
            "Session",
            "request.session",
            "kvs.session",
            components.session_factory.store if components.session_factory else None,
            "A server-side session: a counter, flash messages shown once, a login that "
            "rotates the session id, notes added through CSRF-protected forms, and a "
            "forged form that is refused.",
        ),
        (
            "ratelimit",
            "Rate limit",
            "kvs.ratelimit",
            "kvs.ratelimit",
            components.ratelimiter.store if components.ratelimiter else None,
            "A JSON endpoint limited to 5 requests per 10 seconds: the rate-limit "
            "headers of every answer, then the 429.",
        ),
        (
            "perl",
            "Perl session",
            "request.perlsess",
            "kvs.perlsess",
            components.perlsess.store if components.perlsess else None,
            "A session a Perl site (CGI::Session) stored with Storable, read through "
            "its own cookie.",
        ),
    ]
    rows = "".join(
        f'<tr><td><a href="{escape(request.route_url(route))}">{escape(title)}</a></td>'
        f"<td><code>{escape(api)}</code></td><td>{shows}</td>"
        f"<td>{escape(store.name if store else 'not configured')}"
        f"{'' if store is None else f' (<code>{escape(setting)}</code>)'}</td></tr>"
        for route, title, api, setting, store, shows in features
    )
    limiter = components.ratelimiter
    limited = ""
    if limiter is not None and limiter.limits:
        quota = " and ".join(
            f"{limit.amount} requests per {limit.window} seconds" for limit in limiter.limits
        )
        limited = (
            f"<p>The whole demo is rate limited too (<code>kvs.ratelimit</code>: {quota} "
            f"per {escape(limiter.settings.holder)}), so every answer carries rate-limit "
            "headers.</p>"
        )
    body = f"""
<p>This application uses every part of
<a href="https://example.org/pyramid_kvs">pyramid_kvs</a> (a placeholder address),
configured in <code>demo/demo.ini</code>.  Each page says what it shows and which
store keeps its data.  Everything runs on the in-process <b>memory</b> store, so no
server is needed; point a component's <code>url</code> at
<code>redis://</code> or <code>memcached://</code> and the same pages run there.</p>
<table id="features">
<tr><th>Page</th><th>API</th><th>What it shows</th><th>Store</th></tr>
{rows}
</table>
{limited}
"""
    return page(request, "What this demo shows", body)
