"""The Redis store, on redis-py (with hiredis when installed).

Each contract operation is one Redis command, or a short Lua script where an atomic
read-modify-write needs several (``incr`` with an expiry set at creation).  Batches
are non-transactional pipelines: one round trip, no ``MULTI`` overhead.

Scripts are sent with ``EVAL``: redis-py's own script objects check the script cache
with an extra ``SCRIPT EXISTS`` round trip in every pipeline, which would cost more
than the few hundred bytes of script text Redis compiles once and then caches.

Listing keys uses ``SCAN`` restricted to the store's own prefix (glob characters in
the prefix escaped), never ``KEYS``, which blocks the server.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import redis

from .base import (
    Batch,
    Pending,
    Store,
    StoredRecord,
    StoreError,
    StoreUnavailable,
    ValueTooLarge,
    check_ttl,
    check_value,
)

#: seconds to connect and to wait for a reply, unless configured otherwise
DEFAULT_TIMEOUT = 5.0

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
    """The pyramid_kvs error for a redis-py exception."""
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
        return StoreUnavailable(f"redis: {exc}")
    return StoreError(f"redis: {exc}")


class RedisStore(Store):
    """A Redis server (or a Redis-protocol server such as Valkey) through redis-py."""

    name = "redis"

    def __init__(self, client: redis.Redis, key_prefix: str = "") -> None:
        super().__init__(key_prefix)
        self.client = client

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RedisStore:
        """Build the client from ``kvs_kwargs`` (arguments of ``redis.Redis``) or a URL."""
        options = dict(options)
        if options.get("decode_responses"):
            raise ValueError("decode_responses must stay false: stores keep bytes")
        # redis-py waits forever by default: a stalled server would hang every
        # request.  Bounded defaults; kvs_kwargs or URL parameters override them.
        options.setdefault("socket_connect_timeout", DEFAULT_TIMEOUT)
        options.setdefault("socket_timeout", DEFAULT_TIMEOUT)
        url = options.pop("url", None)
        if url is not None:
            return cls(redis.Redis.from_url(url, **options))
        return cls(redis.Redis(**options))

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except (redis.RedisError, OSError) as exc:
            raise translate_errors(exc) from exc

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
            for key, value in mapping.items():
                batch.set(key, value, ttl)

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
        try:
            keys = [
                key[cut:].decode("utf-8", "surrogateescape")
                for key in self.client.scan_iter(match=match, count=500)
            ]
        except (redis.RedisError, OSError) as exc:
            raise translate_errors(exc) from exc
        # SCAN may return a key twice when the keyspace is rehashed meanwhile.
        return iter(dict.fromkeys(keys))

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
            replies = self._pipeline.execute(raise_on_error=False)
        except (redis.RedisError, OSError) as exc:
            raise translate_errors(exc) from exc
        for (pending, convert), reply in zip(converters, replies, strict=True):
            if isinstance(reply, Exception):
                pending.resolve(translate_errors(reply))
            else:
                pending.resolve(reply if convert is None else convert(reply))


def _none(_: Any) -> None:
    return None
