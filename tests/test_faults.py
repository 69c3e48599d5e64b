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

from collections.abc import Iterator
from pathlib import Path

import pytest
from pymemcache.client.base import Client as MemcacheClient
from webtest import TestApp

from browsers import (
    KINDS,
    PERL_ID,
    Client,
    assert_no_500_and_bounded,
    assert_nothing_confirmed_lost,
    clients_of,
    make_app,
    one_round,
    time_until_served,
)
from pyramid_kvs.storable import nfreeze
from servers import Server, redis_read_only, start_memcached, start_redis

#: the application answers normally this soon after the store is back (down_for 0.5 s)
BACK_WITHIN = 1.5


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
