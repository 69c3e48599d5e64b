"""The Redis store, on redis-py (with hiredis when installed).

Each contract operation is one Redis command, or a short Lua script where an atomic
read-modify-write needs several (``incr`` with an expiry set at creation).  Batches
are non-transactional pipelines: one round trip, no ``MULTI`` overhead.

Scripts are sent with ``EVAL``: redis-py's own script objects check the script cache
with an extra ``SCRIPT EXISTS`` round trip in every pipeline, which would cost more
than the few hundred bytes of script text Redis compiles once and then caches.

Listing keys uses ``SCAN`` restricted to the store's own prefix (glob characters in
the prefix escaped), never ``KEYS``, which blocks the server.

The client's options are normalised here, whichever form they came in (a URL or
``kvs_kwargs``): bounded connect and read timeouts, and no retries unless asked for.
redis-py 8 retries every command ten times with back-off by default, which turns a
Redis outage into requests hanging for seconds; the store's circuit breaker (see
:mod:`.breaker`) is what handles an outage instead.  Redis *error replies*
(READONLY after a failover, OOM, MISCONF) are :class:`StoreError`, never taken for
an outage nor for an absent key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote_plus

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.connection import to_bool
from redis.retry import Retry

from .base import (
    Batch,
    Pending,
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
#: the options :func:`normalise_options` checks or converts, whichever form they took
NORMALISED_OPTIONS = (
    DOWN_FOR_OPTION,
    "socket_connect_timeout",
    "socket_timeout",
    "retry_on_timeout",
    "retry_on_error",
)

# INCRBY, then give the counter its expiry if it has none yet: an expiry is set at
# creation and never extended, and no interleaving can leave an immortal counter.
INCR_WITH_TTL = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return value
"""

# PERSIST answers 0 both for a missing key and for one without expiry; touch must
# tell those apart.
PERSIST_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('PERSIST', KEYS[1])
    return 1
end
return 0
"""


# GET only when the value has at most ARGV[1] bytes; otherwise its size, an integer
# reply that no GET can give: a value refused by its size never leaves the server.
GET_BOUNDED = """
local size = redis.call('STRLEN', KEYS[1])
if size > tonumber(ARGV[1]) then return size end
return redis.call('GET', KEYS[1])
"""


# Records are Redis hashes, one field per session key.  Each record operation is one
# script, hence one command: atomic, and one reply to convert in a pipeline.
# ARGV[1] is the TTL in seconds, or "" for no expiry.
_EXPIRE = """
if ARGV[1] == '' then redis.call('PERSIST', KEYS[1])
else redis.call('EXPIRE', KEYS[1], ARGV[1]) end
"""

LOAD_RECORD = (
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
UPDATE_RECORD = (
    """
local changed = tonumber(ARGV[2])
local last = 2 + 2 * changed
if changed > 0 then
    redis.call('HSET', KEYS[1], unpack(ARGV, 3, last))
end
if #ARGV > last then
    redis.call('HDEL', KEYS[1], unpack(ARGV, last + 1, #ARGV))
end
if redis.call('EXISTS', KEYS[1]) == 1 then
"""
    + _EXPIRE
    + """
end
return 1
"""
)

REPLACE_RECORD = "redis.call('DEL', KEYS[1])\n" + UPDATE_RECORD


def _record_args(
    ttl: int | None, changed: Mapping[str, bytes], removed: Collection[str] = ()
) -> list[Any]:
    args: list[Any] = ["" if ttl is None else ttl, len(changed)]
    for name, value in changed.items():
        args += [name, check_value(value)]
    args += list(removed)
    return args


def _to_record(reply: list[bytes]) -> StoredRecord | None:
    if not reply:
        return None
    names = (name.decode("utf-8", "surrogateescape") for name in reply[::2])
    return StoredRecord(dict(zip(names, reply[1::2], strict=True)))


def escape_glob(text: str) -> str:
    """*text* with Redis glob metacharacters escaped, to match it literally."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def translate_errors(exc: Exception) -> StoreError:
    """The pyramid_kvs error for a redis-py exception.

    Failing to reach the server (refused, dropped, timed out, still loading its
    data) is :class:`StoreUnavailable`; an error the server answered with (READONLY,
    OOM, MISCONF, a wrong type) is a plain :class:`StoreError`: the server is up.
    """
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
        return StoreUnavailable(f"redis: {exc}")
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
    #: seconds the store is left alone after a failure (see :mod:`.breaker`)
    down_for: float


def normalise_options(options: Mapping[str, Any]) -> RedisOptions:
    """The options of ``kvs_kwargs`` or of a URL (with ``kvs_kwargs`` added), normalised.

    Whatever the form: ``down_for`` goes to the breaker, never to redis-py; the
    timeouts not given are :data:`DEFAULT_CONNECT_TIMEOUT` and
    :data:`DEFAULT_READ_TIMEOUT`; and the client does not retry unless the options
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
    for name, default in (
        ("socket_connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        ("socket_timeout", DEFAULT_READ_TIMEOUT),
    ):
        kwargs[name] = to_timeout(name, kwargs.get(name, default))
    if "retry_on_error" in kwargs:
        kwargs["retry_on_error"] = _error_classes(kwargs["retry_on_error"])
    if "retry_on_timeout" in kwargs:  # "false" from a URL is no true string
        kwargs["retry_on_timeout"] = bool(to_bool(kwargs["retry_on_timeout"]))
    if "retry" not in kwargs:
        asked = bool(kwargs.get("retry_on_error")) or kwargs.pop("retry_on_timeout", False)
        # Such a Retry retries on timeouts too: the deprecated flag would only warn.
        kwargs["retry"] = Retry(NoBackoff(), 1 if asked else 0)
    return RedisOptions(url, kwargs, down_for)


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
    pool = client.connection_pool
    pool.connection_class(**pool.connection_kwargs).disconnect()
    return client


def _describe(client: redis.Redis) -> str:
    """``redis host:port`` (or the socket path), for log and error messages."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"redis {kwargs['path']}"
    return f"redis {kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


class RedisStore(Store):
    """A Redis server (or a Redis-protocol server such as Valkey) through redis-py.

    Every call goes through the store's :class:`~.breaker.CircuitBreaker`, shared by
    every prefixed view of the client.
    """

    name = "redis"

    def __init__(
        self, client: redis.Redis, key_prefix: str = "", *, breaker: CircuitBreaker | None = None
    ) -> None:
        super().__init__(key_prefix)
        self.client = client
        self.breaker = breaker or CircuitBreaker("redis")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RedisStore:
        """Build the client from ``kvs_kwargs`` (arguments of ``redis.Redis``) or a URL."""
        normalised = normalise_options(options)
        client = build_client(normalised)
        return cls(client, breaker=CircuitBreaker(_describe(client), normalised.down_for))

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.breaker.call(translated, getattr(self.client, method), *args, **kwargs)

    def command_for(self, op: str, key: str, *args: Any) -> tuple[tuple[Any, ...], Any]:
        """The Redis command for contract operation *op*, and its reply converter.

        Single calls and pipelines share it, so both send exactly the same command.
        """
        key = self.full_key(key)
        if op == "get":
            return ("GET", key), None
        if op == "get_and_touch":
            (ttl,) = args
            return ("GETEX", key, *(("PERSIST",) if ttl is None else ("EX", ttl))), None
        if op == "set":
            value, ttl = check_value(args[0]), args[1]
            return ("SET", key, value, *(() if ttl is None else ("EX", ttl))), _none
        if op == "add":
            value, ttl = check_value(args[0]), args[1]
            return ("SET", key, value, "NX", *(() if ttl is None else ("EX", ttl))), bool
        if op == "delete":
            return ("DEL", key), bool
        if op == "touch":
            (ttl,) = args
            if ttl is None:
                return ("EVAL", PERSIST_IF_EXISTS, 1, key), bool
            return ("EXPIRE", key, ttl), bool
        if op == "incr":
            amount, ttl = args
            if ttl is None:
                return ("INCRBY", key, amount), int
            return ("EVAL", INCR_WITH_TTL, 1, key, amount, ttl), int
        if op == "pop":
            return ("GETDEL", key), None
        if op == "load_record":
            (ttl,) = args
            return ("EVAL", LOAD_RECORD, 1, key, *_record_args(ttl, {})), _to_record
        if op == "update_record":
            changed, removed, ttl = args
            return ("EVAL", UPDATE_RECORD, 1, key, *_record_args(ttl, changed, removed)), _none
        if op == "replace_record":
            fields, ttl = args
            return ("EVAL", REPLACE_RECORD, 1, key, *_record_args(ttl, fields)), _none
        raise ValueError(f"unknown store operation {op!r}")

    def _run(self, op: str, key: str, *args: Any) -> Any:
        command, convert = self.command_for(op, key, *args)
        reply = self._call("execute_command", *command)
        return reply if convert is None else convert(reply)

    def get(self, key: str) -> bytes | None:
        return self._run("get", key)  # type: ignore[no-any-return]

    def get_bounded(self, key: str, max_size: int) -> bytes | None:
        """``GET`` behind a ``STRLEN`` check, in one script: one round trip."""
        reply = self._call("execute_command", "EVAL", GET_BOUNDED, 1, self.full_key(key), max_size)
        if isinstance(reply, int):
            raise ValueTooLarge(reply, max_size)
        return reply  # type: ignore[no-any-return]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return self._call("mget", [self.full_key(key) for key in keys])  # type: ignore[no-any-return]

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        self._run("set", key, value, check_ttl(ttl))

    def set_many(self, mapping: Mapping[str, bytes], ttl: int | None = None) -> None:
        if not mapping:
            return
        with self.batch() as batch:
            written = [batch.set(key, value, ttl) for key, value in mapping.items()]
        for pending in written:
            pending.value  # noqa: B018 - raises the error of a refused write (READONLY...)

    def add(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        return self._run("add", key, value, check_ttl(ttl))  # type: ignore[no-any-return]

    def delete(self, key: str) -> bool:
        return self._run("delete", key)  # type: ignore[no-any-return]

    def touch(self, key: str, ttl: int | None) -> bool:
        return self._run("touch", key, check_ttl(ttl))  # type: ignore[no-any-return]

    def get_and_touch(self, key: str, ttl: int | None) -> bytes | None:
        return self._run("get_and_touch", key, check_ttl(ttl))  # type: ignore[no-any-return]

    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> int:
        return self._run("incr", key, amount, check_ttl(ttl))  # type: ignore[no-any-return]

    def pop(self, key: str) -> bytes | None:
        return self._run("pop", key)  # type: ignore[no-any-return]

    def load_record(self, key: str, ttl: int | None) -> StoredRecord | None:
        return self._run("load_record", key, check_ttl(ttl))  # type: ignore[no-any-return]

    def update_record(
        self,
        key: str,
        changed: Mapping[str, bytes],
        removed: Collection[str],
        ttl: int | None,
        base: StoredRecord | None = None,
    ) -> None:
        if changed or removed:
            self._run("update_record", key, changed, removed, check_ttl(ttl))

    def replace_record(self, key: str, fields: Mapping[str, bytes], ttl: int | None) -> None:
        self._run("replace_record", key, fields, check_ttl(ttl))

    def scan(self, pattern: str = "*") -> Iterator[str]:
        match = escape_glob(self.key_prefix) + pattern
        cut = len(self.key_prefix.encode())
        keys = self.breaker.call(translated, self._scan, match, cut)
        # SCAN may return a key twice when the keyspace is rehashed meanwhile.
        return iter(dict.fromkeys(keys))

    def _scan(self, match: str, cut: int) -> list[str]:
        return [
            key[cut:].decode("utf-8", "surrogateescape")
            for key in self.client.scan_iter(match=match, count=500)
        ]

    def batch(self) -> RedisBatch:
        return RedisBatch(self)

    def ping(self) -> None:
        self._call("ping")

    def shared_state(self) -> object:
        return self.client

    def close(self) -> None:
        self.client.close()


class RedisBatch(Batch):
    """A pipeline: every queued operation in one round trip.

    Components add their own commands with :meth:`command` or :meth:`eval` (the rate
    limiter's scripts travel with the session load this way).
    """

    store: RedisStore
    pipelined = True

    def __init__(self, store: RedisStore) -> None:
        super().__init__(store)
        self._pipeline = store.client.pipeline(transaction=False)
        self._converters: list[tuple[Pending[Any], Any]] = []

    def command(self, convert: Any, *command: Any) -> Pending[Any]:
        """Queue a raw Redis command; *convert* maps its reply (``None`` keeps it)."""
        pending: Pending[Any] = Pending()
        self._pipeline.execute_command(*command)
        self._converters.append((pending, convert))
        return pending

    def eval(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Pending[Any]:
        """Queue a Lua script on *keys* (full keys, prefix included) and *args*."""
        return self.command(None, "EVAL", script, len(keys), *keys, *args)

    def _queue_on(self, store: Store, op: str, *args: Any) -> Pending[Any]:
        command, convert = store.command_for(op, *args)  # type: ignore[attr-defined]
        return self.command(convert, *command)

    def __len__(self) -> int:
        return len(self._converters)

    def execute(self) -> None:
        converters, self._converters = self._converters, []
        if not converters:
            return
        try:
            replies = self.store.breaker.call(
                translated, self._pipeline.execute, raise_on_error=False
            )
        finally:
            self._pipeline.reset()  # not sent when the breaker is open: drop the commands
        for (pending, convert), reply in zip(converters, replies, strict=True):
            if isinstance(reply, Exception):
                pending.resolve(translate_errors(reply))
            else:
                pending.resolve(reply if convert is None else convert(reply))


def _none(_: Any) -> None:
    return None
