"""pyramid_kvs 2, configured as its README says, for each scenario kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyramid.config import Configurator

from benchmarks.sides.common import (
    HEADER_TOKEN,
    LEGACY_RATE_LIMIT_HEADERS,
    LIMITS,
    RATE_LIMIT_HEADERS,
    SECRET,
    SESSION_TTL,
    Params,
    header_ratelimit_settings,
    perl_settings,
    store_url,
)
from benchmarks.subjects import Subject, get, has_headers, session_cookie, stampede
from benchmarks.views import add_views
from pyramid_kvs import get_components


def make_app(settings: dict[str, Any], include: bool = True) -> tuple[Any, Callable[[], None]]:
    """The WSGI application and how to close its stores."""
    config = Configurator(settings=settings)
    if include:
        config.include("pyramid_kvs")
    add_views(config)
    app = config.make_wsgi_app()
    registry = config.registry

    def close() -> None:
        if include:
            get_components(registry).close()

    return app, close


def session_settings(params: Params) -> dict[str, Any]:
    return {
        "kvs.session.url": store_url(params),
        "kvs.session.secret": SECRET,
        "kvs.session.ttl": str(SESSION_TTL),
        "bench.keys": params.get("keys", 0),
        "bench.value_size": params.get("value_size", 100),
    }


def session_read(params: Params) -> Subject:
    app, close = make_app(session_settings(params))
    return Subject(app, "/read", session_cookie(app, "session_id"), body=b"42", close=close)


def session_write(params: Params) -> Subject:
    app, close = make_app(session_settings(params))
    cookie = session_cookie(app, "session_id")
    return Subject(app, "/write", cookie, body=b"written", close=close)


def session_new(params: Params) -> Subject:
    app, close = make_app(session_settings(params))
    return Subject(app, "/new", body=b"created", check=has_headers("Set-Cookie"), close=close)


def session_ratelimit(params: Params) -> Subject:
    settings = session_settings(params)
    settings["kvs.ratelimit.limits"] = LIMITS
    app, close = make_app(settings)
    cookie = session_cookie(app, "session_id")
    return Subject(app, "/read", cookie, body=b"42", check=RATE_LIMIT_HEADERS, close=close)


def header_ratelimit(params: Params) -> Subject:
    """The original add-on's settings, unchanged: a header session and its limit."""
    app, close = make_app(header_ratelimit_settings(params))
    get(app, "/seed", HEADER_TOKEN)
    check = LEGACY_RATE_LIMIT_HEADERS
    return Subject(app, "/read", HEADER_TOKEN, body=b"42", check=check, close=close)


def cache_hit(params: Params) -> Subject:
    app, close = make_app({"kvs.cache.url": store_url(params)})
    return Subject(app, "/cache", body=b"daily report", close=close)


def cache_many(params: Params) -> Subject:
    app, close = make_app({"kvs.cache.url": store_url(params)})
    get(app, "/seed-cache")
    return Subject(app, "/many", body=b"20", close=close)


def ratelimit_only(params: Params) -> Subject:
    settings = {
        "kvs.ratelimit.url": store_url(params),
        "kvs.ratelimit.limits": LIMITS,
        "kvs.ratelimit.holder": "ip",
    }
    app, close = make_app(settings)
    return Subject(app, "/idle", body=b"idle", check=RATE_LIMIT_HEADERS, close=close)


def perlsess(params: Params) -> Subject:
    app, close = make_app(perl_settings(params))
    cookie = {"Cookie": f"session_id={params['perl_session_id']}"}
    return Subject(app, "/perl", cookie, body=b"jdupont", close=close)


def idle(params: Params) -> Subject:
    """A component configured, and a view that does not use it."""
    component = params["component"]
    if component == "session":
        settings = session_settings(params)
    elif component == "cache":
        settings = {"kvs.cache.url": store_url(params)}
    elif component == "perlsess":
        settings = perl_settings(params)
    else:
        raise ValueError(component)
    app, close = make_app(settings)
    return Subject(app, "/idle", body=b"idle", close=close)


def bare(params: Params) -> Subject:
    """The same views in Pyramid alone: what an unused component should cost."""
    app, close = make_app({}, include=False)
    return Subject(app, "/idle", body=b"idle", close=close)


BUILDERS: dict[str, Callable[[Params], Subject]] = {
    "session_read": session_read,
    "session_write": session_write,
    "session_new": session_new,
    "session_ratelimit": session_ratelimit,
    "header_ratelimit": header_ratelimit,
    "cache_hit": cache_hit,
    "cache_many": cache_many,
    "ratelimit_only": ratelimit_only,
    "perlsess": perlsess,
    "idle": idle,
    "bare": bare,
}

_caches: dict[str, Any] = {}


def cache_stampede(params: Params) -> dict[str, Any]:
    """One round of ``get_or_set`` by 8 threads on a cold key."""
    url = store_url(params)
    if url not in _caches:
        config = Configurator(settings={"kvs.cache.url": url})
        config.include("pyramid_kvs")
        config.commit()
        _caches[url] = get_components(config.registry).cache
    return stampede(_caches[url].get_or_set, params["key"])


def storable(params: Params) -> dict[str, Any]:
    from benchmarks.storable_rows import storable_figures

    return storable_figures().as_dict()


CALLS: dict[str, Callable[[Params], dict[str, Any]]] = {
    "stampede": cache_stampede,
    "storable": storable,
}
