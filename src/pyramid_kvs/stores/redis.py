"""The Redis store, on redis-py (with hiredis when installed).

Each contract operation is one Redis command, or a short Lua script where an atomic
read-modify-write needs several (``incr`` with an expiry set at creation).  Batches
are non-transactional pipelines: one round trip, no ``MULTI`` overhead.

Each operation is one typed ``Command`` (its arguments and its reply's converter),
built by one method of the store that single calls and pipelines share.  Those live
in ``BaseRedisStore``; how commands reach the servers is its subclasses':
``RedisStore`` sends them to one server (Sentinel's store to the current master,
``stores.redis_sentinel``), the cluster store to the master of each key's slot
(``stores.redis_cluster``).

Scripts go by their SHA1 digest (``EVALSHA``) once the server is known to hold them,
in full (``EVAL``) until then - a store's first use of a script, which also caches
it on the server, so the round trips are those of ``EVAL``.  Measured on a
rate-limited request and its session load, one pipeline: 268 bytes sent instead of
1892 (1565 and 260 with GCRA); latency and server time the same within noise on
loopback, so the gain is the bytes on the wire.  A server that lost its scripts (a
restart, a failover, ``SCRIPT FLUSH``) answers ``NOSCRIPT``; those commands did not
run and are sent again in full, one more round trip, once (see ``ScriptCache``).
redis-py's own ``Script`` objects are not used: a pipeline carrying them asks
``SCRIPT EXISTS`` before every execution, two round trips per request instead of one.

Listing keys uses ``SCAN`` restricted to the store's own prefix (glob characters in
the prefix escaped), never ``KEYS``, which blocks the server.

The client's options are normalised here, whichever form they came in (a URL or
``kvs_kwargs``): bounded connect and read timeouts, and no retries unless asked for.
redis-py 8 retries every command ten times with back-off by default, which turns a
Redis outage into requests hanging for seconds; the store's circuit breaker (see
``stores.breaker``) is what handles an outage instead.  Redis *error replies*
(READONLY after a failover, OOM, MISCONF) are ``StoreError``, never taken for
an outage nor for an absent key.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast
from urllib.parse import unquote_plus, urlsplit

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.connection import parse_url, to_bool
from redis.retry import Retry

from .base import (
    Pending,
    Script,
    ScriptArg,
    ScriptingBatch,
    ScriptingStore,
    Store,
    StoredRecord,
    StoreError,
    StoreUnavailable,
    ValueTooLarge,
    WrongKind,
    check_ttl,
    check_value,
)
from .breaker import DOWN_FOR_OPTION, CircuitBreaker, pop_down_for, to_timeout

T = TypeVar("T")

#: seconds to open a connection, unless configured otherwise
DEFAULT_CONNECT_TIMEOUT = 1.0
#: seconds to wait for a reply, unless configured otherwise
DEFAULT_READ_TIMEOUT = 1.0
#: the options ``normalise_options`` checks or converts, whichever form they took
NORMALISED_OPTIONS = (
    DOWN_FOR_OPTION,
    "socket_connect_timeout",
    "socket_timeout",
    "retry_on_timeout",
    "retry_on_error",
)

# INCRBY, then give the counter its expiry if it has none yet: an expiry is set at
# creation and never extended, and no interleaving can leave an immortal counter.
INCR_WITH_TTL = Script("""
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return value
""")

# PERSIST answers 0 both for a missing key and for one without expiry; touch must
# tell those apart.
PERSIST_IF_EXISTS = Script("""
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('PERSIST', KEYS[1])
    return 1
end
return 0
""")


# GET only when the value has at most ARGV[1] bytes; otherwise its size, an integer
# reply that no GET can give: a value refused by its size never leaves the server.
GET_BOUNDED = Script("""
local size = redis.call('STRLEN', KEYS[1])
if size > tonumber(ARGV[1]) then return size end
return redis.call('GET', KEYS[1])
""")


# Records are Redis hashes, one field per session key.  Each record operation is one
# script, hence one command: atomic, and one reply to convert in a pipeline.
# ARGV[1] is the TTL in seconds, or "" for no expiry.
_EXPIRE = """
if ARGV[1] == '' then redis.call('PERSIST', KEYS[1])
else redis.call('EXPIRE', KEYS[1], ARGV[1]) end
"""

LOAD_RECORD = Script(
    """
local fields = redis.call('HGETALL', KEYS[1])
if #fields > 0 then
"""
    + _EXPIRE
    + """
end
return fields
"""
)

# ARGV[2] is the number of changed fields, followed by name, value pairs, then the
# names of removed fields.
_UPDATE_FIELDS = (
    """
local changed = tonumber(ARGV[2])
local last = 2 + 2 * changed
if changed > 0 then
    redis.call('HSET', KEYS[1], unpack(ARGV, 3, last))
end
if #ARGV > last then
    redis.call('HDEL', KEYS[1], unpack(ARGV, last + 1, #ARGV))
end
if changed > 0 or redis.call('EXISTS', KEYS[1]) == 1 then
"""
    + _EXPIRE
    + """
end
return 1
"""
)

UPDATE_RECORD = Script(_UPDATE_FIELDS)
REPLACE_RECORD = Script("redis.call('DEL', KEYS[1])\n" + _UPDATE_FIELDS)


def _record_args(
    ttl: int | None, changed: Mapping[str, bytes], removed: Collection[str] = ()
) -> list[ScriptArg]:
    args: list[ScriptArg] = ["" if ttl is None else ttl, len(changed)]
    for name, value in changed.items():
        args += [name, check_value(value)]
    args += list(removed)
    return args


def _to_record(reply: list[bytes]) -> StoredRecord | None:
    """A record from ``HGETALL``'s flat list of names and values."""
    if not reply:
        return None
    pairs = iter(reply)  # names and values alternate: zip takes them two by two
    return StoredRecord(
        {
            name.decode("utf-8", "surrogateescape"): value
            for name, value in zip(pairs, pairs, strict=True)
        }
    )


def escape_glob(text: str) -> str:
    """*text* with Redis glob metacharacters escaped, to match it literally."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def translate_errors(exc: Exception) -> StoreError:
    """The pyramid_kvs error for a redis-py exception.

    Failing to reach the server (refused, dropped, timed out, still loading its
    data) is ``StoreUnavailable``; an error the server answered with (READONLY,
    OOM, MISCONF, a wrong type) is a plain ``StoreError``: the server is up.
    """
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
        return StoreUnavailable(f"redis: {exc}")
    if isinstance(exc, redis.exceptions.ClusterDownError):
        # CLUSTERDOWN, MASTERDOWN: the node answers, but no master serves the key now
        return StoreUnavailable(f"redis: {type(exc).__name__}: {exc}")
    if isinstance(exc, redis.ResponseError) and "WRONGTYPE" in str(exc):
        # also inside a script's error: "... WRONGTYPE Operation against a key ..."
        return WrongKind(f"redis: {exc}")
    if type(exc) is not redis.ResponseError and isinstance(exc, redis.ResponseError):
        # redis-py drops the error code (READONLY, OOM...) from the message of the
        # classes it has for them: their name says it instead.
        return StoreError(f"redis: {type(exc).__name__}: {exc}")
    return StoreError(f"redis: {exc}")


def translated(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call redis-py's *function*, raising its errors as pyramid_kvs ones."""
    try:
        return function(*args, **kwargs)
    except (redis.RedisError, OSError) as exc:
        raise translate_errors(exc) from exc


@dataclass(frozen=True)
class RedisOptions:
    """A Redis store's options once normalised: what redis-py gets, and the breaker's."""

    #: the server's URL, without the options pyramid_kvs takes out of its query
    url: str | None
    #: keyword arguments of ``redis.Redis`` (or of ``Redis.from_url`` with a URL)
    kwargs: dict[str, Any]
    #: seconds the store is left alone after a failure (see ``stores.breaker``)
    down_for: float


def normalise_options(options: Mapping[str, Any]) -> RedisOptions:
    """The options of ``kvs_kwargs`` or of a URL (with ``kvs_kwargs`` added), normalised.

    Whatever the form: ``down_for`` goes to the breaker, never to redis-py; the
    timeouts not given are ``DEFAULT_CONNECT_TIMEOUT`` and
    ``DEFAULT_READ_TIMEOUT``; and the client does not retry unless the options
    ask for it - ``retry_on_timeout`` or ``retry_on_error`` give one immediate
    retry, a ``retry`` object (from Python) its own policy.  ``retry_on_error``
    may name redis-py's exceptions (``"TimeoutError, ConnectionError"``).
    Raises ``ValueError`` naming the option for a bad value.
    """
    kwargs = dict(options)
    if kwargs.get("decode_responses"):
        raise ValueError("decode_responses must stay false: stores keep bytes")
    url = kwargs.pop("url", None)
    if url is not None:
        if not isinstance(url, str):
            raise ValueError(f"url: expected a redis://, rediss:// or unix:// URL, got {url!r}")
        # The options normalised here come out of the query, and so do those that
        # kvs_kwargs also give: kvs_kwargs win, as for the other stores (redis-py
        # would let the URL win).
        url, taken = _take_from_query(url, (*NORMALISED_OPTIONS, *kwargs))
        for name, value in taken.items():
            kwargs.setdefault(name, value)
    down_for = pop_down_for(kwargs)
    bound_timeouts(kwargs)
    if "retry_on_error" in kwargs:
        kwargs["retry_on_error"] = _error_classes(kwargs["retry_on_error"])
    if "retry_on_timeout" in kwargs:  # "false" from a URL is no true string
        kwargs["retry_on_timeout"] = bool(to_bool(kwargs["retry_on_timeout"]))  # type: ignore[no-untyped-call]
    if "retry" not in kwargs:
        asked = bool(kwargs.get("retry_on_error")) or kwargs.pop("retry_on_timeout", False)
        # Such a Retry retries on timeouts too: the deprecated flag would only warn.
        kwargs["retry"] = Retry(NoBackoff(), 1 if asked else 0)
    return RedisOptions(url, kwargs, down_for)


def bound_timeouts(kwargs: dict[str, Any]) -> None:
    """Give the connection options *kwargs* bounded timeouts: the defaults, or the
    positive numbers given (``ValueError`` for anything else, ``none`` included)."""
    for name, default in (
        ("socket_connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        ("socket_timeout", DEFAULT_READ_TIMEOUT),
    ):
        kwargs[name] = to_timeout(name, kwargs.get(name, default))


@dataclass(frozen=True)
class ServersUrl:
    """A URL naming several servers: ``scheme://[user[:password]@]h1:p1,h2:p2/path?query``."""

    addresses: tuple[tuple[str, int], ...]
    #: the path, without its first slash
    path: str
    #: the connection options: user, password and query, typed as redis-py types them
    options: dict[str, Any]


def parse_servers_url(url: str, default_port: int) -> ServersUrl:
    """The parts of a ``redis+cluster://`` or ``redis+sentinel://`` URL.

    redis-py reads URLs of one server only; the options are what it reads from
    one with the same user, password and query (``socket_timeout`` a number...).
    Raises ``ValueError`` naming what is wrong.
    """
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    addresses = []
    for host in hosts.split(","):
        try:
            address = urlsplit("//" + host.strip())
            port = address.port
        except ValueError:
            port, address = None, None
        if address is None or not address.hostname or port == 0:
            raise ValueError(f"expected host:port pairs separated by commas, got {hosts!r}")
        addresses.append((address.hostname, port or default_port))
    # the host is a stand-in: only the user, password and query are read
    single = f"redis://{userinfo}{at}localhost/" + ("?" + parts.query if parts.query else "")
    # the options normalised here stay text: redis-py would turn "TimeoutError" into
    # a list of letters
    single, taken = _take_from_query(single, NORMALISED_OPTIONS)
    options: dict[str, Any] = parse_url(single)  # type: ignore[no-untyped-call]
    del options["host"]
    options.update(taken)
    return ServersUrl(tuple(addresses), parts.path.lstrip("/"), options)


def _take_from_query(url: str, names: Sequence[str]) -> tuple[str, dict[str, str]]:
    """*url* without the query parameters *names*, and their values.

    The rest of the URL is kept as it was written, escapes included.
    """
    base, sep, query = url.partition("?")
    kept, taken = [], {}
    for part in query.split("&") if sep else ():
        name, _, value = part.partition("=")
        if unquote_plus(name) in names:
            taken[unquote_plus(name)] = unquote_plus(value)
        elif part:
            kept.append(part)
    return (base + "?" + "&".join(kept) if kept else base), taken


def _error_classes(value: Any) -> list[type[Exception]]:
    """``retry_on_error`` as exception classes; names are redis-py's exceptions."""
    expected = (
        "retry_on_error: expected redis-py exception names such as "
        f"TimeoutError, ConnectionError, got {value!r}"
    )
    if isinstance(value, str):
        value = [part for part in re.split(r"[\s,]+", value) if part]
    if not isinstance(value, (list, tuple)):
        raise ValueError(expected)
    classes = []
    for item in value:
        if isinstance(item, str):
            item = getattr(redis.exceptions, item.strip(), None)
        if not (isinstance(item, type) and issubclass(item, Exception)):
            raise ValueError(expected)
        classes.append(item)
    return classes


def build_client(normalised: RedisOptions) -> redis.Redis:
    """The redis-py client of *normalised* options; bad options fail here, at start-up.

    redis-py builds its connections lazily: an unknown or mistyped option (say
    ``?socket_timout=1`` in a URL) would otherwise surface as a ``TypeError`` in the
    first request.  One connection object is built, and dropped, to check them.
    """
    if normalised.url is not None:
        client = redis.Redis.from_url(normalised.url, **normalised.kwargs)
    else:
        client = redis.Redis(**normalised.kwargs)
    check_connection_options(client.connection_pool)
    return client


def check_connection_options(pool: redis.ConnectionPool) -> None:
    """Build, and drop, one connection of *pool*: a bad option fails at start-up.

    redis-py builds its connections lazily: an unknown or mistyped option would
    otherwise surface as a ``TypeError`` in the first request.
    """
    pool.connection_class(**pool.connection_kwargs).disconnect()


def _describe(client: redis.Redis) -> str:
    """``redis host:port`` (or the socket path), for log and error messages."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"redis {kwargs['path']}"
    return f"redis {kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


#: an argument of a Redis command (scripts' arguments travel as command arguments)
CommandArg = ScriptArg


@dataclass(frozen=True)
class Command(Generic[T]):
    """One Redis command, and how to read its reply.

    The store's ``_*_command`` methods build them and both the store's own calls and
    its pipelines send them, so a batched operation is exactly the command the store
    sends alone.  A script's command names its ``script`` and carries ``numkeys``,
    keys and arguments in ``args``: whether it travels as ``EVALSHA`` or ``EVAL`` is
    decided when it is sent (see ``ScriptCache``).
    """

    args: tuple[CommandArg, ...]
    convert: Callable[[Any], T]
    script: Script | None = None

    @property
    def first_key(self) -> CommandArg | None:
        """The command's first key (a Redis Cluster sends the command by it)."""
        if self.script is not None:
            return self.args[1] if int(self.args[0]) > 0 else None
        return self.args[1] if len(self.args) > 1 else None

    def argv(self, by_sha: bool = True) -> tuple[CommandArg, ...]:
        """The command as sent; a script by its digest or with its source."""
        if self.script is None:
            return self.args
        if by_sha:
            return ("EVALSHA", self.script.sha, *self.args)
        return ("EVAL", self.script.source, *self.args)


class ScriptCache:
    """The scripts the server is known to hold in its script cache.

    A script is sent with ``EVAL`` (its whole source) until the server has run it
    once, then by its digest with ``EVALSHA``: the rate limiter's scripts are 1.2 and
    1.5 kB, the digest 40 bytes.  A server that lost its cache (a restart, a
    failover, ``SCRIPT FLUSH``) answers ``NOSCRIPT``: the cache is then forgotten and
    the refused commands are sent again with ``EVAL`` - they did not run.  Shared by
    every prefixed view of one client; a race only costs an ``EVAL`` more.
    """

    def __init__(self) -> None:
        self._known: set[str] = set()

    def argv(self, command: Command[Any]) -> tuple[CommandArg, ...]:
        """*command* as it should be sent now."""
        script = command.script
        return command.argv(by_sha=script is not None and script.sha in self._known)

    def ran(self, command: Command[Any]) -> None:
        """*command* ran on the server: its script, if any, is in the server's cache."""
        if command.script is not None:
            self._known.add(command.script.sha)

    def forget(self) -> None:
        """The server lost its cache: every script goes with ``EVAL`` again."""
        self._known.clear()


class _Sender(Protocol):
    """What the store uses of a redis-py client or pipeline (left untyped by redis-py)."""

    def execute_command(self, *args: CommandArg, **options: Any) -> Any: ...


def _optional_bytes(reply: Any) -> bytes | None:
    """A bulk string reply, or nil."""
    return cast("bytes | None", reply)


def _optional_bytes_list(reply: Any) -> list[bytes | None]:
    """An array of bulk strings and nils (``MGET``)."""
    return cast("list[bytes | None]", reply)


def _none(reply: Any) -> None:
    """A reply only worth its success (``OK``, or a script's ``1``)."""
    return None


def _expiry_args(ttl: int | None) -> tuple[CommandArg, ...]:
    return () if ttl is None else ("EX", ttl)


#: sends argument vectors to one server in one round trip; their replies, error
#: replies as exception instances (not raised)
Send = Callable[[Sequence[tuple[CommandArg, ...]]], list[Any]]


def send_pipelined(
    send: Send, scripts: ScriptCache, commands: Sequence[Command[Any]]
) -> list[Any]:
    """Send *commands* to one server in one pipeline; their replies, errors included.

    *scripts* is what that server is known to hold.  Commands a server that lost its
    scripts refused with ``NOSCRIPT`` did not run: they are sent again with ``EVAL``,
    in a second round trip - after the pipeline's other commands, then, which only
    matters to a batch whose script and a later command touch the same key, and only
    just after the loss.  Raises redis-py's error when the server cannot be reached.
    """
    replies = send([scripts.argv(command) for command in commands])
    refused = [
        index
        for index, reply in enumerate(replies)
        if isinstance(reply, redis.exceptions.NoScriptError)
    ]
    if refused:
        scripts.forget()
        resent = [commands[index].argv(by_sha=False) for index in refused]
        for index, reply in zip(refused, send(resent), strict=True):
            replies[index] = reply
    for command, reply in zip(commands, replies, strict=True):
        if not isinstance(reply, Exception):
            scripts.ran(command)
    return replies


def pipeline_replies(client: redis.Redis, argvs: Sequence[tuple[CommandArg, ...]]) -> list[Any]:
    """Send *argvs* to one server in one pipeline (no transaction); their replies."""
    with client.pipeline(transaction=False) as pipeline:
        sender: _Sender = pipeline
        for argv in argvs:
            sender.execute_command(*argv)
        return pipeline.execute(raise_on_error=False)


class KeptConnections:
    """One connection per thread, taken from the client's pool once and kept.

    redis-py's ``Redis.execute_command`` and its pipelines take a connection from
    the pool and give it back for every command: with the pool's checks and its
    metrics, that is more than half of the client's CPU for a command on loopback
    (measured: 104 µs a command through the client, 42 µs on a kept connection).
    A request's operations come from one thread, one after another, so each thread
    keeps the connection it took - still the pool's, with its options, timeouts,
    health checks and Sentinel master discovery - and gives it back when the thread
    ends.  A connection is never left with a reply unread: any error while sending
    or reading disconnects it and gives it back.  Before each use, the pool's own
    check: a connection the server closed is replaced.  After a fork the child
    takes its own.
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self.pool = pool
        self._local = threading.local()

    def _connection(self) -> Any:
        local = self._local
        held: _Held | None = getattr(local, "held", None)
        if held is not None and held.pid == os.getpid():
            connection: Any = held.connection
            # What the pool checks on every checkout: a connection with something
            # to read - the server closed it (idle timeout, restart) - is not used.
            # (can_read also reconnects one that close() disconnected, the way its
            # class connects: through the sentinels for a Sentinel master.)
            try:
                if not connection.can_read():
                    return connection
            except (redis.exceptions.ConnectionError, OSError):
                pass
            connection.disconnect()
        held = local.held = _Held(self.pool)
        return held.connection

    def send(self, argvs: Sequence[tuple[CommandArg, ...]]) -> list[Any]:
        """*argvs* in one round trip; their replies, error replies as exceptions."""
        connection = self._connection()
        replies: list[Any] = []
        try:
            connection.send_packed_command(connection.pack_commands(argvs), check_health=True)
            for _ in argvs:
                try:
                    replies.append(connection.read_response())
                except redis.exceptions.ResponseError as error:  # a reply: the link is fine
                    replies.append(error)
        except BaseException:
            # Whatever was left unread is garbage now.  The connection goes back to
            # the pool, which connects it again as its class does (a Sentinel
            # master's through the sentinels) when it is next taken.
            connection.disconnect()
            self._local.held = None
            raise
        return replies


class _Held:
    """A connection a thread took from *pool*: back to the pool when this dies."""

    __slots__ = ("__weakref__", "connection", "pid")

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self.connection = pool.get_connection()
        self.pid = os.getpid()
        weakref.finalize(self, pool.release, self.connection)


class BaseRedisStore(ScriptingStore):
    """The contract in Redis commands, whatever the servers behind them.

    Each operation is one typed ``Command``, built by a ``_*_command`` method that
    both single calls and ``RedisBatch`` use.  How commands reach the servers is
    the subclass's: one server (``RedisStore``, Sentinel's master too) or the
    masters of a cluster (``redis_cluster.RedisClusterStore``).
    """

    name = "redis"

    # -- sending ---------------------------------------------------------------------

    @abstractmethod
    def _execute(self, command: Command[T]) -> T:
        """Send *command* alone and convert its reply; its error as a ``StoreError``."""

    @abstractmethod
    def _send_batch(self, commands: Sequence[Command[Any]]) -> list[Any]:
        """Send *commands* together; their raw replies in order, error replies as
        redis-py's exceptions.  Raises ``StoreUnavailable`` when a server they need
        cannot be reached."""

    @abstractmethod
    def _scan_keys(self, match: str, cut: int) -> list[str]:
        """The keys matching *match* on every server, each without its first *cut*
        bytes (see ``scan_server``)."""

    def scan(self, pattern: str = "*") -> Iterator[str]:
        match = escape_glob(self.key_prefix) + pattern
        cut = len(self.key_prefix.encode())
        # SCAN may return a key twice when the keyspace is rehashed meanwhile.
        return iter(dict.fromkeys(self._scan_keys(match, cut)))

    # -- the commands of the contract's operations -------------------------------------

    def _script_command(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[ScriptArg],
        convert: Callable[[Any], T],
    ) -> Command[T]:
        """*script* on *keys* (contract keys, prefixed here) and *args*."""
        full_keys = [self.full_key(key) for key in keys]
        return Command((len(full_keys), *full_keys, *args), convert, script)

    def _get_command(self, key: str) -> Command[bytes | None]:
        return Command(("GET", self.full_key(key)), _optional_bytes)

    def _get_bounded_command(self, key: str, max_size: int) -> Command[bytes | None]:
        """``GET`` behind a ``STRLEN`` check, in one script: one round trip."""

        def convert(reply: Any) -> bytes | None:
            if isinstance(reply, int):
                raise ValueTooLarge(reply, max_size)
            return _optional_bytes(reply)

        return self._script_command(GET_BOUNDED, [key], [max_size], convert)

    def _get_many_command(self, keys: Sequence[str]) -> Command[list[bytes | None]]:
        return Command(("MGET", *(self.full_key(key) for key in keys)), _optional_bytes_list)

    def _get_and_touch_command(self, key: str, ttl: int | None) -> Command[bytes | None]:
        ttl = check_ttl(ttl)
        expiry = ("PERSIST",) if ttl is None else ("EX", ttl)
        return Command(("GETEX", self.full_key(key), *expiry), _optional_bytes)

    def _set_command(self, key: str, value: bytes, ttl: int | None) -> Command[None]:
        ttl = check_ttl(ttl)
        args = ("SET", self.full_key(key), check_value(value), *_expiry_args(ttl))
        return Command(args, _none)

    def _add_command(self, key: str, value: bytes, ttl: int | None) -> Command[bool]:
        ttl = check_ttl(ttl)
        args = ("SET", self.full_key(key), check_value(value), "NX", *_expiry_args(ttl))
        return Command(args, bool)

    def _delete_command(self, key: str) -> Command[bool]:
        return Command(("DEL", self.full_key(key)), bool)

    def _touch_command(self, key: str, ttl: int | None) -> Command[bool]:
        ttl = check_ttl(ttl)
        if ttl is None:
            return self._script_command(PERSIST_IF_EXISTS, [key], [], bool)
        return Command(("EXPIRE", self.full_key(key), ttl), bool)

    def _incr_command(self, key: str, amount: int, ttl: int | None) -> Command[int]:
        ttl = check_ttl(ttl)
        if ttl is None:
            return Command(("INCRBY", self.full_key(key), amount), int)
        return self._script_command(INCR_WITH_TTL, [key], [amount, ttl], int)

    def _pop_command(self, key: str) -> Command[bytes | None]:
        return Command(("GETDEL", self.full_key(key)), _optional_bytes)

    def _load_record_command(self, key: str, ttl: int | None) -> Command[StoredRecord | None]:
        args = _record_args(check_ttl(ttl), {})
        return self._script_command(LOAD_RECORD, [key], args, _to_record)

    def _update_record_command(
        self, key: str, changed: Mapping[str, bytes], removed: Collection[str], ttl: int | None
    ) -> Command[None]:
        args = _record_args(check_ttl(ttl), changed, removed)
        return self._script_command(UPDATE_RECORD, [key], args, _none)

    def _replace_record_command(
        self, key: str, fields: Mapping[str, bytes], ttl: int | None
    ) -> Command[None]:
        args = _record_args(check_ttl(ttl), fields)
        return self._script_command(REPLACE_RECORD, [key], args, _none)

    # -- the contract ------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        return self._execute(self._get_command(key))

    def get_bounded(self, key: str, max_size: int) -> bytes | None:
        return self._execute(self._get_bounded_command(key, max_size))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return self._execute(self._get_many_command(keys))

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        self._execute(self._set_command(key, value, ttl))

    def set_many(self, mapping: Mapping[str, bytes], ttl: int | None = None) -> None:
        if not mapping:
            return
        with self.batch() as batch:
            written = [batch.set(key, value, ttl) for key, value in mapping.items()]
        for pending in written:
            pending.value  # noqa: B018 - raises the error of a refused write (READONLY...)

    def add(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        return self._execute(self._add_command(key, value, ttl))

    def delete(self, key: str) -> bool:
        return self._execute(self._delete_command(key))

    def touch(self, key: str, ttl: int | None) -> bool:
        return self._execute(self._touch_command(key, ttl))

    def get_and_touch(self, key: str, ttl: int | None) -> bytes | None:
        return self._execute(self._get_and_touch_command(key, ttl))

    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> int:
        return self._execute(self._incr_command(key, amount, ttl))

    def pop(self, key: str) -> bytes | None:
        return self._execute(self._pop_command(key))

    def load_record(self, key: str, ttl: int | None) -> StoredRecord | None:
        return self._execute(self._load_record_command(key, ttl))

    def update_record(
        self,
        key: str,
        changed: Mapping[str, bytes],
        removed: Collection[str],
        ttl: int | None,
        base: StoredRecord | None = None,
    ) -> None:
        if changed or removed:
            self._execute(self._update_record_command(key, changed, removed, ttl))

    def replace_record(self, key: str, fields: Mapping[str, bytes], ttl: int | None) -> None:
        self._execute(self._replace_record_command(key, fields, ttl))

    def batch(self) -> RedisBatch:
        return RedisBatch(self)


class RedisStore(BaseRedisStore):
    """A Redis server (or a Redis-protocol server such as Valkey) through redis-py.

    Every call goes through the store's ``CircuitBreaker``, shared by every
    prefixed view of the client.
    """

    def __init__(
        self, client: redis.Redis, key_prefix: str = "", *, breaker: CircuitBreaker | None = None
    ) -> None:
        super().__init__(key_prefix)
        self.client = client
        self.breaker = breaker or CircuitBreaker("redis")
        self.scripts = ScriptCache()
        self.connections = KeptConnections(client.connection_pool)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RedisStore:
        """Build the client from ``kvs_kwargs`` (arguments of ``redis.Redis``) or a URL."""
        normalised = normalise_options(options)
        client = build_client(normalised)
        return cls(client, breaker=CircuitBreaker(_describe(client), normalised.down_for))

    def _execute(self, command: Command[T]) -> T:
        """Send *command* alone: one round trip (two when the server lost its scripts)."""
        return command.convert(self.breaker.call(translated, self._send, command))

    def _send(self, command: Command[Any]) -> Any:
        (reply,) = send_pipelined(self.connections.send, self.scripts, [command])
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _send_batch(self, commands: Sequence[Command[Any]]) -> list[Any]:
        return self.breaker.call(
            translated, send_pipelined, self.connections.send, self.scripts, commands
        )

    def _scan_keys(self, match: str, cut: int) -> list[str]:
        return self.breaker.call(translated, scan_server, self.client, match, cut)

    def ping(self) -> None:
        self.breaker.call(translated, self.client.ping)

    def server_info(self) -> dict[str, str]:
        """The address and ``redis_version`` of ``INFO server``: one round trip."""
        info = self.breaker.call(translated, self.client.info, "server")
        return {
            "store": self.name,
            "server": _describe(self.client).removeprefix("redis "),
            "version": str(info.get("redis_version", "unknown")),
        }

    def shared_state(self) -> object:
        return self.client

    def close(self) -> None:
        self.client.close()


def scan_server(client: redis.Redis, match: str, cut: int) -> list[str]:
    """The keys of one server matching *match*, each without its first *cut* bytes."""
    return [
        key[cut:].decode("utf-8", "surrogateescape")
        for key in client.scan_iter(match=match, count=500)
    ]


class RedisBatch(ScriptingBatch):
    """A pipeline: every queued operation in one round trip.

    Each operation queues the ``Command`` its store would send alone; scripts of
    other components join with ``run_script`` (the rate limiter's check travels with
    the session load this way).
    """

    store: BaseRedisStore
    pipelined = True

    def __init__(self, store: BaseRedisStore) -> None:
        super().__init__(store)
        self._queued: list[tuple[Command[Any], Pending[Any]]] = []

    def _queue(self, command: Command[T]) -> Pending[T]:
        pending: Pending[T] = Pending()
        self._queued.append((command, pending))
        return pending

    def _on(self, store: Store | None) -> BaseRedisStore:
        """The view of this batch's client whose prefix the operation uses."""
        # shares_client_with compares the stores' types: another view is of this class
        return cast(BaseRedisStore, self._target(store))

    def get(self, key: str, *, store: Store | None = None) -> Pending[bytes | None]:
        return self._queue(self._on(store)._get_command(key))

    def get_and_touch(self, key: str, ttl: int | None) -> Pending[bytes | None]:
        return self._queue(self.store._get_and_touch_command(key, ttl))

    def set(self, key: str, value: bytes, ttl: int | None = None) -> Pending[None]:
        return self._queue(self.store._set_command(key, value, ttl))

    def add(self, key: str, value: bytes, ttl: int | None = None) -> Pending[bool]:
        return self._queue(self.store._add_command(key, value, ttl))

    def delete(self, key: str) -> Pending[bool]:
        return self._queue(self.store._delete_command(key))

    def touch(self, key: str, ttl: int | None) -> Pending[bool]:
        return self._queue(self.store._touch_command(key, ttl))

    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> Pending[int]:
        return self._queue(self.store._incr_command(key, amount, ttl))

    def load_record(
        self, key: str, ttl: int | None, *, store: Store | None = None
    ) -> Pending[StoredRecord | None]:
        return self._queue(self._on(store)._load_record_command(key, ttl))

    def replace_record(
        self, key: str, fields: Mapping[str, bytes], ttl: int | None, *, store: Store | None = None
    ) -> Pending[None]:
        return self._queue(self._on(store)._replace_record_command(key, fields, ttl))

    def run_script(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[ScriptArg],
        convert: Callable[[Any], T],
        *,
        store: Store | None = None,
    ) -> Pending[T]:
        return self._queue(self._on(store)._script_command(script, keys, args, convert))

    def __len__(self) -> int:
        return len(self._queued)

    def execute(self) -> None:
        queued, self._queued = self._queued, []
        if not queued:
            return
        commands = [command for command, _ in queued]
        replies = self.store._send_batch(commands)
        for (command, pending), reply in zip(queued, replies, strict=True):
            if isinstance(reply, Exception):
                pending.resolve(translate_errors(reply))
            else:
                pending.resolve(command.convert(reply))
