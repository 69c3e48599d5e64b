"""pyramid_kvs.testing: an application's own tests run with no server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pyramid import testing
from pyramid.config import Configurator
from webtest import TestApp

import apps
from pyramid_kvs import get_components
from pyramid_kvs.testing import MockStore, mock_store
from pyramid_kvs.testing import sessions as mock_sessions


def test_every_store_becomes_a_mock_and_records_ttls() -> None:
    # production settings name a Redis that does not exist here
    config = testing.setUp(
        settings={"kvs.cache": '{"kvs": "redis", "kvs_kwargs": {"host": "nowhere"}, "ttl": 30}'}
    )
    config.include("pyramid_kvs.testing")
    config.add_route("home", "/")

    def view(request: Any) -> dict[str, Any]:
        request.cache["answer"] = 42
        request.cache.set("short", 1, ttl=5)
        return {"answer": request.cache["answer"]}

    config.add_view(view, route_name="home", renderer="json")
    app = TestApp(config.make_wsgi_app())
    assert app.get("/").json == {"answer": 42}
    store = mock_store(config.registry, "cache")
    assert isinstance(store, MockStore)
    assert store.data == {"answer": b"42", "short": b"1"}
    assert store.last_ttl("answer") == 30
    assert store.last_ttl("short") == 5
    assert ("set", "cache::answer") in store.calls
    testing.tearDown()


def test_mock_can_be_named_in_the_settings() -> None:
    config = testing.setUp(settings={"kvs.cache": '{"kvs": "mock"}'})
    config.include("pyramid_kvs")
    config.commit()
    assert isinstance(mock_store(config.registry), MockStore)
    testing.tearDown()


def test_mock_store_of_a_real_store_is_an_error(redis_url: str) -> None:
    config = testing.setUp(settings={"kvs.cache.url": redis_url})
    config.include("pyramid_kvs")
    config.commit()
    with pytest.raises(TypeError, match="not a mock store"):
        mock_store(config.registry)
    testing.tearDown()


def test_every_operation_is_recorded_with_its_ttl() -> None:
    config = testing.setUp(settings={"kvs.cache": '{"kvs": "redis", "ttl": 30}'})
    config.include("pyramid_kvs.testing")
    config.commit()
    cache = get_components(config.registry).cache
    assert cache is not None
    cache.set_many({"a": 1, "b": 2}, ttl=60)
    cache.get_many(["a", "b"])
    cache.incr("hits")
    cache.incr("hits", ttl=5)  # an existing counter keeps its expiry
    cache.add("lock", 1, ttl=10)
    cache.touch("a", ttl=90)
    cache.pop("b")
    cache.list_keys()
    del cache["lock"]
    store = mock_store(config.registry, "cache")
    assert store.get_and_touch("hits", 45) == b"2" and store.get_and_touch("nothing", 45) is None
    assert store.calls[-2:] == [
        ("get_and_touch", "cache::hits"),
        ("get_and_touch", "cache::nothing"),
    ]
    del store.calls[-2:]
    assert store.calls == [
        ("set_many", "cache::a"),
        ("set_many", "cache::b"),
        ("get_many", "cache::a"),
        ("get_many", "cache::b"),
        ("incr", "cache::hits"),
        ("incr", "cache::hits"),
        ("add", "cache::lock"),
        ("touch", "cache::a"),
        ("pop", "cache::b"),
        ("scan", "cache::*"),
        ("delete", "cache::lock"),
    ]
    assert store.last_ttl("a") == 90 and store.last_ttl("hits") == 45
    assert store.data == {"a": b"1", "hits": b"2"} and store.records == {}
    testing.tearDown()


SESSION_SETTINGS = {
    # production settings: a Redis that does not exist here
    "kvs.session": '{"kvs": "redis", "kvs_kwargs": {"host": "nowhere"}, "ttl": 600}',
    "kvs.session.secret": "a-test-secret-of-at-least-32-characters",
}


def session_views(config: Configurator) -> None:
    config.set_default_csrf_options(require_csrf=True)

    def whoami(request: Any) -> dict[str, Any]:
        return {"user": request.session.get("user")}

    def add_to_cart(request: Any) -> dict[str, Any]:
        request.session.setdefault("cart", []).append(int(request.POST["item"]))
        request.session.flash("added")
        return {"cart": request.session["cart"]}

    def login(request: Any) -> dict[str, Any]:
        request.session.regenerate_id()
        request.session["user"] = request.POST["user"]
        return {}

    apps.json_view(config, "whoami", whoami)
    apps.json_view(config, "cart", add_to_cart, request_method="POST")
    apps.json_view(config, "login", login, request_method="POST")


def test_sessions_are_seeded_and_read_by_cookie() -> None:
    config = apps.configure(SESSION_SETTINGS, session_views, include="pyramid_kvs.testing")
    app = TestApp(config.make_wsgi_app())
    sessions = mock_sessions(config.registry)
    cookie = sessions.seed({"user": "ada"}, csrf_token="a-token")
    app.set_cookie(sessions.cookie_name, cookie)
    assert app.get("/whoami").json == {"user": "ada"}
    app.post("/cart", {"item": "3"}, status=400)  # no CSRF token
    assert app.post("/cart", {"item": "3", "csrf_token": "a-token"}).json == {"cart": [3]}
    assert sessions.data(cookie) == {"user": "ada", "_csrf_token": "a-token", "cart": [3],
                                     "_flash:": ["added"]}  # fmt: skip
    assert sessions.flashes(cookie) == ["added"] and sessions.csrf_token(cookie) == "a-token"
    assert sessions.last_ttl(cookie) == 600
    assert sessions.calls(cookie) == [
        "replace_record",  # the seed
        "load_record",  # GET /whoami
        "load_record",  # the refused POST
        "load_record",  # the POST
        "update_record",  # only the changed keys
    ]
    # a login rotates the id: the old cookie names no session any more
    app.post("/login", {"user": "bob", "csrf_token": "a-token"})
    rotated = app.cookies[sessions.cookie_name]
    assert cookie not in sessions and rotated in sessions
    assert sessions.data(rotated) == {"user": "bob", "_csrf_token": "a-token", "cart": [3],
                                      "_flash:": ["added"]}  # fmt: skip
    assert sessions.all() == [sessions.data(rotated)] and len(sessions) == 1
    assert sessions.created(rotated) == sessions.created(rotated.partition(".")[0])  # raw id
    # the records themselves, for whoever wants them: hashed keys, encoded fields
    records = mock_store(config.registry, "session").records
    assert len(records) == 1 and rotated.partition(".")[0] not in next(iter(records))
    assert next(iter(records.values()))["user"] == b'"bob"'


def test_seeding_header_sessions_and_the_lifetime() -> None:
    settings = {**SESSION_SETTINGS, "kvs.session.session_type": "header",
                "kvs.session.key_name": "X-Auth-Token", "kvs.session.lifetime": "500"}  # fmt: skip
    config = apps.configure(settings, session_views, include="pyramid_kvs.testing")
    app = TestApp(config.make_wsgi_app())
    sessions = mock_sessions(config.registry)
    token = sessions.seed({"user": "ada"}, token="api-token-1")
    assert token == "api-token-1" and sessions.cookie_name == "X-Auth-Token"
    assert app.get("/whoami", headers={"X-Auth-Token": token}).json == {"user": "ada"}
    assert sessions.data(token) == {"user": "ada"} and sessions.calls(token) == [
        "replace_record",
        "load_record",
    ]
    generated = sessions.seed({"user": "bob"})
    assert app.get("/whoami", headers={"X-Auth-Token": generated}).json == {"user": "bob"}
    # a session first stored 600 seconds ago is past its 500-second lifetime
    old = sessions.seed({"user": "eve"}, created=time.time() - 600)
    assert app.get("/whoami", headers={"X-Auth-Token": old}).json == {"user": None}
    with pytest.raises(ValueError, match="not a valid session token"):
        sessions.seed({}, token="bad token\n")


def test_sessions_refuse_what_they_cannot_mean() -> None:
    config = apps.committed(SESSION_SETTINGS, include="pyramid_kvs.testing")
    sessions = mock_sessions(config.registry)
    with pytest.raises(ValueError, match="cookie sessions get an id"):
        sessions.seed({}, token="abc")
    with pytest.raises(ValueError, match="reserved"):
        sessions.seed({"__created__": 1})
    with pytest.raises(ValueError, match="signed with another secret"):
        sessions.data(sessions.seed({}) + "x")
    assert sessions.data("A" * 43) is None and "A" * 43 not in sessions
    with pytest.raises(LookupError, match="not configured"):
        mock_sessions(apps.committed({}, include="pyramid_kvs.testing").registry)
