"""The Redis Cluster store: the contract on the masters of a cluster, through redis-py.

redis-py's ``RedisCluster`` gives the topology: it finds the nodes from the startup
nodes, keeps the map of hash slots to masters, and a client with its own connection
pool for each node.  The commands are sent here, node by node, because a request's
economy and its outage behaviour depend on how:

* **One round trip per node, not per key.**  A batch is split by the master holding
  each command's key, one pipeline per master.  Keys that share a hash tag share a
  master (``stores.hash_tags``): the rate limit keys of one holder, and a session's
  record with its rate limit keys, so a request's session load and limit check
  still cost one round trip.  redis-py's ``ClusterPipeline`` is not used: it asks a
  node for the keys of every ``EVAL``/``EVALSHA`` it routes (``COMMAND GETKEYS``), a
  round trip more per script.
* **Each node keeps its own state.**  Its script cache: a node that lost its scripts
  answers ``NOSCRIPT`` and gets them in full, the others keep running them by
  digest.  Its circuit breaker: a dead master's keys fail fast with
  ``StoreUnavailable`` while the other masters' keys keep working.
* **Redirections are followed, failures are not retried.**  ``MOVED`` (the slot has
  another master: a resharding, or a failover this client had not seen) updates the
  slot map and sends the command there; ``ASK`` (the key is being migrated) sends it
  to the importing node.  Neither ran the command, so both are followed at once.  A
  command that could not reach its node is never sent again - it may have run - but
  the slot map is read again from another node, so once the cluster has promoted a
  replica the next request goes to it.  ``RedisCluster``'s own retries (ten by
  default, each reading the topology again) are never used: a dead master would cost
  every request as many attempts, a frozen one as many timeouts.
* **A cluster that cannot serve a slot is an outage.**  ``CLUSTERDOWN`` (while a
  failed master's slots have no master yet) is ``StoreUnavailable`` for the keys
  concerned, without opening the breaker of the node that answered it.
* **Connected lazily.**  ``RedisCluster`` reads the topology when it is built, so it is
  built on first use, behind a breaker of its own: an application starts while its
  cluster is unreachable, and its requests see an outage meanwhile.

Masters only: reading from replicas is refused, since sessions and rate limits must
read their own writes and a replica may not have them yet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.cluster import REDIS_ALLOWED_KEYS, ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, RedisClusterException
from redis.retry import Retry

from .base import Script, ScriptArg, StoreUnavailable
from .breaker import CircuitBreaker, pop_down_for
from .redis import (
    BaseRedisStore,
    Command,
    CommandArg,
    RedisBatch,
    ScriptCache,
    bound_timeouts,
    check_connection_options,
    parse_servers_url,
    pipeline_replies,
    scan_server,
    send_pipelined,
    translate_errors,
    translated,
)

T = TypeVar("T")

SCHEME = "redis+cluster"
DEFAULT_PORT = 6379
#: redirections followed for one command before its MOVED or ASK is its error
MAX_REDIRECTIONS = 5
#: options of ``RedisCluster`` itself, with their converters
CLUSTER_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "require_full_coverage": lambda value: _boolean(value),
    "dynamic_startup_nodes": lambda value: _boolean(value),
    "address_remap": lambda value: _callable(value),
}
#: options refused, and why
REFUSED_OPTIONS = {
    "read_from_replicas": "the store reads from masters only: sessions and rate "
    "limits must read their own writes, which a replica may not have yet",
    "load_balancing_strategy": "the store reads from masters only",
    "retry": "the cluster store does not retry a command that could not reach its "
    "node (it follows MOVED and ASK redirections)",
    "retry_on_timeout": "the cluster store does not retry",
    "retry_on_error": "the cluster store does not retry",
    "cluster_error_retry_attempts": "the cluster store does not retry",
    "decode_responses": "must stay false: stores keep bytes",
}
#: connection options every node's client takes (redis-py drops any other silently)
CONNECTION_OPTIONS = frozenset(REDIS_ALLOWED_KEYS) - {
    "host", "port", "db", "retry", "retry_on_timeout", "decode_responses",
    "connection_pool", "connection_pool_class", "redis_connect_func", "nodes_flag",
    "cache", "cache_config", "maint_notifications_config",
}  # fmt: skip


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "yes", "on", "1"}:
        return True
    if text in {"false", "no", "off", "0"}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _callable(value: Any) -> Any:
    if not callable(value):
        raise ValueError(f"expected a function (from Python), got {value!r}")
    return value


@dataclass(frozen=True)
class ClusterOptions:
    """A cluster store's options once normalised."""

    #: where the topology is read first
    startup_nodes: tuple[tuple[str, int], ...]
    #: keyword arguments of ``RedisCluster`` itself
    cluster_kwargs: dict[str, Any]
    #: the connection options of every node's client
    connection_kwargs: dict[str, Any]
    #: seconds a node (or the topology) is left alone after a failure
    down_for: float


def normalise_cluster_options(options: Mapping[str, Any]) -> ClusterOptions:
    """The options of ``kvs_kwargs`` or of a ``redis+cluster://`` URL, normalised.

    Startup nodes come from the URL's hosts, ``startup_nodes`` (``"host:port"``
    strings or ``[host, port]`` pairs) and ``host``/``port``, together.  Timeouts
    are bounded as for one Redis, ``down_for`` goes to the breakers, ``db`` can only
    be 0, and ``require_full_coverage`` defaults to false (a cluster missing some
    slots still serves the others).  Raises ``ValueError`` naming the option.
    """
    kwargs = dict(options)
    nodes: list[tuple[str, int]] = []
    url = kwargs.pop("url", None)
    if url is not None:
        if not isinstance(url, str) or not url.lower().startswith(SCHEME + "://"):
            raise ValueError(f"url: expected a {SCHEME}:// URL, got {url!r}")
        parsed = parse_servers_url(url, DEFAULT_PORT)
        if parsed.path not in ("", "0"):
            raise ValueError(f"a Redis Cluster has database 0 only, got /{parsed.path}")
        nodes += parsed.addresses
        for name, value in parsed.options.items():
            kwargs.setdefault(name, value)  # kvs_kwargs win over the query
    nodes += [_address(node) for node in _as_list(kwargs.pop("startup_nodes", []))]
    if "host" in kwargs or "port" in kwargs:
        host, port = kwargs.pop("host", "localhost"), kwargs.pop("port", DEFAULT_PORT)
        nodes.append(_address(f"{host}:{port}"))
    if not nodes:
        raise ValueError("expected startup nodes: a redis+cluster:// URL or startup_nodes")
    if str(kwargs.pop("db", 0)) != "0":
        raise ValueError("db: a Redis Cluster has database 0 only")
    for name in sorted(set(kwargs) & set(REFUSED_OPTIONS)):
        raise ValueError(f"{name}: {REFUSED_OPTIONS[name]}")
    down_for = pop_down_for(kwargs)
    cluster_kwargs: dict[str, Any] = {"require_full_coverage": False}
    for name, convert in CLUSTER_OPTIONS.items():
        if name in kwargs:
            try:
                cluster_kwargs[name] = convert(kwargs.pop(name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
    unknown = sorted(set(kwargs) - CONNECTION_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown option(s) for a Redis Cluster: {', '.join(unknown)}; expected "
            f"{', '.join(sorted(CLUSTER_OPTIONS))}, down_for or connection options "
            "(socket_timeout, password, ssl...)"
        )
    bound_timeouts(kwargs)
    _check_connection_options(kwargs)
    return ClusterOptions(tuple(dict.fromkeys(nodes)), cluster_kwargs, kwargs, down_for)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [part for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"startup_nodes: expected a list of host:port, got {value!r}")
    return list(value)


def _address(node: Any) -> tuple[str, int]:
    """``"host:port"`` or ``[host, port]`` as an address."""
    if isinstance(node, (list, tuple)) and len(node) == 2:
        node = f"{node[0]}:{node[1]}"
    if isinstance(node, str):
        parsed = parse_servers_url(f"{SCHEME}://{node.strip()}", DEFAULT_PORT)
        if len(parsed.addresses) == 1 and not parsed.path and not parsed.options:
            return parsed.addresses[0]
    raise ValueError(f"startup_nodes: expected host:port, got {node!r}")


def _check_connection_options(kwargs: Mapping[str, Any]) -> None:
    """Build, and drop, one connection with *kwargs*: a bad option fails at start-up.

    The cluster's clients are built on first use, when a mistyped value would
    otherwise surface as a ``TypeError`` in a request.
    """
    client = redis.Redis(**kwargs)
    check_connection_options(client.connection_pool)
    client.close()


def slot_of(key: CommandArg) -> int:
    """The hash slot of *key* (its hash tag's, when it has one)."""
    raw = key if isinstance(key, bytes) else str(key).encode("utf-8", "surrogateescape")
    return key_slot(raw)


def cluster_translated(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``redis.translated``, and ``RedisCluster``'s own failures as outages.

    ``RedisClusterException`` (no startup node answers, a slot no master covers) is
    no ``RedisError``: the cluster cannot serve the call.
    """
    try:
        return translated(function, *args, **kwargs)
    except RedisClusterException as exc:
        raise StoreUnavailable(f"redis cluster: {exc}") from exc


class _SlotMap(Protocol):
    """What the store uses of redis-py's ``NodesManager`` (left untyped by redis-py)."""

    def initialize(self, *, last_failed_node_name: str | None = None) -> None: ...

    def get_node_from_slot(self, slot: int) -> ClusterNode: ...

    def move_slot(self, e: MovedError) -> None: ...


class _Topology(Protocol):
    """What the store uses of ``RedisCluster`` (left untyped by redis-py)."""

    @property
    def nodes_manager(self) -> _SlotMap: ...

    def get_primaries(self) -> list[ClusterNode]: ...

    def get_node(self, host: str, port: int) -> ClusterNode | None: ...

    def get_redis_connection(self, node: ClusterNode) -> redis.Redis: ...

    def close(self) -> None: ...


def _cluster_node(host: str, port: int) -> ClusterNode:
    return ClusterNode(host, port)  # type: ignore[no-untyped-call]


@dataclass
class _Node:
    """What the store keeps of one node: its breaker and the scripts it holds."""

    breaker: CircuitBreaker
    scripts: ScriptCache = field(default_factory=ScriptCache)


class Cluster:
    """The cluster as every prefixed view of one store reaches it.

    Holds ``RedisCluster`` (built on first use), and for each node its ``_Node``.
    ``send`` is the one way commands travel.
    """

    def __init__(self, options: ClusterOptions) -> None:
        self.options = options
        addresses = ",".join(f"{host}:{port}" for host, port in options.startup_nodes)
        self.name = f"redis cluster {addresses}"
        #: building the client and reading the slot map: fail fast after a failure too
        self.topology = CircuitBreaker(self.name, options.down_for)
        self._lock = threading.Lock()
        self._client: _Topology | None = None
        self._nodes: dict[str, _Node] = {}

    def client(self) -> _Topology:
        """``RedisCluster``, built (the topology read) on first use."""
        client = self._client
        if client is None:
            client = self.topology.call(cluster_translated, self._build)
        return client

    def _build(self) -> _Topology:
        with self._lock:
            if self._client is None:
                nodes = [_cluster_node(host, port) for host, port in self.options.startup_nodes]
                self._client = RedisCluster(
                    startup_nodes=nodes,
                    retry=Retry(NoBackoff(), 0),
                    **self.options.cluster_kwargs,
                    **self.options.connection_kwargs,
                )
            return self._client

    def node(self, node: ClusterNode) -> _Node:
        state = self._nodes.get(node.name)
        if state is None:
            with self._lock:
                breaker = CircuitBreaker(f"redis cluster node {node.name}", self.options.down_for)
                state = self._nodes.setdefault(node.name, _Node(breaker))
        return state

    def refresh(self, failed: str | None = None) -> None:
        """Read the slot map again, from another node than *failed* when one answers.

        After a node failed: once the cluster has promoted one of its replicas, the
        map says so.  A refresh that fails leaves the map as it was.
        """
        client = self._client
        if client is None:
            return
        with suppress(StoreUnavailable):  # the breaker logged it; the map stays as it was
            self.topology.call(
                cluster_translated, client.nodes_manager.initialize, last_failed_node_name=failed
            )

    def on_node(self, node: ClusterNode, call: Callable[[redis.Redis, _Node], T]) -> T:
        """*call* with *node*'s client, through its breaker.

        When the node cannot be reached the slot map is read again before the
        ``StoreUnavailable`` is raised - not when the breaker failed the call at once.
        """
        client = self.client()
        state = self.node(node)
        attempted = False

        def attempt() -> T:
            nonlocal attempted
            attempted = True
            return call(client.get_redis_connection(node), state)

        try:
            result: T = state.breaker.call(translated, attempt)
        except StoreUnavailable:
            if attempted:
                self.refresh(failed=node.name)
            raise
        return result

    def primaries(self) -> list[ClusterNode]:
        return self.client().get_primaries()

    def send(self, commands: Sequence[Command[Any]]) -> list[Any]:
        """Send *commands*, one pipeline per node; their replies, errors included.

        Raises ``StoreUnavailable`` when a node they need cannot be reached, or no
        master is known for one's slot.
        """
        client = self.client()
        replies: list[Any] = [None] * len(commands)
        asked: dict[int, AskError] = {}
        todo = list(range(len(commands)))
        for _ in range(MAX_REDIRECTIONS + 1):
            redirected = []
            for (node, asking), indexes in self._route(client, commands, todo, asked).items():
                batch = [commands[index] for index in indexes]
                sent = self.on_node(node, partial(_send_to_node, batch, asking))
                for index, reply in zip(indexes, sent, strict=True):
                    replies[index] = reply
                    asked.pop(index, None)
                    if isinstance(reply, MovedError):
                        self._moved(client, reply)
                        redirected.append(index)
                    elif isinstance(reply, AskError):
                        asked[index] = reply
                        redirected.append(index)
            if not redirected:
                break
            todo = redirected
        return replies

    def _route(
        self,
        client: _Topology,
        commands: Sequence[Command[Any]],
        indexes: Sequence[int],
        asked: Mapping[int, AskError],
    ) -> dict[tuple[ClusterNode, bool], list[int]]:
        """The commands of *indexes* by node, and whether they are sent after ASKING."""
        groups: dict[tuple[ClusterNode, bool], list[int]] = {}
        for index in indexes:
            ask = asked.get(index)
            if ask is not None:
                node = client.get_node(host=ask.host, port=ask.port) or _cluster_node(
                    ask.host, ask.port
                )
                groups.setdefault((node, True), []).append(index)
            else:
                groups.setdefault((self._master_of(client, commands[index]), False), []).append(
                    index
                )
        return groups

    def _master_of(self, client: _Topology, command: Command[Any]) -> ClusterNode:
        key = command.first_key  # every command of the contract has one
        try:
            return client.nodes_manager.get_node_from_slot(slot_of(key or ""))
        except RedisClusterException as exc:  # no master known for the slot
            self.refresh()
            raise StoreUnavailable(f"redis cluster: {exc}") from exc

    def _moved(self, client: _Topology, moved: MovedError) -> None:
        """Point the slot of *moved* at its new master in the slot map."""
        try:
            client.nodes_manager.move_slot(moved)
        except (KeyError, RedisClusterException):  # a slot the map did not know
            self.refresh()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _send_to_node(
    commands: Sequence[Command[Any]], asking: bool, client: redis.Redis, node: _Node
) -> list[Any]:
    if asking:
        return _send_asking(client, commands)
    return send_pipelined(partial(pipeline_replies, client), node.scripts, commands)


def _send_asking(client: redis.Redis, commands: Sequence[Command[Any]]) -> list[Any]:
    """*commands* on the node importing their keys, each after ``ASKING``.

    Scripts go in full: the node may not hold them, and a NOSCRIPT resent without
    ``ASKING`` would be redirected again.
    """
    argvs: list[tuple[CommandArg, ...]] = []
    for command in commands:
        argvs += [("ASKING",), command.argv(by_sha=False)]
    return pipeline_replies(client, argvs)[1::2]


class RedisClusterStore(BaseRedisStore):
    """A Redis Cluster through redis-py's ``RedisCluster``: see the module's docstring."""

    name = SCHEME

    def __init__(self, cluster: Cluster, key_prefix: str = "") -> None:
        super().__init__(key_prefix)
        self.cluster = cluster

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RedisClusterStore:
        return cls(Cluster(normalise_cluster_options(options)))

    def _execute(self, command: Command[T]) -> T:
        (reply,) = self.cluster.send([command])
        if isinstance(reply, Exception):
            raise translate_errors(reply) from reply
        return command.convert(reply)

    def _send_batch(self, commands: Sequence[Command[Any]]) -> list[Any]:
        return self.cluster.send(commands)

    def _script_command(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[ScriptArg],
        convert: Callable[[Any], T],
    ) -> Command[T]:
        """A script's keys must share a slot: a script runs on one node."""
        if len({slot_of(self.full_key(key)) for key in keys}) > 1:
            raise ValueError(
                "the keys of one script must share a hash tag on a Redis Cluster: "
                + ", ".join(keys)
            )
        return super()._script_command(script, keys, args, convert)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """One ``GET`` per key, one pipeline per node holding some of them.

        If a node is down the whole call raises: its keys are not absent, and a
        partial answer would say they are.
        """
        if not keys:
            return []
        with self.batch() as batch:
            found = [batch.get(key) for key in keys]
        return [pending.value for pending in found]

    def _scan_keys(self, match: str, cut: int) -> list[str]:
        """The keys of every master: all of them answer, or ``StoreUnavailable``."""
        keys: list[str] = []
        for node in self.cluster.primaries():
            keys += self.cluster.on_node(node, lambda link, _: scan_server(link, match, cut))
        return keys

    def ping(self) -> None:
        for node in self.cluster.primaries():
            self.cluster.on_node(node, lambda link, _: link.ping())

    def server_info(self) -> dict[str, str]:
        """Every master's address and ``redis_version``: one round trip per master."""
        versions: dict[str, str] = {}
        for node in self.cluster.primaries():
            info = self.cluster.on_node(node, lambda link, _: link.info("server"))
            versions[f"{node.host}:{node.port}"] = str(info.get("redis_version", "unknown"))
        return {
            "store": self.name,
            "server": ", ".join(versions),
            "version": ", ".join(dict.fromkeys(versions.values())),
        }

    def batch(self) -> RedisClusterBatch:
        return RedisClusterBatch(self)

    def shared_state(self) -> object:
        return self.cluster

    def close(self) -> None:
        self.cluster.close()


class RedisClusterBatch(RedisBatch):
    """A batch on a cluster: one pipeline per node its keys live on."""

    sharded = True
