"""``request.cache`` against every backend, through Pyramid and WebTest."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyramid.config import Configurator
from webtest import TestApp

from apps import configure, json_view
from apps import make_app as make_test_app
from pyramid_kvs import Cache, UnsupportedOperation, get_components
from pyramid_kvs.codecs import get_codec
from pyramid_kvs.stores import StoreUnavailable
from pyramid_kvs.stores.memory import MemoryStore
from servers import unused_port

SECRET = "a-cache-secret-of-at-least-32-characters"
#: stored values built to exhaust a decoder: deep nesting, a number of 5000 digits
HOSTILE = st.sampled_from(
    [b"[" * 100_000, b'{"a":' * 100_000, b"9" * 5000, b"\x91" * 100_000, b"\x81\x00" * 100_000]
)


def build(settings: dict[str, Any]) -> Configurator:
    return configure(settings)


@pytest.fixture
def cache(backend_url: str) -> Iterator[Cache]:
    config = build({"kvs.cache.url": backend_url, "kvs.cache.ttl": "60"})
    config.commit()
    built = get_components(config.registry).cache
    assert built is not None
    yield built


def test_request_cache_is_one_shared_object(backend_url: str) -> None:
    config = build({"kvs.cache": json.dumps({"url": backend_url})})

    def count(request: Any) -> dict[str, Any]:
        hits = request.cache.get("hits", 0) + 1
        request.cache["hits"] = hits
        return {"hits": hits, "same": request.cache is get_components(request.registry).cache}

    config.add_route("count", "/")
    config.add_view(count, route_name="count", renderer="json")
    app = TestApp(config.make_wsgi_app())
    assert app.get("/").json == {"hits": 1, "same": True}
    assert app.get("/").json == {"hits": 2, "same": True}


def test_no_request_cache_without_settings() -> None:
    config = build({})
    config.add_route("home", "/")
    config.add_view(lambda request: {"has": hasattr(request, "cache")}, route_name="home",
                    renderer="json")  # fmt: skip
    assert TestApp(config.make_wsgi_app()).get("/").json == {"has": False}


def test_mapping_api(cache: Cache) -> None:
    assert cache.get("missing") is None
    assert cache.get("missing", "default") == "default"
    assert cache["missing"] is None  # as in 1.x, whose views rely on it
    cache["user"] = {"name": "Ada", "roles": ["admin"]}
    assert cache["user"] == {"name": "Ada", "roles": ["admin"]}
    assert "user" in cache
    cache.set("nothing", None)
    assert "nothing" in cache  # a cached None is still cached
    assert cache.get("nothing", "default") is None
    del cache["user"]
    assert "user" not in cache
    assert cache.delete("user") is False
    assert 42 not in cache  # type: ignore[operator]


def test_pop(cache: Cache) -> None:
    cache["k"] = [1, 2]
    assert cache.pop("k") == [1, 2]
    assert cache.pop("k", "gone") == "gone"
    assert cache.pop("k") is None  # as in 1.x
    cache["k"] = None
    assert cache.pop("k", "gone") is None  # a cached None is a hit


def test_add_incr_touch(cache: Cache) -> None:
    assert cache.add("k", 1) is True
    assert cache.add("k", 2) is False
    assert cache["k"] == 1
    assert cache.incr("n") == 1
    assert cache.incr("n", 10) == 11
    assert cache.get("n") == 11
    assert cache.touch("n", 100) is True
    assert cache.touch("absent") is False
    with pytest.raises(TypeError):
        cache.incr("n", 1.5)  # type: ignore[arg-type]


def test_ttl_default_and_per_call(cache: Cache) -> None:
    cache.set("short", "v", ttl=1)
    cache.set("default", "v")
    time.sleep(2.2)
    assert "short" not in cache
    assert cache["default"] == "v"


def test_get_many_and_set_many(cache: Cache) -> None:
    cache.set_many({"a": 1, "b": {"x": [1]}, "c": None})
    assert cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": {"x": [1]}, "c": None}
    with pytest.raises(TypeError):
        cache.get_many("abc")


def test_list_keys(backend: str, cache: Cache) -> None:
    cache.set_many({"user:1": 1, "user:2": 2, "page:/": 3})
    if backend == "memcached":
        with pytest.raises(UnsupportedOperation, match="memcached"):
            cache.list_keys()
        return
    assert sorted(cache.list_keys()) == ["page:/", "user:1", "user:2"]
    assert sorted(cache.list_keys("user:*")) == ["user:1", "user:2"]


def test_keys_must_be_strings(cache: Cache) -> None:
    with pytest.raises(TypeError):
        cache.set(1, "v")  # type: ignore[arg-type]


def test_an_undecodable_value_is_a_logged_miss(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    cache.store.set("garbage", b"\x80\x04 not json")
    with caplog.at_level(logging.WARNING, logger="pyramid_kvs.cache"):
        assert cache.get("garbage", "default") == "default"
        assert "garbage" not in cache
    assert "does not decode as json" in caplog.text


def test_pickle_and_msgpack_codecs(backend_url: str) -> None:
    for codec, value in (("pickle", {"when": (1, 2)}), ("msgpack", {"bytes": b"\x00"})):
        config = build(
            {"kvs.cache.url": backend_url, "kvs.cache.codec": codec, "kvs.cache.secret": SECRET}
        )
        config.commit()
        cache = get_components(config.registry).cache
        assert cache is not None
        cache["k"] = value
        assert cache["k"] == value


@pytest.mark.parametrize("codec", ["json", "msgpack", "pickle"])
@settings(max_examples=150, deadline=None)
@given(stored=st.binary(max_size=200) | st.text(max_size=50).map(str.encode) | HOSTILE)
def test_any_stored_bytes_are_a_value_or_a_miss_on_every_read_path(
    codec: str, stored: bytes
) -> None:
    cache = Cache(MemoryStore(), get_codec(codec, secret=SECRET, purpose="kvs.cache"))
    reads: list[Callable[[], Any]] = [
        lambda: cache.get("k"),
        lambda: cache.get_many(["k", "other"]),
        lambda: "k" in cache,
        lambda: cache.get_or_set("k", lambda: "fresh"),
        lambda: cache.pop("k", "miss"),
    ]
    reads.append(lambda: cache["k"])
    for read in reads:
        cache.store.set("k", stored)
        read()  # a decoded value or a miss: any exception fails the test


def test_json_never_falls_back_to_pickle(cache: Cache) -> None:
    import pickle

    cache.store.set("pickled", pickle.dumps({"evil": True}))
    assert cache.get("pickled") is None


def test_get_or_set_computes_once(cache: Cache) -> None:
    calls = []

    def creator() -> str:
        calls.append(1)
        return "value"

    assert cache.get_or_set("k", creator) == "value"
    assert cache.get_or_set("k", creator) == "value"
    assert len(calls) == 1


def test_get_or_set_protects_from_stampedes(cache: Cache) -> None:
    calls = []
    results = []

    def slow_creator() -> int:
        calls.append(1)
        time.sleep(0.5)
        return 42

    def worker() -> None:
        results.append(cache.get_or_set("expensive", slow_creator))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [42] * 6
    assert len(calls) == 1
    if cache.store.can_scan:  # the regeneration lock is gone and never listed
        assert cache.list_keys() == ["expensive"]


def test_cached_decorator(cache: Cache) -> None:
    calls = []

    @cache.cached(ttl=60)
    def square(number: int) -> int:
        calls.append(number)
        return number * number

    assert square(3) == 9
    assert square(3) == 9
    assert square(4) == 16
    assert calls == [3, 4]
    square.invalidate(3)  # type: ignore[attr-defined]
    assert square(3) == 9
    assert calls == [3, 4, 3]

    @cache.cached(key=lambda obj: f"obj:{obj.id}")
    def describe(obj: Any) -> str:
        return f"object {obj.id}"

    class Thing:
        id = 7

    assert describe(Thing()) == "object 7"
    assert cache["obj:7"] == "object 7"

    @cache.cached()
    def needs_key(obj: Any) -> None: ...

    with pytest.raises(TypeError, match="pass key="):
        needs_key(object())


# -- outage --------------------------------------------------------------------------------


@pytest.fixture(params=["redis", "memcached"])
def down_url(request: pytest.FixtureRequest) -> str:
    port = unused_port()
    if request.param == "redis":
        return f"redis://127.0.0.1:{port}/0?socket_timeout=1&socket_connect_timeout=1"
    return f"memcached://127.0.0.1:{port}"


def test_an_unreachable_store_makes_misses_and_skipped_writes(
    down_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = build({"kvs.cache.url": down_url})
    config.add_route("home", "/")

    def view(request: Any) -> dict[str, Any]:
        request.cache["k"] = "v"
        return {
            "get": request.cache.get("k", "miss"),
            "many": request.cache.get_many(["a"]),
            "incr": request.cache.incr("n"),
            "computed": request.cache.get_or_set("g", lambda: "fresh"),
        }

    config.add_view(view, route_name="home", renderer="json")
    with caplog.at_level(logging.WARNING, logger="pyramid_kvs.cache"):
        response = TestApp(config.make_wsgi_app()).get("/")
    assert response.json == {"get": "miss", "many": {}, "incr": None, "computed": "fresh"}
    assert "cache write skipped" in caplog.text
    assert "cache read skipped" in caplog.text


def test_raise_errors_lets_outages_through(down_url: str) -> None:
    config = build({"kvs.cache.url": down_url, "kvs.cache.raise_errors": "true"})
    config.commit()
    cache = get_components(config.registry).cache
    assert cache is not None
    with pytest.raises(StoreUnavailable):
        cache.get("k")
    with pytest.raises(StoreUnavailable):
        cache["k"] = 1


def test_request_attributes_need_no_class_per_request() -> None:
    # Pyramid builds a subclass of the request for each request that has properties
    # added with add_request_method(property=True or reify=True): pyramid_kvs adds
    # none, so an application's requests stay instances of Pyramid's own class.
    from pyramid.request import Request as PyramidRequest

    def kind(request: Any) -> dict[str, Any]:
        return {
            "class": type(request) is PyramidRequest,
            "cache": type(request.cache).__name__,
            "perlsess": type(request.perlsess).__name__,
            "ratelimit": request.ratelimit is not None,
        }

    app = make_test_app(
        {"kvs.cache.url": "memory://", "kvs.perlsess.url": "memory://",
         "kvs.ratelimit.limits": "100/second"},
        lambda config: json_view(config, "kind", kind, "/"),
    )  # fmt: skip
    assert app.get("/").json == {
        "class": True, "cache": "Cache", "perlsess": "PerlSession", "ratelimit": True,
    }  # fmt: skip
