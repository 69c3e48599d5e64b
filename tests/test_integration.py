"""Components together: sessions and the rate limiter sharing one store."""

from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from webtest import TestApp

from apps import json_view
from apps import make_app as make_test_app
from roundtrips import count_round_trips

SECRET = "an-integration-test-secret-of-sufficient-length"


def make_app(session_url: str, ratelimit_url: str | None = None) -> TestApp:
    settings = {
        "kvs.session.url": session_url,
        "kvs.session.secret": SECRET,
        "kvs.ratelimit": '{"window": 60, "limit": 100}',
    }
    if ratelimit_url is not None:
        settings["kvs.ratelimit.url"] = ratelimit_url
    return make_test_app(settings, views)


def views(config: Configurator) -> None:
    def write(request: Any) -> dict[str, Any]:
        request.session["visits"] = request.session.get("visits", 0) + 1
        return {"visits": request.session["visits"]}

    def read(request: Any) -> dict[str, Any]:
        return {"visits": request.session.get("visits")}

    def untouched(request: Any) -> dict[str, Any]:
        return {"ok": True}

    for name, view in (("write", write), ("read", read), ("untouched", untouched)):
        json_view(config, name, view)


def test_limit_check_and_session_load_share_one_redis_round_trip(redis_url: str) -> None:
    app = make_app(redis_url)
    app.get("/write")  # a session exists from now on; connections are warm
    app.get("/untouched")  # the first request of the session's own window
    with count_round_trips() as trips:
        response = app.get("/read")
    assert response.json == {"visits": 1}
    assert response.headers["X-RateLimit-Remaining"] == "98"
    assert trips.redis == 1  # the check and the session load, pipelined
    with count_round_trips() as trips:
        response = app.get("/write")
    assert response.json == {"visits": 2}
    assert trips.redis == 2  # + the save
    with count_round_trips() as trips:
        app.get("/untouched")
    assert trips.redis == 1  # the check alone still costs just its own round trip


def test_a_prefetched_session_keeps_concurrent_semantics(redis_url: str) -> None:
    app = make_app(redis_url)
    app.get("/write")
    for expected in (2, 3, 4):
        assert app.get("/write").json == {"visits": expected}


def test_no_prefetch_without_a_pipeline(memcached_address: str) -> None:
    # memcached batches are not pipelined: loading a session the view may never
    # touch would cost a round trip of its own, so the session stays lazy
    app = make_app("memcached://" + memcached_address)
    app.get("/write")
    app.get("/untouched")  # the session holder's window is created
    with count_round_trips() as trips:
        app.get("/untouched")
    untouched = trips.memcached
    with count_round_trips() as trips:
        assert app.get("/read").json == {"visits": 1}
    assert trips.memcached == untouched + 1


def test_a_limiter_on_another_store_does_not_prefetch(
    redis_url: str, memcached_address: str
) -> None:
    app = make_app(redis_url, ratelimit_url="memcached://" + memcached_address)
    app.get("/write")
    with count_round_trips() as trips:
        assert app.get("/read").json == {"visits": 1}
    assert trips.redis == 1  # the session's own load
