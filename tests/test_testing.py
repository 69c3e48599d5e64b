"""pyramid_kvs.testing: an application's own tests run with no server."""

from __future__ import annotations

from typing import Any

import pytest
from pyramid import testing
from webtest import TestApp

from pyramid_kvs.testing import MockStore, mock_store


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
