"""The pyramid_kvs demo application: `make demo`, then http://localhost:6543.

One module of views per feature (``views_*.py``), found by ``config.scan``; the
route table and the menu are here, so the whole application reads in one place.
``page`` wraps each view's HTML in the shared layout.  ``store_note`` says which
store a component runs on, read from the running configuration, so the pages stay
true when demo.ini points a component at Redis or memcached.
"""

from __future__ import annotations

from html import escape
from typing import Any

from pyramid.config import Configurator
from pyramid.response import Response

from pyramid_kvs.stores import Store

#: (route name, URL pattern, menu label) of the pages in the menu, in its order
PAGES: list[tuple[str, str, str]] = [
    ("home", "/", "Overview"),
    ("cache", "/cache", "Cache"),
    ("session", "/session", "Session"),
    ("ratelimit", "/ratelimit", "Rate limit"),
    ("perl", "/perl", "Perl session"),
]
#: (route name, URL pattern) of the routes that are not pages: forms, the JSON API
ACTIONS: list[tuple[str, str]] = [
    ("session_note", "/session/note"),
    ("session_login", "/session/login"),
    ("session_logout", "/session/logout"),
    ("ratelimit_api", "/ratelimit/api"),
    ("perl_login", "/perl/login"),
    ("perl_forge", "/perl/forge"),
]

_STORES = {
    "memory": "the in-process memory store (no server; each worker process has its own)",
    "redis": "Redis",
    "memcached": "memcached",
    "mock": "the mock store of pyramid_kvs.testing",
}


def store_note(store: Store, setting: str) -> str:
    """One line of HTML naming *store*, the setting that chose it and its key prefix."""
    kind = _STORES.get(store.name, f"the {store.name} store")
    return (
        f'<p class="store">Store: <b>{escape(kind)}</b>, configured by '
        f"<code>{escape(setting)}</code> in demo.ini; its keys start with "
        f"<code>{escape(store.key_prefix)}</code>.</p>"
    )


def page(request: Any, title: str, body: str, status: int = 200) -> Response:
    """A full HTML page with the demo's menu around *body* (already escaped HTML)."""
    links = " | ".join(
        f'<a href="{escape(request.route_url(name))}">{escape(label)}</a>'
        for name, _, label in PAGES
    )
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)} - pyramid_kvs demo</title>
<style>body{{font-family:sans-serif;max-width:48em;margin:2em auto;line-height:1.5}}
code,pre{{background:#f4f4f4;padding:.1em .3em}} .hit{{color:green}} .miss{{color:#b50}}
.store{{border-left:3px solid #68a;padding-left:.6em}} td,th{{padding:.1em .6em;text-align:left}}
.flash{{color:#063;font-weight:bold}}</style>
</head><body><nav>{links}</nav><h1>{escape(title)}</h1>{body}</body></html>"""
    return Response(html, status=status, content_type="text/html", charset="utf-8")


def main(global_config: dict[str, Any], **settings: Any) -> Any:
    with Configurator(settings=settings) as config:
        config.include("pyramid_kvs")
        for name, pattern, _ in PAGES:
            config.add_route(name, pattern)
        for name, pattern in ACTIONS:
            config.add_route(name, pattern)
        config.scan(".")
    return config.make_wsgi_app()
