"""Upgrading from pyramid_kvs 1.x: its settings, its data and its habits keep working.

The 1.x data is written here the way 1.x wrote it - a plain ``SET`` of the session
dict encoded as JSON, with a TTL, under ``key_prefix + <40 hex digits>`` for cookie
sessions and ``key_prefix + <lower-case header>::<token>`` for header sessions -
straight into the real servers, with their own client libraries.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from pymemcache.client.base import Client as MemcacheClient
from pyramid.config import Configurator
from webtest import TestApp

import apps
from pyramid_kvs import get_components
from roundtrips import count_round_trips
from servers import Server

SECRET = "an-upgrade-test-secret-of-enough-length"


def views(config: Configurator) -> None:
    def route(name: str, view: Callable[[Any], Any]) -> None:
        config.add_route(name, f"/{name}")
        config.add_view(view, route_name=name, renderer="json")

    def show(request: Any) -> dict[str, Any]:
        session = request.session
        return {"data": dict(session), "new": session.new}

    def write(request: Any) -> dict[str, Any]:
        request.session.update(request.params)
        return show(request)

    def flash(request: Any) -> dict[str, Any]:
        return {"messages": request.session.pop_flash(), "csrf": request.session.get_csrf_token()}

    def nothing(request: Any) -> dict[str, Any]:
        return {"ok": True}

    def login(request: Any) -> dict[str, Any]:
        request.session.update_session_token("x-auth-token", request.params["token"])
        request.session["user"] = "ada"
        return show(request)

    for name, view in (("show", show), ("write", write), ("flash", flash),
                       ("nothing", nothing), ("login", login)):  # fmt: skip
        route(name, view)


def make_app(settings: dict[str, Any]) -> TestApp:
    return apps.make_app(settings, views)


# -- writing data the way 1.x did ----------------------------------------------------------


class OneX:
    """A store as 1.x wrote it: plain values, JSON by default, with a TTL."""

    def __init__(self, backend: str, server: Server) -> None:
        self.backend = backend
        self.server = server

    def set(self, key: str, value: bytes, ttl: int = 300) -> None:
        if self.backend == "redis":
            client = redis.Redis(host=self.server.host, port=self.server.port)
            client.set(key, value, ex=ttl)  # 1.x called SETEX: the same effect
            client.close()
        else:
            client = MemcacheClient((self.server.host, self.server.port))
            client.set(key, value, ttl, noreply=False)
            client.close()

    def exists(self, key: str) -> bool:
        if self.backend == "redis":
            client = redis.Redis(host=self.server.host, port=self.server.port)
            found = client.exists(key) == 1
            client.close()
            return found
        mc = MemcacheClient((self.server.host, self.server.port))
        value = mc.get(key)
        mc.close()
        return value is not None


SERVERS = ("redis", "memcached")


@pytest.fixture(params=SERVERS)
def one_x(request: pytest.FixtureRequest) -> Iterator[tuple[OneX, str]]:
    """1.x's writer and the session URL for each real server, emptied."""
    from conftest import store_url

    url = store_url(request.param, request)
    server = request.getfixturevalue(f"{request.param}_server")
    yield OneX(request.param, server), url


def session_settings(url: str, **extra: str) -> dict[str, Any]:
    return {"kvs.session.url": url, "kvs.session.secret": SECRET, **extra}


def cookie_value(response: Any, name: str = "session_id") -> str | None:
    for header in response.headers.getall("Set-Cookie"):
        cookie, _, rest = header.partition("=")
        if cookie == name:
            return rest.split(";")[0]
    return None


# -- cookie sessions -----------------------------------------------------------------------


def test_a_1x_cookie_session_moves_to_a_new_id(one_x: tuple[OneX, str]) -> None:
    writer, url = one_x
    old_id = secrets.token_hex(20)  # 1.x: hexlify(os.urandom(20))
    writer.set("session::" + old_id, json.dumps({"user_id": 7, "cart": [1, 2]}).encode())
    app = make_app(session_settings(url))
    app.set_cookie("session_id", old_id)
    moved = app.get("/show")
    assert moved.json == {"data": {"user_id": 7, "cart": [1, 2]}, "new": False}
    new_cookie = cookie_value(moved)
    assert new_cookie and old_id not in new_cookie  # a 1.x id is never kept
    assert not writer.exists("session::" + old_id)  # moved, not copied
    # the user stays logged in under the new id, and the old one is worthless
    assert app.get("/write", {"seen": "yes"}).json["data"] == {
        "user_id": 7, "cart": [1, 2], "seen": "yes",
    }  # fmt: skip
    stranger = TestApp(app.app)
    stranger.set_cookie("session_id", old_id)
    assert stranger.get("/show").json["data"] == {}


def test_flash_messages_and_the_csrf_token_survive_the_upgrade() -> None:
    app = make_app(session_settings("memory://"))
    old_id = secrets.token_hex(20)
    sessions = get_components(app.app.registry).session_factory
    assert sessions is not None
    sessions.store.set(
        old_id, json.dumps({"_f_": ["Saved."], "__csrf_token": "1x-token"}).encode(), 300
    )
    app.set_cookie("session_id", old_id)
    assert app.get("/flash").json == {"messages": ["Saved."], "csrf": "1x-token"}


def test_the_1x_lookup_costs_no_round_trip_of_its_own(redis_url: str) -> None:
    app = make_app(session_settings(redis_url))
    sessions = get_components(app.app.registry).session_factory
    assert sessions is not None
    sessions.store.ping()
    old_id = secrets.token_hex(20)
    sessions.store.set(old_id, b'{"user_id": 7}', 300)
    app.set_cookie("session_id", old_id)
    with count_round_trips() as trips:
        app.get("/show")  # the 1.x read; the move: delete + write, one pipeline
    assert trips.redis == 2
    with count_round_trips() as trips:
        assert app.get("/show").json["data"] == {"user_id": 7}
    assert trips.redis == 1  # from now on, an ordinary session


def test_legacy_sessions_can_be_switched_off(redis_url: str) -> None:
    app = make_app(session_settings(redis_url, **{"kvs.session.legacy_sessions": "false"}))
    sessions = get_components(app.app.registry).session_factory
    assert sessions is not None
    old_id = secrets.token_hex(20)
    sessions.store.set(old_id, b'{"user_id": 7}', 300)
    app.set_cookie("session_id", old_id)
    with count_round_trips() as trips:
        response = app.get("/show")
    assert response.json == {"data": {}, "new": True}
    assert trips.redis == 0  # not even looked up
    assert sessions.store.get(old_id) == b'{"user_id": 7}'  # left alone


def test_an_id_of_any_other_form_is_not_looked_up_as_1x(redis_url: str) -> None:
    app = make_app(session_settings(redis_url))
    sessions = get_components(app.app.registry).session_factory
    assert sessions is not None
    for forged in ("chocolate", "A" * 40, secrets.token_hex(20).upper(), "0" * 41):
        sessions.store.set(forged, b'{"user_id": 1}', 300)
        app.set_cookie("session_id", forged)
        with count_round_trips() as trips:
            assert app.get("/show").json["data"] == {}
        assert trips.redis == 0


def test_1x_json_data_is_never_unpickled(tmp_path: Any) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.mkdir, (str(marker),))

    app = make_app(session_settings("memory://"))
    sessions = get_components(app.app.registry).session_factory
    assert sessions is not None
    old_id = secrets.token_hex(20)
    sessions.store.set(old_id, pickle.dumps(Payload()), 300)
    app.set_cookie("session_id", old_id)
    assert app.get("/show").json["data"] == {}  # 1.x fell back to pickle.loads here
    assert not marker.exists()


def test_a_1x_session_in_the_pickle_codec_moves_too() -> None:
    from pyramid_kvs.codecs import UnsignedPickleWarning

    with pytest.warns(UnsignedPickleWarning, match="kvs.session.codec = pickle without"):
        app = make_app({"kvs.session.url": "memory://", "kvs.session.codec": "pickle"})
    sessions = get_components(app.app.registry).session_factory
    assert sessions is not None
    old_id = secrets.token_hex(20)
    sessions.store.set(old_id, pickle.dumps({"user_id": 7}), 300)
    app.set_cookie("session_id", old_id)
    assert app.get("/show").json["data"] == {"user_id": 7}


def test_a_1x_value_that_is_not_a_session_is_left_alone() -> None:
    app = make_app(session_settings("memory://"))
    sessions = get_components(app.app.registry).session_factory
    assert sessions is not None
    old_id = secrets.token_hex(20)
    for garbage in (b"[1, 2]", b"\xff\xfe", b'"text"'):
        sessions.store.set(old_id, garbage, 300)
        app.set_cookie("session_id", old_id)
        assert app.get("/show").json == {"data": {}, "new": True}
        assert sessions.store.get(old_id) == garbage


# -- header sessions -----------------------------------------------------------------------


def header_settings(url: str, **extra: str) -> dict[str, Any]:
    return session_settings(
        url,
        **{"kvs.session.session_type": "header", "kvs.session.key_name": "X-Auth-Token"},
        **extra,
    )


def test_a_1x_header_session_stays_under_its_token(one_x: tuple[OneX, str]) -> None:
    writer, url = one_x
    token = "issued-by-the-auth-service"
    writer.set("session::x-auth-token::" + token, b'{"user_id": 7}')
    app = make_app(header_settings(url))
    headers = {"X-Auth-Token": token}
    assert app.get("/show", headers=headers).json == {"data": {"user_id": 7}, "new": False}
    assert not writer.exists("session::x-auth-token::" + token)
    app.get("/write", {"seen": "yes"}, headers=headers)
    assert app.get("/show", headers=headers).json["data"] == {"user_id": 7, "seen": "yes"}


def test_header_names_with_underscores_as_1x_spelled_them() -> None:
    settings = {"kvs.session.session_type": "header", "kvs.session.key_name": "X_Api_Key"}
    app = make_app(session_settings("memory://", **settings))
    sessions = get_components(app.app.registry).session_factory
    assert sessions is not None
    sessions.store.set("x-api-key::tok", b'{"user_id": 7}', 300)
    shown = app.get("/show", extra_environ={"HTTP_X_API_KEY": "tok"})
    assert shown.json["data"] == {"user_id": 7}


def test_invalidating_a_header_session_deletes_its_1x_data_too() -> None:
    app = make_app(header_settings("memory://"))
    sessions = get_components(app.app.registry).session_factory
    assert sessions is not None
    headers = {"X-Auth-Token": "tok"}
    app.get("/write", {"a": "1"}, headers=headers)
    sessions.store.set("x-auth-token::tok", b'{"user_id": 7}', 300)  # not moved: a record exists
    config = Configurator(registry=app.app.registry)
    config.add_route("bye", "/bye")
    config.add_view(lambda request: request.session.invalidate() or {}, route_name="bye",
                    renderer="json")  # fmt: skip
    config.commit()
    app.get("/bye", headers=headers)
    assert sessions.store.get("x-auth-token::tok") is None  # it would come back otherwise
    assert app.get("/show", headers=headers).json["data"] == {}


def test_session_and_rate_limit_of_a_header_session_in_one_round_trip(redis_url: str) -> None:
    app = make_app({**header_settings(redis_url), "kvs.ratelimit": '{"window": 60, "limit": 50}'})
    headers = {"X-Auth-Token": "an-api-client"}
    app.get("/write", {"a": "1"}, headers=headers)
    app.get("/nothing", headers=headers)
    with count_round_trips() as trips:
        assert app.get("/show", headers=headers).json["data"] == {"a": "1"}
    assert trips.redis == 1  # the check, the record and the 1.x key: one pipeline
    with count_round_trips() as trips:
        app.get("/write", {"b": "2"}, headers=headers)
    assert trips.redis == 2


def test_the_1x_login_view_works_unchanged() -> None:
    app = make_app(header_settings("memory://", **{"kvs.session.adopt_tokens": "false"}))
    token = "token-issued-at-login"
    app.get("/login", {"token": token})  # update_session_token("x-auth-token", ...)
    shown = app.get("/show", headers={"X-Auth-Token": token}).json
    assert shown == {"data": {"user": "ada"}, "new": False}


# -- the cache -----------------------------------------------------------------------------


def test_values_1x_cached_are_read(one_x: tuple[OneX, str]) -> None:
    writer, url = one_x
    writer.set("cache::answer", json.dumps({"value": 42}).encode())
    config = apps.configure({"kvs.cache.url": url})
    config.commit()
    cache = get_components(config.registry).cache
    assert cache is not None
    assert cache["answer"] == {"value": 42}
    assert cache["missing"] is None and cache.pop("missing") is None  # 1.x answered None


# -- settings and names --------------------------------------------------------------------


def test_key_suffix_is_accepted_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"kvs\.ratelimit\.key_suffix is deprecated"):
        app = make_app({"kvs.ratelimit": '{"window": 1, "limit": 15, "key_suffix": "::rl"}'})
    assert get_components(app.app.registry).ratelimiter is not None


def test_rate_limit_error_is_importable_and_its_exception_views_answer() -> None:
    from pyramid.httpexceptions import HTTPTooManyRequests

    from pyramid_kvs.ratelimit import RateLimitError

    assert issubclass(RateLimitError, HTTPTooManyRequests)
    config = apps.configure({"kvs.ratelimit": '{"window": 60, "limit": 1}'})
    views(config)
    config.add_view(
        lambda exc, request: {"slow down": exc.outcome.retry_after > 0},
        context=RateLimitError,
        renderer="json",
    )
    app = TestApp(config.make_wsgi_app())
    app.get("/nothing")
    refused = app.get("/nothing", status=200)  # the application's own answer
    assert refused.json == {"slow down": True}
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Remaining"] == "0"


def test_rate_limit_error_through_the_view_deriver() -> None:
    from pyramid_kvs.ratelimit import RateLimitError

    config = apps.configure({"kvs.ratelimit.limits": "none"})
    config.add_route("a", "/a")
    config.add_route("b", "/b")
    config.add_view(lambda request: {}, route_name="a", renderer="json", ratelimit="1/day")
    config.add_view(lambda request: {}, route_name="a", renderer="json", ratelimit=False,
                    request_method="POST")  # fmt: skip
    seen: list[Any] = []

    def refused(exc: RateLimitError, request: Any) -> Any:
        seen.append(exc)
        request.response.status = 429
        return {"refused": True}

    config.add_view(refused, context=RateLimitError, renderer="json")
    app = TestApp(config.make_wsgi_app())
    app.get("/a")
    assert app.get("/a", status=429).json == {"refused": True}
    assert len(seen) == 1 and seen[0].outcome.allowed is False


def test_no_warning_for_settings_written_for_1x() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_app(
            {
                "kvs.cache": '{"kvs": "redis", "codec": "json", "kvs_kwargs": {}, "ttl": 300, '
                '"key_prefix": "cache::"}',
                "kvs.session": '{"kvs": "redis", "key_name": "session_id", "session_type": '
                '"cookie", "ttl": 300, "key_prefix": "session::"}',
                "kvs.ratelimit": '{"window": 1, "limit": 15}',
                "kvs.perlsess": '{"type": "memcached"}',
            }
        )


def test_names_1x_code_uses() -> None:
    from pyramid_kvs.cache import ApplicationCache, Cache

    assert ApplicationCache is Cache
    app = make_app(session_settings("memory://"))
    config = Configurator(registry=app.app.registry)
    config.add_route("has", "/has")
    config.add_view(lambda request: {"has": request.session.has_key("a")}, route_name="has",
                    renderer="json")  # fmt: skip
    config.commit()
    app.get("/write", {"a": "1"})
    with pytest.warns(DeprecationWarning, match="use `key in session`"):
        assert app.get("/has").json == {"has": True}


def test_perlsess_has_key_as_1x_offered() -> None:
    from pyramid_kvs.storable import nfreeze
    from pyramid_kvs.testing import mock_store

    config = apps.configure({"kvs.perlsess": '{"kvs": "memory"}'}, include="pyramid_kvs.testing")
    config.add_route("perl", "/perl")
    config.add_view(lambda request: {"has": request.perlsess.has_key("user")},
                    route_name="perl", renderer="json")  # fmt: skip
    app = TestApp(config.make_wsgi_app())
    mock_store(config.registry, "perlsess").set("abc123", nfreeze({"user": "ada"}))
    app.set_cookie("session_id", "abc123")
    with pytest.warns(DeprecationWarning, match="has_key"):
        assert app.get("/perl").json == {"has": True}


def test_python_memcached_options_of_1x_settings(
    memcached_address: str, caplog: pytest.LogCaptureFixture
) -> None:
    from pyramid_kvs.stores.memcached import normalise_options

    kwargs = {"servers": [memcached_address], "debug": 0, "socket_timeout": 2,
              "dead_retry": 30, "check_keys": True}  # fmt: skip
    with pytest.warns(UserWarning, match=r"debug, dead_retry, check_keys ignored"):
        app = make_app({"kvs.cache": json.dumps({"kvs": "memcache", "kvs_kwargs": kwargs})})
    assert "python-memcached options" in caplog.text
    cache = get_components(app.app.registry).cache
    assert cache is not None
    cache["k"] = 1
    assert cache["k"] == 1  # the application runs on them
    options = normalise_options({"socket_timeout": 2, "timeout": 0.5})
    assert (options.client_kwargs["connect_timeout"], options.client_kwargs["timeout"]) == (2, 0.5)


def test_unknown_client_options_are_still_refused() -> None:
    from pyramid.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"kvs\.cache\.kvs_kwargs.*socket_timout"):
        make_app({"kvs.cache": '{"kvs": "memcache", "kvs_kwargs": {"socket_timout": 2}}'})


# -- a test suite written for 1.x -----------------------------------------------------------


def one_x_app(settings: dict[str, Any]) -> TestApp:
    from pyramid import testing

    config = testing.setUp(settings=settings)
    config.include("pyramid_kvs.testing")
    config.add_route("remember", "/remember/{value}")
    config.add_route("recall", "/recall")

    def remember(request: Any) -> dict[str, Any]:
        request.cache["dummy"] = request.matchdict["value"]
        return {}

    config.add_view(remember, route_name="remember", renderer="json")
    config.add_view(lambda request: {"value": request.cache["dummy"]},
                    route_name="recall", renderer="json")  # fmt: skip
    views(config)
    return TestApp(config.make_wsgi_app())


def test_a_1x_test_suite_reads_mock_cache() -> None:
    with pytest.warns(DeprecationWarning, match="MockCache is deprecated"):
        from pyramid_kvs.testing import MockCache
    app = one_x_app({"kvs.cache": {"kvs": "mock", "key_prefix": "test::", "ttl": 20}})
    app.get("/remember/value")
    assert MockCache.cached_data[b"test::dummy"] == '"value"'  # the stored JSON text
    assert MockCache.last_ttl == 20
    MockCache.cached_data[b"test::dummy"] = '"seeded"'  # a test seeding the store
    assert app.get("/recall").json == {"value": "seeded"}
    del MockCache.cached_data[b"test::dummy"]
    assert b"test::dummy" not in MockCache.cached_data
    assert app.get("/recall").json == {"value": None}
    from pyramid import testing

    testing.tearDown()


def test_a_1x_test_suite_reassigns_cached_data() -> None:
    from pyramid_kvs.testing.legacy import MockCache

    app = one_x_app({"kvs.session": json.dumps({"kvs": "mock", "key_name": "X-Dummy-Header",
                                                 "session_type": "header", "ttl": 20,
                                                 "key_prefix": "header::"})})  # fmt: skip
    MockCache.cached_data = {b"header::x-dummy-header::dummy_key": '{"akey": "a val"}'}
    shown = app.get("/show", headers={"X-Dummy-Header": "dummy_key"})
    assert shown.json == {"data": {"akey": "a val"}, "new": False}  # the 1.x session, moved
    MockCache.cached_data = {}  # the usual reset between 1.x tests
    assert dict(MockCache.cached_data) == {}
    assert app.get("/show", headers={"X-Dummy-Header": "dummy_key"}).json["data"] == {}
    from pyramid import testing

    testing.tearDown()
