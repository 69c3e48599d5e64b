"""The anchors: pyramid_session_redis, limits and dogpile.cache, set up like ours.

Each is configured to do what pyramid_kvs does in the same scenario, in its own
documented way: pyramid_session_redis signs its cookie, stores JSON (pyramid_kvs'
codec; its default is pickle) and leaves the idle timeout to Redis' TTL, refreshed
by an ``EXPIRE`` after the view (``python_expires = False``; with its default, the
expiry is kept in the payload, which is then written again by most reads).  Its
``set_redis_ttl_readheavy``, which would read and refresh in one pipeline, returns
the pipeline instead of the session in 1.8.1, so it cannot be used; ``limits`` counts a
fixed window in its Redis (or memcached, memory) storage and ``get_window_stats``
gives the same five headers pyramid_kvs sends; dogpile.cache stores JSON in Redis
and memcached and objects in memory, its memory backend's way.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from dogpile.cache import make_region
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPTooManyRequests
from pyramid.tweens import EXCVIEW
from pyramid_session_redis import RedisSessionFactory

from benchmarks.sides.common import (
    LIMITS,
    RATE_LIMIT_HEADERS,
    SECRET,
    SESSION_TTL,
    Params,
    store_url,
)
from benchmarks.subjects import Subject, get, has_headers, session_cookie, stampede
from benchmarks.views import add_views


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def session_factory(params: Params) -> Any:
    return RedisSessionFactory(
        secret=SECRET,
        timeout=SESSION_TTL,
        cookie_name="session_id",
        cookie_samesite="Lax",
        redis_url=f"redis://{params['redis']}/0",
        serialize=json_bytes,
        deserialize=json.loads,
        python_expires=False,
    )


def make_app(
    settings: dict[str, Any], *setups: Callable[[Configurator], None]
) -> tuple[Any, Configurator]:
    config = Configurator(settings=settings)
    for setup in setups:
        setup(config)
    add_views(config)
    return config.make_wsgi_app(), config


def with_sessions(params: Params) -> Callable[[Configurator], None]:
    def setup(config: Configurator) -> None:
        config.set_session_factory(session_factory(params))

    return setup


def growth_settings(params: Params) -> dict[str, Any]:
    return {
        "bench.keys": params.get("keys", 0),
        "bench.value_size": params.get("value_size", 100),
    }


def session_read(params: Params) -> Subject:
    app, _ = make_app(growth_settings(params), with_sessions(params))
    return Subject(app, "/read", session_cookie(app, "session_id"), body=b"42")


def session_write(params: Params) -> Subject:
    app, _ = make_app(growth_settings(params), with_sessions(params))
    return Subject(app, "/write", session_cookie(app, "session_id"), body=b"written")


def session_new(params: Params) -> Subject:
    app, _ = make_app({}, with_sessions(params))
    return Subject(app, "/new", body=b"created", check=has_headers("Set-Cookie"))


# -- limits: a tween that counts every request and describes the window -------------


def session_holder(request: Any) -> str:
    """The session id when the request names a valid session, else the address."""
    if "session_id" in request.cookies:
        session_id = request.session.session_id
        if isinstance(session_id, str):
            return session_id
    return str(request.client_addr)


def address_holder(request: Any) -> str:
    return str(request.client_addr)


def rate_limit_headers(limit: Any, stats: Any) -> list[tuple[str, str]]:
    """The legacy and IETF headers pyramid_kvs sends (``headers = both``)."""
    reset = max(1, math.ceil(stats.reset_time - time.time()))
    remaining = max(0, stats.remaining)
    window = limit.get_expiry()
    return [
        ("X-RateLimit-Limit", str(limit.amount)),
        ("X-RateLimit-Remaining", str(remaining)),
        ("X-RateLimit-Reset", str(reset)),
        ("RateLimit-Policy", f'"default";q={limit.amount};w={window}'),
        ("RateLimit", f'"default";r={remaining};t={reset}'),
    ]


def with_limits(params: Params, holder: Callable[[Any], str]) -> Callable[[Configurator], None]:
    def setup(config: Configurator) -> None:
        config.registry.bench_limits = SimpleNamespace(
            limiter=FixedWindowRateLimiter(storage_from_string(store_url(params))),
            limit=parse(LIMITS),
            holder=holder,
        )
        config.add_tween("benchmarks.sides.anchors.limits_tween_factory", over=EXCVIEW)

    return setup


def limits_tween_factory(handler: Any, registry: Any) -> Callable[[Any], Any]:
    limits = registry.bench_limits
    limiter, limit, holder = limits.limiter, limits.limit, limits.holder

    def tween(request: Any) -> Any:
        key = holder(request)
        allowed = limiter.hit(limit, "bench", key)
        stats = limiter.get_window_stats(limit, "bench", key)
        if not allowed:
            refused = HTTPTooManyRequests()
            refused.headers.extend(rate_limit_headers(limit, stats))
            refused.headers["Retry-After"] = refused.headers["X-RateLimit-Reset"]
            return refused
        response = handler(request)
        response.headers.extend(rate_limit_headers(limit, stats))
        return response

    return tween


def session_ratelimit(params: Params) -> Subject:
    app, _ = make_app({}, with_sessions(params), with_limits(params, session_holder))
    cookie = session_cookie(app, "session_id")
    return Subject(app, "/read", cookie, body=b"42", check=RATE_LIMIT_HEADERS)


def ratelimit_only(params: Params) -> Subject:
    app, _ = make_app({}, with_limits(params, address_holder))
    return Subject(app, "/idle", body=b"idle", check=RATE_LIMIT_HEADERS)


# -- dogpile.cache behind request.cache ----------------------------------------------


def region(params: Params) -> Any:
    store = params.get("store", "redis")
    if store == "memory":
        return make_region().configure("dogpile.cache.memory", expiration_time=300)
    json_region = make_region(serializer=json_bytes, deserializer=json.loads)
    if store == "memcached":
        return json_region.configure(
            "dogpile.cache.pymemcache",
            expiration_time=300,
            arguments={"url": [params["memcached"]]},
        )
    host, port = params["redis"].split(":")
    return json_region.configure(
        "dogpile.cache.redis",
        expiration_time=300,
        arguments={"host": host, "port": int(port), "db": 0, "redis_expiration_time": 300},
    )


def with_cache(params: Params) -> Callable[[Configurator], None]:
    """``request.cache``: the region's own bound methods under the views' names."""
    cache_region = region(params)
    cache = SimpleNamespace(
        get_or_set=cache_region.get_or_create,
        get_many=cache_region.get_multi,
        set=cache_region.set,
    )

    def setup(config: Configurator) -> None:
        config.add_request_method(lambda request: cache, "cache", reify=True)

    return setup


def cache_hit(params: Params) -> Subject:
    app, _ = make_app({}, with_cache(params))
    return Subject(app, "/cache", body=b"daily report")


def cache_many(params: Params) -> Subject:
    app, _ = make_app({}, with_cache(params))
    get(app, "/seed-cache")
    return Subject(app, "/many", body=b"20")


BUILDERS: dict[str, Callable[[Params], Subject]] = {
    "session_read": session_read,
    "session_write": session_write,
    "session_new": session_new,
    "session_ratelimit": session_ratelimit,
    "ratelimit_only": ratelimit_only,
    "cache_hit": cache_hit,
    "cache_many": cache_many,
}

_regions: dict[str, Any] = {}


def cache_stampede(params: Params) -> dict[str, Any]:
    """One round of ``get_or_create`` by 8 threads on a cold key."""
    name = params.get("store", "redis")
    if name not in _regions:
        _regions[name] = region(params)
    return stampede(_regions[name].get_or_create, params["key"])


CALLS: dict[str, Callable[[Params], dict[str, Any]]] = {"stampede": cache_stampede}
