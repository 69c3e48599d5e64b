"""The store contract every backend implements.

A store keeps *bytes* under *text keys* and knows nothing of codecs, sessions or
caches: serialization stays outside the store (as in dogpile.cache), so one backend
serves every component.  The contract is deliberately small - get / set / add /
delete / touch / atomic increment, their multi-key forms, and a ``Batch`` that
sends several operations in one round trip - because every higher feature of
pyramid_kvs is judged by how few round trips it costs per request.

Keys are given *without* the store's ``key_prefix``; the store applies it, so the
cache, the sessions and the rate limiter can share one client (one connection pool)
under different prefixes: see ``Store.with_prefix``.

Every failure to reach the server is raised as ``StoreUnavailable``, whatever
the client library, so callers choose one outage policy instead of catching
``redis.ConnectionError``, ``socket.timeout`` and ``MemcacheError`` separately.

What some components need beyond the contract - scripts run in a store's batches,
compare-and-swap, a lock and clock in the process - are optional capabilities, the
classes at the end of this module, which a store inherits when it offers them.  The
rate limiter picks its engine by them, so a custom store offering one rate limits.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
S = TypeVar("S", bound="Store")

#: memcached reads an expiry above 30 days as an absolute Unix time; stores that
#: share that rule use this bound (see ``pyramid_kvs.stores.memcached``).
THIRTY_DAYS = 30 * 24 * 3600


class StoreError(Exception):
    """A store operation failed (the server answered with an error)."""


class StoreUnavailable(StoreError):
    """The store could not be reached: connection refused, timed out or dropped."""


class WrongKind(StoreError):
    """The key holds another kind of value than the operation works on.

    A string where a record is expected, a record where a counter is: the data is
    foreign or corrupt, while the store itself is fine - unlike an error reply such
    as READONLY or OOM.  Sessions start afresh over such a key rather than answer 503.
    """


class UnsupportedOperation(StoreError):
    """The store cannot do this by design (e.g. listing keys on memcached)."""


class ValueTooLarge(StoreError):
    """A value larger than the reader's bound (see ``Store.get_bounded``).

    The message leaves the key out: keys of the values read this way (session ids)
    are credentials, and errors end up in logs.
    """

    def __init__(self, size: int, max_size: int) -> None:
        super().__init__(f"a value of {size} bytes, more than max_size={max_size}")
        self.size = size
        self.max_size = max_size


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<not executed>"


_UNSET = _Unset()


class Pending(Generic[T]):
    """The future result of one operation queued in a ``Batch``."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: T | Exception | _Unset = _UNSET

    @property
    def value(self) -> T:
        """The operation's result; an error if the batch has not run yet."""
        if isinstance(self._value, _Unset):
            raise RuntimeError("the batch holding this operation has not been executed")
        if isinstance(self._value, Exception):
            raise self._value
        return self._value

    def resolve(self, value: T | Exception) -> None:
        """Set the result, or the error ``value`` will raise."""
        self._value = value

    def __repr__(self) -> str:
        return f"<Pending {self._value!r}>"


def check_ttl(ttl: int | None) -> int | None:
    """Validate a time to live: ``None`` (no expiry) or a positive number of seconds."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise TypeError(f"ttl must be None or a positive int, not {ttl!r}")
    if ttl <= 0:
        raise ValueError(f"ttl must be None or a positive number of seconds, not {ttl}")
    return ttl


def check_value(value: bytes) -> bytes:
    """Stores keep bytes: anything else is a caller's bug, reported as such."""
    if not isinstance(value, bytes):
        raise TypeError(f"stores keep bytes, not {type(value).__name__}")
    return value


@dataclass(frozen=True)
class StoredRecord:
    """A record as loaded: its fields, and the store's version token for it.

    The version lets a store that has compare-and-swap (memcached) apply the next
    update to exactly this state without reading it again; stores that update
    fields natively (Redis hashes) leave it ``None``.
    """

    fields: Mapping[str, bytes]
    version: Any = None


class Store(ABC):
    """Bytes under text keys, with expiry, on one server (or cluster of servers).

    Subclasses implement the abstract methods with one round trip each; the
    non-abstract ones have a portable default that subclasses replace with a native
    command where the server has one.
    """

    #: The backend's registered name, used in log and error messages.
    name = "store"
    #: Whether ``scan`` works on this store.
    can_scan = True
    #: Whether ``pop`` is atomic (two callers never both get the value).
    atomic_pop = True

    def __init__(self, key_prefix: str = "") -> None:
        self.key_prefix = key_prefix

    def with_prefix(self: S, key_prefix: str) -> S:
        """A view of this store under another prefix, sharing its client and pool."""
        clone = copy.copy(self)
        clone.key_prefix = key_prefix
        return clone

    def full_key(self, key: str) -> str:
        """The key as stored on the server, prefix included."""
        return self.key_prefix + key

    # -- single keys -----------------------------------------------------------------

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The value under *key*, or ``None`` when absent or expired."""

    @abstractmethod
    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        """Store *value*; it expires after *ttl* seconds (``None``: never)."""

    @abstractmethod
    def add(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        """Store *value* only if *key* is absent; ``True`` when it was stored."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove *key*; ``True`` when it existed."""

    @abstractmethod
    def touch(self, key: str, ttl: int | None) -> bool:
        """Reset the expiry of *key*; ``True`` when it existed."""

    @abstractmethod
    def get_and_touch(self, key: str, ttl: int | None) -> bytes | None:
        """Read *key* and reset its expiry in one round trip."""

    @abstractmethod
    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> int:
        """Atomically add *amount* to the integer under *key* and return the result.

        An absent key starts from zero and, when *ttl* is given, expires *ttl*
        seconds after it was created (later increments do not extend it: this is
        what a fixed-window counter needs).
        """

    def pop(self, key: str) -> bytes | None:
        """Read and delete *key*.  Atomic where ``atomic_pop`` is true."""
        value = self.get(key)
        if value is not None:
            self.delete(key)
        return value

    def get_bounded(self, key: str, max_size: int) -> bytes | None:
        """The value under *key* (``None`` when absent) if it has at most *max_size* bytes.

        Raises ``ValueTooLarge`` otherwise.  A reader of values other
        applications write (the Perl sessions) must not pay for a value of any size
        before it can refuse it, so network stores check the size *before* the value
        travels (Redis, memcached), in the same single round trip.  This portable
        default reads the value first: right for in-process stores, whose ``get``
        hands over the stored object without copying it, while on a network store
        it bounds only what the caller keeps, not what the client downloads.
        """
        value = self.get(key)
        if value is not None and len(value) > max_size:
            raise ValueTooLarge(len(value), max_size)
        return value

    # -- several keys ----------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of *keys*, in order, ``None`` for the absent ones."""
        return [self.get(key) for key in keys]

    def set_many(self, mapping: Mapping[str, bytes], ttl: int | None = None) -> None:
        """Store every item of *mapping* with the same *ttl*."""
        for key, value in mapping.items():
            self.set(key, value, ttl)

    def scan(self, pattern: str = "*") -> Iterator[str]:
        """Keys under this store's prefix matching the glob *pattern*, prefix removed.

        Never lists keys outside the prefix, and never blocks the server the way
        Redis' ``KEYS`` does.  Raises ``UnsupportedOperation`` on stores that
        cannot list keys (memcached).
        """
        raise UnsupportedOperation(f"the {self.name} store cannot list its keys")

    # -- records: field maps updated field by field --------------------------------------
    # Sessions keep one record per session id.  Updating fields rather than the
    # whole value lets two overlapping requests of one user change different keys
    # without losing either change.

    @abstractmethod
    def load_record(self, key: str, ttl: int | None) -> StoredRecord | None:
        """The record under *key*, its expiry reset to *ttl*; one round trip.

        ``None`` when absent.  Raises ``StoreError`` when *key* holds
        something that is not a record.
        """

    @abstractmethod
    def update_record(
        self,
        key: str,
        changed: Mapping[str, bytes],
        removed: Collection[str],
        ttl: int | None,
        base: StoredRecord | None = None,
    ) -> None:
        """Set *changed* fields and remove *removed* ones, atomically; expire in *ttl*.

        Fields neither changed nor removed keep the value they have in the store
        *now*, even if another client changed them since *base* was loaded: that
        is what makes overlapping updates of one record lose nothing.  *base* is the
        record this update derives from, when the caller loaded it.
        """

    @abstractmethod
    def replace_record(self, key: str, fields: Mapping[str, bytes], ttl: int | None) -> None:
        """Make the record under *key* exactly *fields*."""

    # -- batches ---------------------------------------------------------------------

    def batch(self) -> Batch:
        """A batch whose operations go to the server in as few round trips as it allows."""
        return SequentialBatch(self)

    # -- lifecycle -------------------------------------------------------------------

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the server answers."""
        self.get("__pyramid_kvs_ping__")

    def server_info(self) -> dict[str, str]:
        """What the store can tell an operator about its server (``pkvs ping``).

        Always ``store``, the backend's name; where known, ``server`` (its address,
        or ``in-process``) and ``version``.  At most one round trip.  This portable
        default asks nothing: a custom store without a server query answers its name.
        """
        return {"store": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the client's connections."""

    def shared_state(self) -> object:
        """What every prefixed view of this store shares: its client, or its data.

        Two stores with the same shared state reach the same server through the same
        connections, so one ``Batch`` can carry operations for both.
        """
        return self

    def shares_client_with(self, other: Store) -> bool:
        """Whether *other* is a view of the same client (under any prefix)."""
        return type(self) is type(other) and self.shared_state() is other.shared_state()


class Batch(ABC):
    """Operations queued to run together, in order, in as few round trips as possible.

    Use it as a context manager - the operations run when the block ends - or call
    ``execute``.  Each method returns a ``Pending`` whose ``value`` is available
    afterwards.  A failed operation re-raises its error from ``value``; a store
    outage raises ``StoreUnavailable`` from ``execute`` itself.

    Each store's batch implements every operation with a typed method of its own
    (``SequentialBatch``: calls of the store's methods; ``RedisBatch``: the same
    commands the store sends alone), so no operation travels as a name.
    """

    #: whether the whole batch travels in one round trip (a Redis pipeline); when
    #: false, each operation costs its own, so adding one to the batch saves nothing
    pipelined = False
    #: whether the keys live on several servers, a pipeline to each (a Redis
    #: Cluster): then an operation rides for free only beside keys of its hash tag
    #: (see ``stores.hash_tags``), and otherwise may cost a round trip of its own
    sharded = False

    def __init__(self, store: Store) -> None:
        self.store = store

    def _target(self, store: Store | None) -> Store:
        """*store* if it is a view of this batch's client; this batch's store if None."""
        if store is None or store is self.store:
            return self.store
        if not self.store.shares_client_with(store):
            raise ValueError(
                f"this batch runs on the {self.store.name} store's client; "
                f"the {store.name} store given does not share it"
            )
        return store

    @abstractmethod
    def get(self, key: str, *, store: Store | None = None) -> Pending[bytes | None]:
        """Queue ``Store.get``; *store*, as for ``load_record``."""

    @abstractmethod
    def get_and_touch(self, key: str, ttl: int | None) -> Pending[bytes | None]:
        """Queue ``Store.get_and_touch``."""

    @abstractmethod
    def set(self, key: str, value: bytes, ttl: int | None = None) -> Pending[None]:
        """Queue ``Store.set``."""

    @abstractmethod
    def add(self, key: str, value: bytes, ttl: int | None = None) -> Pending[bool]:
        """Queue ``Store.add``."""

    @abstractmethod
    def delete(self, key: str) -> Pending[bool]:
        """Queue ``Store.delete``."""

    @abstractmethod
    def touch(self, key: str, ttl: int | None) -> Pending[bool]:
        """Queue ``Store.touch``."""

    @abstractmethod
    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> Pending[int]:
        """Queue ``Store.incr``."""

    @abstractmethod
    def load_record(
        self, key: str, ttl: int | None, *, store: Store | None = None
    ) -> Pending[StoredRecord | None]:
        """Queue ``Store.load_record``.

        *store*, when given, is another view of this batch's client (another key
        prefix): a component can then load its record in a batch another component
        built, in the same round trip (the session in the rate limiter's batch).
        """

    @abstractmethod
    def replace_record(
        self, key: str, fields: Mapping[str, bytes], ttl: int | None, *, store: Store | None = None
    ) -> Pending[None]:
        """Queue ``Store.replace_record`` (a session moved to a new id)."""

    @abstractmethod
    def __len__(self) -> int:
        """The number of operations queued and not yet executed."""

    @abstractmethod
    def execute(self) -> None:
        """Run the queued operations; the batch is empty afterwards."""

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.execute()


class SequentialBatch(Batch):
    """A batch that calls the store's methods one after another.

    For stores without pipelining; in-process stores lose nothing by it.  Arguments
    are checked when an operation is queued, as a pipeline checks them, so a bad
    TTL fails at the line that queued it.
    """

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._calls: list[Callable[[], None]] = []

    def _queue(self, call: Callable[[], T]) -> Pending[T]:
        """Queue *call*; its result, or the store error it raised, resolves the Pending."""
        pending: Pending[T] = Pending()

        def run() -> None:
            try:
                pending.resolve(call())
            except StoreUnavailable:
                raise
            except StoreError as exc:
                pending.resolve(exc)

        self._calls.append(run)
        return pending

    def get(self, key: str, *, store: Store | None = None) -> Pending[bytes | None]:
        target = self._target(store)
        return self._queue(lambda: target.get(key))

    def get_and_touch(self, key: str, ttl: int | None) -> Pending[bytes | None]:
        ttl = check_ttl(ttl)
        return self._queue(lambda: self.store.get_and_touch(key, ttl))

    def set(self, key: str, value: bytes, ttl: int | None = None) -> Pending[None]:
        ttl = check_ttl(ttl)
        return self._queue(lambda: self.store.set(key, value, ttl))

    def add(self, key: str, value: bytes, ttl: int | None = None) -> Pending[bool]:
        ttl = check_ttl(ttl)
        return self._queue(lambda: self.store.add(key, value, ttl))

    def delete(self, key: str) -> Pending[bool]:
        return self._queue(lambda: self.store.delete(key))

    def touch(self, key: str, ttl: int | None) -> Pending[bool]:
        ttl = check_ttl(ttl)
        return self._queue(lambda: self.store.touch(key, ttl))

    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> Pending[int]:
        ttl = check_ttl(ttl)
        return self._queue(lambda: self.store.incr(key, amount, ttl))

    def load_record(
        self, key: str, ttl: int | None, *, store: Store | None = None
    ) -> Pending[StoredRecord | None]:
        target, ttl = self._target(store), check_ttl(ttl)
        return self._queue(lambda: target.load_record(key, ttl))

    def replace_record(
        self, key: str, fields: Mapping[str, bytes], ttl: int | None, *, store: Store | None = None
    ) -> Pending[None]:
        target, ttl = self._target(store), check_ttl(ttl)
        return self._queue(lambda: target.replace_record(key, fields, ttl))

    def __len__(self) -> int:
        return len(self._calls)

    def execute(self) -> None:
        calls, self._calls = self._calls, []
        for call in calls:
            call()


# -- optional capabilities ----------------------------------------------------------------
# What a store can do beyond the contract, for components that need more (the rate
# limiter's engines pick theirs by these).  Each capability is an abstract subclass
# of Store rather than a free-standing mixin: a component is then typed with one
# class that has both the contract and the capability (Python has no intersection
# types), and a store with several inherits each, Store being their common base.  A
# store opts in by inheriting: a promise about atomicity that a method's name alone
# could not make.

#: an argument of a script: the types Redis' protocol carries
ScriptArg = bytes | str | int | float


@dataclass(frozen=True)
class Script:
    """A Lua script written for Redis' scripting API (``redis.call``, ``KEYS``, ``ARGV``).

    ``sha`` is its SHA1 digest, the name a server caches it under: a store can run
    it by that name without sending the source again (``EVALSHA``).
    """

    source: str
    sha: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", digest)


class ScriptingBatch(Batch):
    """A batch that also runs scripts, each atomically, in the batch's round trip."""

    @abstractmethod
    def run_script(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[ScriptArg],
        convert: Callable[[Any], T],
        *,
        store: Store | None = None,
    ) -> Pending[T]:
        """Queue *script* on *keys* and *args*; *convert* turns its reply into the result.

        *keys* are contract keys: the store applies its prefix.  *store*, as for
        ``load_record``: another view of this batch's client, whose prefix applies.
        """


class ScriptingStore(Store):
    """A store whose batches run Lua scripts atomically (Redis).

    A check that reads, decides and writes several keys then runs on the server as
    one command, in the request's pipeline: atomic, on the server's clock, and
    without a round trip of its own.
    """

    @abstractmethod
    def batch(self) -> ScriptingBatch:
        """A batch that can also carry scripts."""


class CompareAndSwapStore(Store):
    """A store with compare-and-swap (memcached's ``gets`` and ``cas``).

    With ``add`` for an absent key, it makes the read-modify-write of one value
    atomic without a server-side script: read the value with its token, write back
    only if nobody wrote in between, else read again.  Keys are contract keys: the
    store prefixes them (and makes them valid for its server) itself.
    """

    @abstractmethod
    def gets(self, key: str) -> tuple[bytes | None, object]:
        """The value under *key* (``None`` when absent) and its token for ``cas``."""

    @abstractmethod
    def cas(self, key: str, value: bytes, token: object, ttl: int | None = None) -> bool:
        """Store *value* if *key* has not changed since ``gets`` gave *token*.

        ``False`` when another client wrote or removed it meanwhile.
        """


class LockingStore(Store):
    """A store in this process, whose lock makes any read-modify-write atomic (memory).

    It has its own clock, so a component reckons time as the store does (and the
    tests can move it).
    """

    @abstractmethod
    def atomically(self) -> AbstractContextManager[object]:
        """Hold the store's lock; reentrant, so the store's methods work inside."""

    @abstractmethod
    def now(self) -> float:
        """The store's clock, in seconds."""


def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """A predicate for Redis-style glob patterns (``*``, ``?``, ``[...]``)."""
    regex = re.compile(fnmatch.translate(pattern), re.DOTALL)
    return lambda key: regex.match(key) is not None
