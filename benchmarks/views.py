"""The views every side serves: the same code for pyramid_kvs and its anchors.

They speak only Pyramid's own interfaces (``request.session``, and a
``request.cache`` with ``get_or_set``, ``get_many`` and ``set``, which the anchors'
side maps onto dogpile.cache), so that a difference in the figures comes from the
add-on under the view, never from the view.
"""

from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

#: a small logged-in session, the shape most requests see
SESSION: dict[str, Any] = {
    "user_id": 42,
    "login": "jdupont",
    "roles": ["admin", "editor"],
    "locale": "fr_FR",
    "cart": [{"sku": f"SKU-{n}", "qty": 1, "price": 9.99} for n in range(3)],
}
#: the cached value of the cache scenarios (about 350 bytes of JSON)
REPORT: dict[str, Any] = {
    "title": "daily report",
    "rows": [{"day": n, "visits": 100 + n, "orders": n % 7} for n in range(8)],
}
MANY_KEYS = [f"item:{n}" for n in range(20)]


def session_data(settings: dict[str, Any]) -> dict[str, Any]:
    """The seeded session: ``SESSION``, or ``bench.keys`` keys of ``bench.value_size``
    bytes each beside ``user_id`` (the session size growth scenarios)."""
    keys = int(settings.get("bench.keys", 0))
    if not keys:
        return dict(SESSION)
    size = int(settings.get("bench.value_size", 100))
    data: dict[str, Any] = {"user_id": 42}
    for n in range(keys):
        data[f"k{n:04d}"] = "x" * size
    return data


def text(body: str) -> Response:
    return Response(text=body, content_type="text/plain", charset="utf-8")


def seed(request: Request) -> Response:
    request.session.update(session_data(request.registry.settings))
    return text("seeded")


def read(request: Request) -> Response:
    return text(str(request.session["user_id"]))


def write(request: Request) -> Response:
    session = request.session
    session["visits"] = session.get("visits", 0) + 1
    return text("written")


def new(request: Request) -> Response:
    request.session["user_id"] = 42
    return text("created")


def idle(request: Request) -> Response:
    return text("idle")


def build_report() -> dict[str, Any]:
    return dict(REPORT)


def cache_hit(request: Request) -> Response:
    return text(request.cache.get_or_set("report", build_report)["title"])


def seed_cache(request: Request) -> Response:
    for key in MANY_KEYS:
        request.cache.set(key, {"key": key, "value": "v" * 40})
    return text("seeded")


def cache_many(request: Request) -> Response:
    return text(str(len(request.cache.get_many(MANY_KEYS))))


def perl(request: Request) -> Response:
    return text(request.perlsess["user"]["login"])


VIEWS = {
    "seed": seed,
    "read": read,
    "write": write,
    "new": new,
    "idle": idle,
    "cache": cache_hit,
    "seed-cache": seed_cache,
    "many": cache_many,
    "perl": perl,
}


def add_views(config: Configurator) -> None:
    """A route ``/name`` per view."""
    for name, view in VIEWS.items():
        config.add_route(name, f"/{name}")
        config.add_view(view, route_name=name)
