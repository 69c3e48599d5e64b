"""The pyramid_kvs demo application.

Each feature has its own module of views (``views_*.py``), found by ``config.scan``;
``page`` wraps their HTML in a shared layout with a menu.
"""

from __future__ import annotations

from html import escape
from typing import Any

from pyramid.config import Configurator
from pyramid.response import Response

#: (route name, title) of every page, for the menu; views modules append to it
MENU: list[tuple[str, str]] = []
#: (route name, URL pattern) of every page but the home page
ROUTES: list[tuple[str, str]] = []


def page(request: Any, title: str, body: str) -> Response:
    """A full HTML page with the demo's menu around *body* (already escaped HTML)."""
    links = " | ".join(
        f'<a href="{escape(request.route_url(name))}">{escape(label)}</a>' for name, label in MENU
    )
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)} - pyramid_kvs demo</title>
<style>body{{font-family:sans-serif;max-width:46em;margin:2em auto;line-height:1.5}}
code,pre{{background:#f4f4f4;padding:.1em .3em}} .hit{{color:green}} .miss{{color:#b50}}</style>
</head><body><nav>{links}</nav><h1>{escape(title)}</h1>{body}</body></html>"""
    return Response(html, content_type="text/html", charset="utf-8")


def main(global_config: dict[str, Any], **settings: Any) -> Any:
    with Configurator(settings=settings) as config:
        config.include("pyramid_kvs")
        config.scan(".")  # imports the views modules, which fill MENU and ROUTES
        config.add_route("home", "/")
        for route, pattern in ROUTES:
            config.add_route(route, pattern)
    return config.make_wsgi_app()
