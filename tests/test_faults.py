"""Fault injection through the whole application: real servers stopped, frozen,
turned read-only and killed while requests of every kind go through the WSGI app.

One application uses every component on one store - sessions, the cache, the rate
limiter and the Perl session reader - and its clients keep a record of what the
application confirmed.  Whatever happens to the store, the suite asserts with
numbers:

* no request ever answers 500;
* each request waits at most about one store timeout (1 s by default) however many
  store operations it makes (the bound asserted is 2.5 s, for a loaded machine);
* the application answers normally again within a second of the store's return;
* nothing the application confirmed (a 200 to a session write) is lost, and nothing
  it refused (a 503) was reported saved.

Each test starts servers of its own: the rest of the suite keeps its servers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pymemcache.client.base import Client as MemcacheClient
from pyramid.config import Configurator
from webtest import TestApp

import apps
from apps import json_view
from pyramid_kvs.storable import nfreeze
from servers import Server, redis_read_only, start_memcached, start_redis

SECRET = "a-fault-injection-secret-of-some-length"
#: the most one request may take while its store hangs: one 1 s timeout, and margin
ONE_TIMEOUT_AT_MOST = 2.5
#: the application answers normally this soon after the store is back (down_for 0.5 s)
BACK_WITHIN = 1.5
PERL_ID = "0123456789abcdef0123456789abcdef"


def make_app(url: str) -> TestApp:
    settings = {
        "kvs.session.url": url,
        "kvs.session.secret": SECRET,
        "kvs.cache.url": url,
        "kvs.ratelimit": '{"window": 60, "limit": 100000}',
        "kvs.perlsess.url": url,
        "kvs.perlsess.cookie_name": "CGISESSID",
    }
    return apps.make_app(settings, views)


def views(config: Configurator) -> None:
    def route(name: str, view: Callable[[Any], Any]) -> None:
        json_view(config, name, view)

    def incr(request: Any) -> dict[str, Any]:
        request.session["n"] = request.session.get("n", 0) + 1
        return {"n": request.session["n"]}

    route("incr", incr)
    route("read", lambda request: {"n": request.session.get("n")})
    route("cache_put", lambda request: request.cache.set("shared", 1) or {})
    route("cache_get", lambda request: {"value": request.cache.get("shared")})
    route("perl", lambda request: {"user": request.perlsess.get("user")})
    route("plain", lambda request: {})


KINDS = ("incr", "read", "cache_put", "cache_get", "perl", "plain")
#: the views that need the session: an outage answers 503 there (on_unavailable)
SESSION_KINDS = {"incr", "read"}


@dataclass
class Client:
    """One browser: its own cookies, and what the application confirmed to it."""

    app: TestApp
    #: the last count a 200 confirmed, and the highest count ever attempted
    confirmed: int = 0
    attempted: int = 0
    responses: list[tuple[str, int, float]] = field(default_factory=list)

    def request(self, kind: str) -> Any:
        if kind == "incr":
            self.attempted += 1
        started = time.monotonic()
        response = self.app.get(f"/{kind}", expect_errors=True)
        elapsed = time.monotonic() - started
        self.responses.append((kind, response.status_int, elapsed))
        if kind == "incr" and response.status_int == 200:
            self.confirmed = response.json["n"]
        return response


def clients_of(app: TestApp, count: int) -> list[Client]:
    clients = []
    for _ in range(count):
        own = TestApp(app.app)
        own.set_cookie("CGISESSID", PERL_ID)
        client = Client(own)
        assert client.request("incr").status_int == 200
        clients.append(client)
    return clients


def one_round(clients: list[Client]) -> None:
    for client in clients:
        for kind in KINDS:
            client.request(kind)


def assert_no_500_and_bounded(clients: list[Client]) -> None:
    for client in clients:
        for kind, status, elapsed in client.responses:
            assert status in (200, 503), (kind, status)
            assert status == 200 or kind in SESSION_KINDS, (kind, status)
            assert elapsed < ONE_TIMEOUT_AT_MOST, (kind, elapsed)


def time_until_served(client: Client) -> float:
    """Seconds until a session read answers 200 again (polled every 20 ms)."""
    started = time.monotonic()
    while client.request("read").status_int != 200:
        assert time.monotonic() - started < 10, "the application never came back"
        time.sleep(0.02)
    return time.monotonic() - started


def assert_nothing_confirmed_lost(clients: list[Client]) -> None:
    for client in clients:
        stored = client.request("read").json["n"]
        # a write whose reply never came may have been applied: never fewer than
        # confirmed, never more than attempted
        assert client.confirmed <= stored <= client.attempted


def seed_perl_session(server: Server, backend: str) -> None:
    value = nfreeze({"user": "ada"})
    if backend == "redis":
        import redis

        client = redis.Redis(host=server.host, port=server.port)
        client.set("perlsess::" + PERL_ID, value)
        client.close()
    else:
        mc = MemcacheClient((server.host, server.port))
        mc.set("perlsess::" + PERL_ID, value, noreply=False)
        mc.close()


# -- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[Server]:
    server = start_redis(durable_dir=tmp_path)
    yield server
    server.stop()


def redis_app(server: Server) -> TestApp:
    seed_perl_session(server, "redis")
    return make_app(f"redis://{server.address}/0")


def test_a_frozen_redis(durable_redis: Server) -> None:
    app = redis_app(durable_redis)
    clients = clients_of(app, 2)
    assert clients[0].request("perl").json == {"user": "ada"}
    durable_redis.freeze()
    try:
        one_round(clients)
    finally:
        durable_redis.thaw()
    assert_no_500_and_bounded(clients)
    statuses = {kind: status for kind, status, _ in clients[1].responses[-len(KINDS) :]}
    assert statuses == {"incr": 503, "read": 503, "cache_put": 200, "cache_get": 200,
                        "perl": 200, "plain": 200}  # fmt: skip
    assert time_until_served(clients[0]) < BACK_WITHIN
    assert_nothing_confirmed_lost(clients)
    assert clients[0].request("perl").json == {"user": "ada"}


def test_a_redis_stopped_and_restarted(durable_redis: Server) -> None:
    app = redis_app(durable_redis)
    clients = clients_of(app, 3)
    for client in clients:
        client.request("incr")
    durable_redis.terminate()  # SIGTERM: it flushes its append-only file and exits
    one_round(clients)
    assert_no_500_and_bounded(clients)
    assert all(
        status == 503 for _, status, _ in clients[0].responses[-len(KINDS) :][:2]
    )  # the session views
    durable_redis.restart()
    assert time_until_served(clients[0]) < BACK_WITHIN
    assert_nothing_confirmed_lost(clients)
    for client in clients:  # and the sessions carry on
        assert client.request("incr").json == {"n": client.confirmed}


def test_a_redis_turned_read_only(durable_redis: Server) -> None:
    app = redis_app(durable_redis)
    clients = clients_of(app, 2)
    clients[0].request("cache_put")
    redis_read_only(durable_redis, True)  # a replica after a failover
    try:
        before = clients[0].confirmed
        write = clients[0].request("incr")
        assert write.status_int == 503  # READONLY: not saved, and said so
        assert "Set-Cookie" not in write.headers  # the client's cookie is untouched
        assert clients[0].request("read").status_int == 503  # the load renews the expiry
        assert clients[0].request("cache_get").json == {"value": 1}  # reads still work
        assert clients[0].request("cache_put").status_int == 200  # a skipped write
        assert clients[0].request("perl").json == {"user": "ada"}
        assert clients[0].request("plain").status_int == 200  # on_error = allow
        newcomer = Client(TestApp(app.app))
        first = newcomer.request("incr")  # a new session: its write fails in a batch
        assert first.status_int == 503 and "Set-Cookie" not in first.headers
        one_round(clients)
    finally:
        redis_read_only(durable_redis, False)
    assert_no_500_and_bounded(clients)
    assert time_until_served(clients[0]) < BACK_WITHIN
    assert clients[0].request("read").json == {"n": before}  # the refused writes: absent
    assert_nothing_confirmed_lost(clients)


# -- memcached ----------------------------------------------------------------------------------


@pytest.fixture
def memcached_pair() -> Iterator[tuple[Server, Server]]:
    first, second = start_memcached(), start_memcached()
    yield first, second
    first.stop()
    second.stop()


def test_a_frozen_memcached(memcached_pair: tuple[Server, Server]) -> None:
    server = memcached_pair[0]
    seed_perl_session(server, "memcached")
    app = make_app(f"memcached://{server.address}")
    clients = clients_of(app, 2)
    server.freeze()
    try:
        one_round(clients)
    finally:
        server.thaw()
    assert_no_500_and_bounded(clients)
    assert time_until_served(clients[0]) < BACK_WITHIN
    assert_nothing_confirmed_lost(clients)


def test_a_dead_memcached_in_a_pool(memcached_pair: tuple[Server, Server]) -> None:
    for server in memcached_pair:
        seed_perl_session(server, "memcached")
    app = make_app("memcached://" + ",".join(server.address for server in memcached_pair))
    clients = clients_of(app, 24)  # their sessions spread over both servers (1 - 1e-7)
    dead, alive = memcached_pair
    dead.kill()
    try:
        for client in clients:
            client.request("read")
        outcomes = [client.responses[-1][1] for client in clients]
        # a session on the dead server answers the outage, never an empty session
        # (a silent logout); the sessions on the other server carry on
        assert set(outcomes) == {200, 503}
        for client, status in zip(clients, outcomes, strict=True):
            if status == 200:
                assert client.responses[-1] and client.request("read").json == {
                    "n": client.confirmed
                }
        one_round(clients)
    finally:
        dead.restart()
    assert_no_500_and_bounded(clients)
    # memcached keeps nothing across a restart: the dead server's sessions are gone,
    # as they would be with any memcached; the others lost nothing
    for client, status in zip(clients, outcomes, strict=True):
        if status == 200:
            assert client.request("read").json == {"n": client.confirmed}
    assert alive.address  # the live server served throughout
