"""Failovers through the whole application: a master SIGKILLed under a Redis Cluster and
under Redis Sentinel, one server of a memcached pool of three killed.

The application of the fault tests (``browsers.py``: sessions, the cache, the rate
limiter and Perl sessions on one store) keeps serving while a dozen browsers make
requests of every kind, and the suite asserts with numbers:

* no request ever answers 500, nor waits more than about one timeout;
* sessions answer the outage (503) only while their data has no master, the cache
  misses meanwhile, the rate limiter lets requests through (``on_error = allow``);
* service is back soon after the engine's own failover - the replica promoted by
  the cluster, or named by the sentinels - without restarting the application;
* what was replicated before the failover is read after it: every session's
  count as confirmed, the Perl session.

Each test fails over servers of its own, never the ones the rest of the suite
shares.  The timings it measures are printed (``pytest -s``): README quotes them.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
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
from pyramid_kvs import get_components
from pyramid_kvs.settings import parse_store_url
from pyramid_kvs.storable import nfreeze
from pyramid_kvs.stores import create_store
from servers import (
    RedisClusterServers,
    RedisSentinelServers,
    Server,
    admin,
    start_memcached,
    start_redis_cluster,
    start_redis_sentinel,
)

#: the application answers normally this soon after the engine's failover: the
#: breaker's down_for (0.5 s), a round of requests of every client, and margin
SERVED_WITHIN = 2.0
#: how long a failover may take before the test gives up
FAILOVER_AT_MOST = 20.0
#: browsers: enough for every master of a cluster to hold sessions of some
BROWSERS = 12


class Watch(threading.Thread):
    """Polls *done* every 10 ms in the background; ``at`` is when it first held."""

    def __init__(self, done: Callable[[], bool]) -> None:
        super().__init__(daemon=True)
        self.done = done
        self.at: float | None = None
        self._ended = threading.Event()

    def run(self) -> None:
        while not self._ended.is_set():
            try:
                if self.done():
                    self.at = time.monotonic()
                    return
            except Exception:  # a server answering nothing yet
                pass
            time.sleep(0.01)

    def end(self) -> None:
        self._ended.set()
        self.join()


#: the applications the test built: their connections closed after it
built: list[TestApp] = []


@pytest.fixture(autouse=True)
def close_applications() -> Iterator[None]:
    yield
    while built:
        get_components(built.pop().app.registry).close()


def application(url: str) -> TestApp:
    app = make_app(url)
    built.append(app)
    return app


def seed(url: str) -> None:
    """The Perl session the browsers read, written as the Perl side writes it."""
    name, options = parse_store_url(url)
    store = create_store(name, options)
    store.with_prefix("perlsess::").set(PERL_ID, nfreeze({"user": "ada"}))
    store.close()


def session_key(client: Client) -> str:
    """The store key of *client*'s session record."""
    factory = get_components(client.app.app.registry).session_factory
    assert factory is not None
    cookie = client.app.cookies["session_id"]
    return "session::" + factory.storage_key(cookie.strip('"').partition(".")[0])


@dataclass
class Failover:
    """What the browsers saw while the engine failed over."""

    #: seconds from the kill to the engine's failover
    took: float
    #: when the failover was observed (``time.monotonic``)
    at: float
    #: (seconds after the kill, browser, kind of request, status) of every request,
    #: a cache read that missed counting as the status "miss"
    timeline: list[tuple[float, Client, str, int | str]] = field(default_factory=list)

    def window(self, clients: list[Client], status: int | str) -> tuple[float, float] | None:
        """When *clients* first and last answered *status*, in seconds after the kill."""
        times = [at for at, client, _, got in self.timeline if client in clients and got == status]
        return (round(min(times), 2), round(max(times), 2)) if times else None


def through_failover(clients: list[Client], kill: Callable[[], None], watch: Watch) -> Failover:
    """Kill, and keep every browser busy until the engine has failed over."""
    timeline: list[tuple[float, Client, str, int | str]] = []
    kill()
    killed_at = time.monotonic()
    watch.start()
    while watch.at is None and time.monotonic() - killed_at < FAILOVER_AT_MOST:
        for client in clients:
            for kind in KINDS:
                response = client.request(kind)
                status: int | str = response.status_int
                if kind == "cache_get" and response.json == {"value": None}:
                    status = "miss"
                timeline.append((time.monotonic() - killed_at, client, kind, status))
    watch.end()
    assert watch.at is not None, "the engine never failed over"
    return Failover(watch.at - killed_at, watch.at, timeline)


def report(name: str, clients: list[Client], **numbers: float) -> None:
    took = [elapsed for client in clients for _, _, elapsed in client.responses]
    outages = sum(status == 503 for client in clients for _, status, _ in client.responses)
    print(
        f"\n{name}: "
        + ", ".join(f"{key} {value:.2f} s" for key, value in numbers.items())
        + f"; {len(took)} requests, {outages} answered 503, slowest {max(took) * 1000:.0f} ms,"
        f" median {statistics.median(took) * 1000:.1f} ms"
    )


def assert_all_served(clients: list[Client]) -> None:
    """A round where every request of every browser answers 200, sessions included,
    the cache hits and the Perl session reads as it was written."""
    for client in clients:
        for kind in KINDS:
            response = client.request(kind)
            assert response.status_int == 200, (kind, response.status_int)
        assert client.request("cache_get").json == {"value": 1}
        assert client.request("perl").json == {"user": "ada"}


# -- Redis Cluster ---------------------------------------------------------------------------


@pytest.fixture
def failing_cluster() -> Iterator[RedisClusterServers]:
    """A cluster of its own whose masters are given up after one second of silence."""
    cluster = start_redis_cluster(node_timeout_ms=1000)
    yield cluster
    cluster.stop()


def replica_of(cluster: RedisClusterServers, master: Server) -> Server:
    for node in cluster.nodes:
        client = admin(node)
        try:
            info = client.info("replication")
        finally:
            client.close()
        if info["role"] == "slave" and int(info["master_port"]) == master.port:
            return node
    raise AssertionError(f"{master.address} has no replica")


def replicated(masters: list[Server]) -> None:
    """Every write so far acknowledged by each master's replica (``WAIT``)."""
    for master in masters:
        client = admin(master)
        try:
            assert client.execute_command("WAIT", 1, 5000) == 1
        finally:
            client.close()


def test_a_cluster_master_killed(failing_cluster: RedisClusterServers) -> None:
    cluster = failing_cluster
    seed(cluster.url)
    clients = clients_of(application(cluster.url), BROWSERS)
    for client in clients:
        client.request("incr")
    clients[0].request("cache_put")
    replicated(cluster.masters())
    holders: dict[str, list[Client]] = {}
    for client in clients:
        holders.setdefault(cluster.master_of(session_key(client)).address, []).append(client)
    victim = cluster.by_address(max(holders, key=lambda address: len(holders[address])))
    affected = holders[victim.address]
    replica = replica_of(cluster, victim)
    assert len(holders) == 3  # sessions on every master

    def promoted() -> bool:
        client = admin(replica)
        try:
            state = client.execute_command("CLUSTER INFO")["cluster_state"]
            return bool(client.info("replication")["role"] == "master" and state == "ok")
        finally:
            client.close()

    failover = through_failover(clients, victim.kill, Watch(promoted))
    time_until_served(affected[0])
    served_after = time.monotonic() - failover.at
    others = [client for client in clients if client not in affected]
    report(
        "cluster master killed",
        clients,
        failover=failover.took,
        **{"served again after the failover": served_after},
    )
    print(
        f"  after the kill: 503s of the killed master's sessions {failover.window(affected, 503)},"
        f" of the other masters' {failover.window(others, 503)};"
        f" cache misses {failover.window(clients, 'miss')}"
    )
    assert_no_500_and_bounded(clients)
    assert failover.window(affected, 503)  # their sessions had no master a while: said so
    assert served_after < SERVED_WITHIN
    assert_all_served(clients)  # every session back, on every master
    assert_nothing_confirmed_lost(clients)  # replicated before: still there
    for client in affected:
        assert client.request("read").json["n"] >= 2


# -- Redis Sentinel ------------------------------------------------------------------------------


@pytest.fixture
def failing_sentinel() -> Iterator[RedisSentinelServers]:
    """A service of its own whose master is given up after one second of silence."""
    servers = start_redis_sentinel(down_after_ms=1000)
    yield servers
    servers.stop()


def test_a_sentinel_master_killed(failing_sentinel: RedisSentinelServers) -> None:
    servers = failing_sentinel
    seed(servers.url)
    clients = clients_of(application(servers.url), BROWSERS)
    for client in clients:
        client.request("incr")
    clients[0].request("cache_put")
    replicated([servers.master])

    def named() -> bool:  # by one of the sentinels: the store asks each in turn
        return any(
            servers.current_master(sentinel) is servers.replica for sentinel in servers.sentinels
        )

    failover = through_failover(clients, servers.master.kill, Watch(named))
    time_until_served(clients[0])
    served_after = time.monotonic() - failover.at
    report(
        "sentinel master killed",
        clients,
        failover=failover.took,
        **{"served again after the failover": served_after},
    )
    print(
        f"  after the kill: 503s {failover.window(clients, 503)},"
        f" cache misses {failover.window(clients, 'miss')}"
    )
    assert_no_500_and_bounded(clients)
    assert failover.window(clients, 503)
    assert served_after < SERVED_WITHIN
    assert_all_served(clients)
    assert_nothing_confirmed_lost(clients)
    for client in clients:
        assert client.request("read").json["n"] >= 2


# -- a memcached pool of three ---------------------------------------------------------------


@pytest.fixture
def memcached_trio() -> Iterator[list[Server]]:
    servers = [start_memcached() for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()


def test_a_memcached_pool_of_three_loses_one(memcached_trio: list[Server]) -> None:
    url = "memcached://" + ",".join(server.address for server in memcached_trio)
    seed(url)
    clients = clients_of(application(url), BROWSERS)
    dead = memcached_trio[0]
    dead.kill()
    try:
        started = time.monotonic()
        one_round(clients)
        outage = time.monotonic() - started
        # each browser's "read" of the round: a session on the dead server answers
        # the outage, never an empty session; the sessions on the two others carry on
        outcomes = [(client, client.responses[KINDS.index("read") - len(KINDS)][1])
                    for client in clients]  # fmt: skip
        assert {status for _, status in outcomes} == {200, 503}
        for client, status in outcomes:
            if status == 200:
                assert client.request("read").json == {"n": client.confirmed}
    finally:
        dead.restart()
    restarted = time.monotonic()
    lost = [client for client, status in outcomes if status == 503]
    served = time_until_served(lost[0])
    report(
        "memcached pool of three, one killed",
        clients,
        **{"a round during the outage": outage, "served after the restart": served},
    )
    assert_no_500_and_bounded(clients)
    assert time.monotonic() - restarted < SERVED_WITHIN
    # memcached keeps nothing across a restart: the dead server's sessions are gone,
    # as with any memcached; the other two lost nothing
    for client, status in outcomes:
        expected = client.confirmed if status == 200 else None
        assert client.request("read").json == {"n": expected}
