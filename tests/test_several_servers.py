"""Every component on stores of several servers, through the WSGI application.

Redis Cluster (three masters, a replica each), Redis Sentinel (a master, its replica,
three sentinels) and a pool of three memcached servers: sessions, the cache, the rate
limiter and the Perl session reader behave there as on one server, in both forms of
the settings, and a request costs the same round trips as on one server - counted
at the client libraries, a pipeline to one node counting once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyramid.config import Configurator
from webtest import TestApp

import apps
from apps import json_view
from conftest import SEVERAL_SERVERS
from pyramid_kvs import get_components
from pyramid_kvs.settings import parse_store_url
from pyramid_kvs.storable import nfreeze
from pyramid_kvs.stores import Store, create_store
from roundtrips import count_round_trips

SECRET = "a-test-secret-of-at-least-32-characters"
PERL_ID = "0123456789abcdef0123456789abcdef"
REDIS_LIKE = ("redis+cluster", "redis+sentinel")


def views(config: Configurator) -> None:
    def route(name: str, view: Callable[[Any], Any], pattern: str | None = None) -> None:
        json_view(config, name, view, pattern)

    def incr(request: Any) -> dict[str, Any]:
        request.session["n"] = request.session.get("n", 0) + 1
        return {"n": request.session["n"]}

    def login(request: Any) -> dict[str, Any]:
        request.session.regenerate_id()
        request.session["user"] = request.matchdict["user"]
        return dict(request.session)

    def logout(request: Any) -> dict[str, Any]:
        request.session.invalidate()
        return {}

    def cache_many(request: Any) -> dict[str, Any]:
        keys = request.params.getall("key")
        return request.cache.get_many(keys)  # type: ignore[no-any-return]

    def cache_put(request: Any) -> dict[str, Any]:
        request.cache.set_many(json.loads(request.body))
        return {}

    route("plain", lambda request: {})
    route("incr", incr)
    route("read", lambda request: dict(request.session))
    route("login", login, "/login/{user}")
    route("logout", logout)
    route("bind", bind)
    route("cache_get", lambda request: {"value": request.cache.get("shared")})
    route("cache_set", lambda request: request.cache.set("shared", 1) or {})
    route("cache_many", cache_many)
    route("cache_put", cache_put)
    route("cache_keys", lambda request: sorted(request.cache.list_keys()))
    route("perl", lambda request: {"user": request.perlsess.get("user")})


def bind(request: Any) -> dict[str, Any]:
    request.session.update_session_token("X-Auth-Token", request.params["token"])
    request.session["user"] = "ada"
    return dict(request.session)


def settings_of(url: str, form: str, **more: str) -> dict[str, Any]:
    """Every component on *url*, in the flat keys or inside the JSON form."""
    components = {
        "session": {"secret": SECRET},
        "cache": {},
        "ratelimit": {"limits": "1000/hour;100000/day"},
        "perlsess": {"cookie_name": "CGISESSID"},
    }
    settings: dict[str, Any] = {}
    for name, own in components.items():
        if form == "json":
            settings[f"kvs.{name}"] = json.dumps({"url": url, **own})
        else:
            settings[f"kvs.{name}.url"] = url
            settings.update({f"kvs.{name}.{key}": value for key, value in own.items()})
    settings.update(more)
    return settings


#: what the test built: closed after it (their connections are the test's)
built: list[Store | TestApp] = []


@pytest.fixture(autouse=True)
def close_what_was_built() -> Iterator[None]:
    yield
    while built:
        item = built.pop()
        if isinstance(item, TestApp):
            get_components(item.app.registry).close()
        else:
            item.close()


def app_of(settings: dict[str, Any]) -> TestApp:
    app = apps.make_app(settings, views)
    built.append(app)
    return app


def make_app(url: str, form: str = "flat", **more: str) -> TestApp:
    return app_of(settings_of(url, form, **more))


def store_of(url: str) -> Store:
    name, options = parse_store_url(url)
    store = create_store(name, options)
    built.append(store)
    return store


def warm(app: TestApp) -> None:
    """Open a connection to every server, so that counts leave out the handshakes."""
    components = get_components(app.app.registry)
    for store in components.stores.values():
        store.ping()


def cookie_of(response: Any) -> str | None:
    for header in response.headers.getall("Set-Cookie"):
        name, _, rest = header.partition("=")
        if name == "session_id":
            return rest.split(";")[0]
    return None


# -- the components ------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["flat", "json"])
@pytest.mark.parametrize("backend", SEVERAL_SERVERS)
def test_every_component_in_both_forms_of_settings(
    backend: str, backend_url: str, form: str
) -> None:
    store_of(backend_url).with_prefix("perlsess::").set(PERL_ID, nfreeze({"user": "ada"}))
    app = make_app(backend_url, form)
    components = get_components(app.app.registry)
    assert len(components.stores) == 1  # one client shared by the four components
    (store,) = components.stores.values()
    assert store.name == backend.replace("-pool", "")
    app.set_cookie("CGISESSID", PERL_ID)
    assert app.get("/incr").json == {"n": 1}
    assert app.get("/incr").json == {"n": 2}
    assert app.get("/read").json == {"n": 2}
    assert app.get("/cache_get").json == {"value": None}
    app.get("/cache_set")
    assert app.get("/cache_get").json == {"value": 1}
    assert app.get("/perl").json == {"user": "ada"}
    response = app.get("/plain")
    assert response.headers["RateLimit-Policy"] == (
        '"default-3600s";q=1000;w=3600, "default-86400s";q=100000;w=86400'
    )
    # seven requests of the session: the first one, without a cookie, was the address's
    assert response.headers["X-RateLimit-Remaining"] == str(1000 - 7)


@pytest.mark.parametrize("backend", SEVERAL_SERVERS)
def test_sessions_login_logout_and_header_tokens(backend: str, backend_url: str) -> None:
    app = make_app(backend_url)
    app.get("/incr")
    before = cookie_of(app.get("/incr"))
    logged_in = app.get("/login/ada")
    after = cookie_of(logged_in)
    assert after and after != before
    assert logged_in.json == {"n": 2, "user": "ada"}
    assert app.get("/read").json == {"n": 2, "user": "ada"}
    thief = TestApp(app.app)
    thief.set_cookie("session_id", before or "")
    assert thief.get("/read").json == {}  # the old record was deleted
    assert cookie_of(app.get("/logout")) == ""
    assert app.get("/read").json == {}
    headers = make_app(
        backend_url,
        **{"kvs.session.session_type": "header", "kvs.session.key_name": "X-Auth-Token"},
    )
    token = {"X-Auth-Token": "a-token-of-the-application"}
    assert headers.get("/bind", {"token": token["X-Auth-Token"]}).json == {"user": "ada"}
    assert headers.get("/read", headers=token).json == {"user": "ada"}


@pytest.mark.parametrize("backend", SEVERAL_SERVERS)
def test_the_cache_across_servers(backend: str, backend_url: str) -> None:
    app = make_app(backend_url)
    values = {f"key{index}": index for index in range(30)}
    app.post("/cache_put", json.dumps(values))
    keys = [*values, "absent"]
    assert app.get("/cache_many", {"key": keys}).json == values
    if backend == "memcached-pool":
        return  # memcached cannot list its keys
    assert app.get("/cache_keys").json == sorted(values)


@pytest.mark.parametrize("algorithm", ["fixed", "sliding", "gcra"])
@pytest.mark.parametrize("backend", SEVERAL_SERVERS)
def test_several_limits_all_or_nothing(backend: str, backend_url: str, algorithm: str) -> None:
    app = make_app(
        backend_url,
        **{"kvs.ratelimit.limits": "2/hour;3/day", "kvs.ratelimit.algorithm": algorithm},
    )
    app.get("/incr")  # counted against the address: the request had no session yet
    app.get("/plain")
    app.get("/plain")
    refused = app.get("/plain", status=429)  # the session's third request this hour
    assert int(refused.headers["Retry-After"]) > 0
    assert '"default-86400s";r=1' in refused.headers["RateLimit"]  # the refusal: not counted
    stranger = TestApp(app.app, extra_environ={"REMOTE_ADDR": "192.0.2.9"})
    stranger.get("/plain")
    stranger.get("/plain")
    stranger.get("/plain", status=429)


def test_a_holders_limits_and_its_session_share_a_node_of_the_cluster(
    redis_cluster_url: str,
) -> None:
    app = make_app(redis_cluster_url)
    app.get("/incr")
    app.get("/plain")
    store = store_of(redis_cluster_url)
    (record,) = store.with_prefix("session::").scan()
    limits = list(store.with_prefix("ratelimit::").scan("session:*"))
    assert len(limits) == 2 and all(key.startswith("session:" + record) for key in limits)
    assert record.startswith("{") and record.endswith("}")  # the whole key is its tag


# -- round trips ------------------------------------------------------------------------------


def round_trips(url: str, address: str) -> dict[str, int]:
    """The round trips of the requests of README's tables, on the store of *url*.

    The client has the *address* given: a holder with no counter yet.
    """
    counts: dict[str, int] = {}

    def count(name: str, app: TestApp, path: str, **options: Any) -> Any:
        with count_round_trips() as trips:
            response = app.get(path, **options)
        counts[name] = trips.total
        return response

    sessions = app_of({"kvs.session.url": url, "kvs.session.secret": SECRET})
    warm(sessions)
    count("session: nothing", sessions, "/plain")
    count("session: new, written", sessions, "/incr")
    count("session: read", sessions, "/read")
    count("session: written", sessions, "/incr")
    count("session: invalidated", sessions, "/logout")
    both = make_app(url)
    both.extra_environ = {"REMOTE_ADDR": address}
    warm(both)
    count("rate limit, no session", both, "/plain")
    both.get("/incr")
    count("rate limit + session read", both, "/read")
    count("rate limit + session written", both, "/incr")
    count("rate limit, session untouched", both, "/plain")
    cache = app_of({"kvs.cache.url": url})
    warm(cache)
    cache.get("/cache_set")
    count("cache hit", cache, "/cache_get")
    return counts


@pytest.mark.parametrize("backend", SEVERAL_SERVERS)
def test_round_trips_are_those_of_one_server(
    backend: str, backend_url: str, request: pytest.FixtureRequest
) -> None:
    one_server = "redis_url" if backend in REDIS_LIKE else "memcached_address"
    reference = request.getfixturevalue(one_server)
    if backend == "memcached-pool":
        reference = "memcached://" + reference
    expected = round_trips(reference, "192.0.2.10")
    assert round_trips(backend_url, "192.0.2.20") == expected
    if backend in REDIS_LIKE:
        assert expected == {
            "session: nothing": 0,
            "session: new, written": 1,
            "session: read": 1,
            "session: written": 2,
            "session: invalidated": 1,
            "rate limit, no session": 1,
            "rate limit + session read": 1,
            "rate limit + session written": 2,
            "rate limit, session untouched": 1,
            "cache hit": 1,
        }
