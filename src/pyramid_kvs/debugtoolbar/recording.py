"""Recording proxies: each component's store, as the KVS panel sees it.

With the panel included, every component holds a ``RecordingStore`` in front of
its store.  The proxy delegates every call unchanged and, when the current request
has a ``Recorder`` (the toolbar made a panel for it), notes what was asked and what
came back: the command, the key, hit or miss, the bytes, the time.  Without a
recorder a call costs one lookup of the current request and nothing is kept.

A proxy must not change what the component can do, so it keeps the store's
capabilities: it is a ``ScriptingStore``, ``LockingStore`` or
``CompareAndSwapStore`` when the store is (the rate limiter chooses its engine by
them), its batches are pipelined when the store's are, and it shares a client with
the proxies of the other components on the same client (a session load still rides
in the rate limiter's pipeline).

Round trips are counted the way the store sends them: one per direct call, one per
pipelined batch, one per operation of a batch that is not pipelined.  Calls of a
store in the process (a ``LockingStore``: memory) cross no network and are counted
apart.  A store that makes several requests for one call (memcached's
compare-and-swap retries) counts one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar, cast

from pyramid.request import Request
from pyramid.threadlocal import get_current_request

from ..perlsess import redact
from ..ratelimit.limits import Outcome
from ..stores import Batch, Pending, Store, StoreError
from ..stores.base import (
    CompareAndSwapStore,
    LockingStore,
    Script,
    ScriptArg,
    ScriptingBatch,
    ScriptingStore,
    StoredRecord,
)

T = TypeVar("T")
R = TypeVar("R", bound="RecordingStore")

#: where the panel puts the request's recorder (``request.environ``)
RECORDER_KEY = "pyramid_kvs.debugtoolbar.recorder"


@dataclass(frozen=True)
class Operation:
    """One operation a component asked of its store."""

    component: str
    command: str
    #: the key as stored, prefix included (a Perl session id shortened: a credential)
    key: str
    #: for reads, whether the key held a value; ``None`` for other commands
    hit: bool | None
    bytes_read: int
    bytes_written: int
    #: what the store answered, in a few words
    result: str
    #: the index of the call that carried it in ``Recorder.calls``
    call: int
    error: str | None = None


@dataclass(frozen=True)
class Call:
    """One call of a store: a direct call, or the execution of a batch."""

    store: str
    #: ``call``, ``pipeline`` or ``batch`` (not pipelined: one request per operation)
    kind: str
    operations: int
    #: the network round trips it took (none for a store in the process)
    round_trips: int
    micros: float
    error: str | None = None


@dataclass(frozen=True)
class SessionWrite:
    """What a session's save did to its record: the keys written and removed."""

    command: str
    key: str
    written: tuple[str, ...]
    removed: tuple[str, ...]
    bytes_written: int


@dataclass
class Recorder:
    """What one request asked of the stores, for the panel."""

    operations: list[Operation] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    session_writes: list[SessionWrite] = field(default_factory=list)
    #: the rate limiter's verdicts, in order (the tween's, then a view's own)
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def round_trips(self) -> int:
        return sum(call.round_trips for call in self.calls)

    @property
    def in_process_calls(self) -> int:
        return sum(1 for call in self.calls if call.round_trips == 0)

    def report(self) -> dict[str, Any]:
        """Everything recorded, as plain data (what the panel's template shows)."""
        return {
            "operations": [asdict(operation) for operation in self.operations],
            "calls": [asdict(call) for call in self.calls],
            "round_trips": self.round_trips,
            "in_process_calls": self.in_process_calls,
            "session_writes": [asdict(write) for write in self.session_writes],
            "ratelimit": [_outcome(outcome) for outcome in self.outcomes],
        }


def _outcome(outcome: Outcome) -> dict[str, Any]:
    return {
        "allowed": outcome.allowed,
        "retry_after": outcome.retry_after,
        "limits": [
            {
                "policy": name,
                "limit": f"{state.limit.amount}/{state.limit.window}s",
                "allowed": state.allowed,
                "remaining": state.remaining,
                "reset": round(state.reset, 3),
                "retry_after": round(state.retry_after, 3),
            }
            for name, state in zip(outcome.names, outcome.states, strict=True)
        ],
    }


def current_recorder() -> Recorder | None:
    """The recorder of the request being served, if the toolbar made a panel for it."""
    request = get_current_request()
    if request is None:
        return None
    recorder: Recorder | None = request.environ.get(RECORDER_KEY)
    return recorder


class PanelInstrumentation:
    """What the components are built with when the panel is included.

    See ``pyramid_kvs.components.Instrumentation``.
    """

    def wrap_store(self, component: str, store: Store) -> Store:
        return recording_store(store, component, current_recorder)

    def observe_outcome(self, request: Request, outcome: Outcome) -> None:
        recorder = request.environ.get(RECORDER_KEY)
        if recorder is not None:
            recorder.outcomes.append(outcome)


# -- what a reply tells: hit or miss, bytes read, a few words --------------------------------

Reading = tuple[bool | None, int, str]


def _value(reply: bytes | None) -> Reading:
    return (False, 0, "miss") if reply is None else (True, len(reply), "hit")


def _record(reply: StoredRecord | None) -> Reading:
    if reply is None:
        return False, 0, "miss"
    return True, _record_size(reply.fields), f"{len(reply.fields)} fields"


def _done(reply: object) -> Reading:
    return None, 0, "ok"


def _answer(yes: str, no: str) -> Callable[[bool], Reading]:
    return lambda reply: (None, 0, yes if reply else no)


def _number(reply: int) -> Reading:
    return None, 0, str(reply)


def _gets(reply: tuple[bytes | None, object]) -> Reading:
    return _value(reply[0])


def _script(reply: object) -> Reading:
    return None, 0, "ran"


def _record_size(fields: Mapping[str, bytes]) -> int:
    return sum(len(name.encode("utf-8", "surrogateescape")) + len(value)
               for name, value in fields.items())  # fmt: skip


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class RecordingStore(Store):
    """A component's store, recorded while the current request has a recorder.

    ``inner`` is the store itself.  Build one with ``recording_store``, which picks
    the class keeping the store's capabilities.
    """

    def __init__(
        self, inner: Store, component: str, recorder_of: Callable[[], Recorder | None]
    ) -> None:
        super().__init__(inner.key_prefix)
        self.inner = inner
        self.component = component
        self.recorder_of = recorder_of
        self.name = inner.name
        self.can_scan = inner.can_scan
        self.atomic_pop = inner.atomic_pop
        #: a store in this process: its calls cross no network
        self.in_process = isinstance(inner, LockingStore)

    def with_prefix(self: R, key_prefix: str) -> R:
        clone = super().with_prefix(key_prefix)
        clone.inner = self.inner.with_prefix(key_prefix)
        return clone

    def shown_key(self, key: str) -> str:
        """*key* as the panel shows it: prefixed, a Perl session id shortened."""
        return self.key_prefix + (redact(key) if self.component == "perlsess" else key)

    # -- recording ---------------------------------------------------------------------

    def _call(
        self,
        command: str,
        keys: Sequence[str],
        run: Callable[[], T],
        read: Callable[[T], Reading | list[Reading]],
        written: Sequence[int] = (),
    ) -> T:
        """Run *run* (the inner store's call); record it when there is a recorder.

        *keys* are the operation's keys, one operation recorded for each, with the
        bytes *written* under each; *read* tells what the reply means.
        """
        recorder = self.recorder_of()
        if recorder is None:
            return run()
        start = time.perf_counter_ns()
        try:
            reply = run()
        except StoreError as exc:
            index = self._note_call(recorder, "call", len(keys), start, _error(exc))
            for key, size in _sized(keys, written):
                self._note(recorder, index, command, key, (None, 0, "failed"), size, _error(exc))
            raise
        index = self._note_call(recorder, "call", len(keys), start)
        readings = _split(read(reply), len(keys))
        for (key, size), reading in zip(_sized(keys, written), readings, strict=True):
            self._note(recorder, index, command, key, reading, size)
        return reply

    def _note_call(
        self, recorder: Recorder, kind: str, operations: int, start: int, error: str | None = None
    ) -> int:
        micros = (time.perf_counter_ns() - start) / 1000
        if self.in_process:
            round_trips = 0
        elif kind == "batch":
            round_trips = operations
        else:
            round_trips = 1
        recorder.calls.append(Call(self.name, kind, operations, round_trips, micros, error))
        return len(recorder.calls) - 1

    def _note(
        self,
        recorder: Recorder,
        call: int,
        command: str,
        key: str,
        reading: Reading,
        written: int,
        error: str | None = None,
    ) -> None:
        hit, read, result = reading
        recorder.operations.append(
            Operation(
                self.component,
                command,
                self.shown_key(key),
                hit,
                read,
                written,
                result,
                call,
                error,
            )
        )

    def _note_session_write(
        self,
        command: str,
        key: str,
        written: Mapping[str, bytes],
        removed: Collection[str] = (),
    ) -> None:
        """A session's save: which of its keys it wrote and removed."""
        recorder = self.recorder_of()
        if recorder is None or self.component != "session":
            return
        recorder.session_writes.append(
            SessionWrite(
                command,
                self.shown_key(key),
                tuple(written),
                tuple(removed),
                _record_size(written),
            )
        )

    # -- the contract, delegated -----------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        return self._call("get", [key], lambda: self.inner.get(key), _value)

    def get_bounded(self, key: str, max_size: int) -> bytes | None:
        return self._call(
            "get_bounded", [key], lambda: self.inner.get_bounded(key, max_size), _value
        )

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._call("get_many", keys, lambda: self.inner.get_many(keys), _values)

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        self._call("set", [key], lambda: self.inner.set(key, value, ttl), _done, [len(value)])

    def set_many(self, mapping: Mapping[str, bytes], ttl: int | None = None) -> None:
        sizes = [len(value) for value in mapping.values()]
        self._call("set_many", list(mapping), lambda: self.inner.set_many(mapping, ttl),
                   _done, sizes)  # fmt: skip

    def add(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        return self._call(
            "add", [key], lambda: self.inner.add(key, value, ttl), _answer("added", "exists"),
            [len(value)],
        )  # fmt: skip

    def delete(self, key: str) -> bool:
        self._note_session_write("delete", key, {})
        return self._call(
            "delete", [key], lambda: self.inner.delete(key), _answer("deleted", "absent")
        )

    def touch(self, key: str, ttl: int | None) -> bool:
        return self._call(
            "touch", [key], lambda: self.inner.touch(key, ttl), _answer("touched", "absent")
        )

    def get_and_touch(self, key: str, ttl: int | None) -> bytes | None:
        return self._call(
            "get_and_touch", [key], lambda: self.inner.get_and_touch(key, ttl), _value
        )

    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> int:
        return self._call("incr", [key], lambda: self.inner.incr(key, amount, ttl), _number)

    def pop(self, key: str) -> bytes | None:
        return self._call("pop", [key], lambda: self.inner.pop(key), _value)

    def scan(self, pattern: str = "*") -> Iterator[str]:
        keys = self._call(
            "scan", [pattern], lambda: list(self.inner.scan(pattern)),
            lambda found: (None, 0, f"{len(found)} keys"),
        )  # fmt: skip
        return iter(keys)

    def load_record(self, key: str, ttl: int | None) -> StoredRecord | None:
        return self._call("load_record", [key], lambda: self.inner.load_record(key, ttl), _record)

    def update_record(
        self,
        key: str,
        changed: Mapping[str, bytes],
        removed: Collection[str],
        ttl: int | None,
        base: StoredRecord | None = None,
    ) -> None:
        self._note_session_write("update_record", key, changed, removed)
        self._call(
            "update_record", [key],
            lambda: self.inner.update_record(key, changed, removed, ttl, base),
            _done, [_record_size(changed)],
        )  # fmt: skip

    def replace_record(self, key: str, fields: Mapping[str, bytes], ttl: int | None) -> None:
        self._note_session_write("replace_record", key, fields)
        self._call(
            "replace_record", [key], lambda: self.inner.replace_record(key, fields, ttl),
            _done, [_record_size(fields)],
        )  # fmt: skip

    def batch(self) -> Batch:
        return RecordingBatch(self, self.inner.batch())

    # -- the rest: the store's own ---------------------------------------------------------

    def ping(self) -> None:
        self.inner.ping()

    def server_info(self) -> dict[str, str]:
        return self.inner.server_info()

    def close(self) -> None:
        self.inner.close()

    def shared_state(self) -> object:
        return self.inner.shared_state()

    def shares_client_with(self, other: Store) -> bool:
        return self.inner.shares_client_with(unwrap(other))


def unwrap(store: Store) -> Store:
    """The store behind a recording proxy (*store* itself otherwise)."""
    return store.inner if isinstance(store, RecordingStore) else store


def _values(reply: list[bytes | None]) -> list[Reading]:
    return [_value(value) for value in reply]


def _split(reading: Reading | list[Reading], count: int) -> list[Reading]:
    """One reading per operation: a multi-key reply gives its own."""
    return reading if isinstance(reading, list) else [reading] * count


def _sized(keys: Sequence[str], written: Sequence[int]) -> list[tuple[str, int]]:
    return list(zip(keys, written or [0] * len(keys), strict=True))


class RecordingBatch(Batch):
    """A store's batch, recorded when it runs: one call, one reading per operation."""

    store: RecordingStore

    def __init__(self, store: RecordingStore, inner: Batch) -> None:
        super().__init__(store)
        self.inner = inner
        self.pipelined = inner.pipelined
        self.sharded = inner.sharded
        #: the request's recorder, if any: without one nothing is kept
        self._recorder = store.recorder_of()
        #: the queued operations, to read once the batch ran
        self._queued: list[
            tuple[RecordingStore, str, str, Pending[Any], Callable[[Any], Reading], int]
        ] = []

    def _on(self, store: Store | None) -> tuple[RecordingStore, Store | None]:
        """The view an operation is recorded under, and the store the inner batch gets."""
        if isinstance(store, RecordingStore):
            return store, store.inner
        return self.store, store

    def _queue(
        self,
        view: RecordingStore,
        command: str,
        key: str,
        pending: Pending[T],
        read: Callable[[T], Reading],
        written: int = 0,
    ) -> Pending[T]:
        if self._recorder is not None:
            self._queued.append((view, command, key, pending, read, written))
        return pending

    def get(self, key: str, *, store: Store | None = None) -> Pending[bytes | None]:
        view, inner = self._on(store)
        return self._queue(view, "get", key, self.inner.get(key, store=inner), _value)

    def get_and_touch(self, key: str, ttl: int | None) -> Pending[bytes | None]:
        pending = self.inner.get_and_touch(key, ttl)
        return self._queue(self.store, "get_and_touch", key, pending, _value)

    def set(self, key: str, value: bytes, ttl: int | None = None) -> Pending[None]:
        pending = self.inner.set(key, value, ttl)
        return self._queue(self.store, "set", key, pending, _done, len(value))

    def add(self, key: str, value: bytes, ttl: int | None = None) -> Pending[bool]:
        pending = self.inner.add(key, value, ttl)
        return self._queue(self.store, "add", key, pending, _answer("added", "exists"), len(value))

    def delete(self, key: str) -> Pending[bool]:
        self.store._note_session_write("delete", key, {})
        pending = self.inner.delete(key)
        return self._queue(self.store, "delete", key, pending, _answer("deleted", "absent"))

    def touch(self, key: str, ttl: int | None) -> Pending[bool]:
        pending = self.inner.touch(key, ttl)
        return self._queue(self.store, "touch", key, pending, _answer("touched", "absent"))

    def incr(self, key: str, amount: int = 1, ttl: int | None = None) -> Pending[int]:
        return self._queue(self.store, "incr", key, self.inner.incr(key, amount, ttl), _number)

    def load_record(
        self, key: str, ttl: int | None, *, store: Store | None = None
    ) -> Pending[StoredRecord | None]:
        view, inner = self._on(store)
        pending = self.inner.load_record(key, ttl, store=inner)
        return self._queue(view, "load_record", key, pending, _record)

    def replace_record(
        self, key: str, fields: Mapping[str, bytes], ttl: int | None, *, store: Store | None = None
    ) -> Pending[None]:
        view, inner = self._on(store)
        view._note_session_write("replace_record", key, fields)
        pending = self.inner.replace_record(key, fields, ttl, store=inner)
        return self._queue(view, "replace_record", key, pending, _done, _record_size(fields))

    def __len__(self) -> int:
        return len(self.inner)

    def execute(self) -> None:
        queued, self._queued = self._queued, []
        recorder = self._recorder
        if recorder is None or not queued:
            self.inner.execute()
            return
        kind = "pipeline" if self.pipelined else "batch"
        start = time.perf_counter_ns()
        try:
            self.inner.execute()
        except StoreError as exc:
            index = self.store._note_call(recorder, kind, len(queued), start, _error(exc))
            for view, command, key, _, _, written in queued:
                view._note(
                    recorder, index, command, key, (None, 0, "failed"), written, _error(exc)
                )
            raise
        index = self.store._note_call(recorder, kind, len(queued), start)
        for view, command, key, pending, read, written in queued:
            try:
                reading = read(pending.value)
            except StoreError as exc:
                view._note(
                    recorder, index, command, key, (None, 0, "failed"), written, _error(exc)
                )
            else:
                view._note(recorder, index, command, key, reading, written)


class RecordingScriptingBatch(RecordingBatch, ScriptingBatch):
    """A batch that also runs scripts (Redis): the rate limiter's checks."""

    inner: ScriptingBatch

    def run_script(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[ScriptArg],
        convert: Callable[[Any], T],
        *,
        store: Store | None = None,
    ) -> Pending[T]:
        view, inner = self._on(store)
        pending = self.inner.run_script(script, keys, args, convert, store=inner)
        written = sum(len(arg) for arg in args if isinstance(arg, (bytes, str)))
        shown = ", ".join(keys)
        return self._queue(view, f"script {script.sha[:8]}", shown, pending, _script, written)


class _RecordingScriptingStore(RecordingStore, ScriptingStore):
    inner: ScriptingStore

    def batch(self) -> ScriptingBatch:
        return RecordingScriptingBatch(self, self.inner.batch())


class _RecordingLockingStore(RecordingStore, LockingStore):
    inner: LockingStore

    def atomically(self) -> AbstractContextManager[object]:
        return self.inner.atomically()

    def now(self) -> float:
        return self.inner.now()


class _RecordingCompareAndSwapStore(RecordingStore, CompareAndSwapStore):
    inner: CompareAndSwapStore

    def gets(self, key: str) -> tuple[bytes | None, object]:
        return self._call("gets", [key], lambda: self.inner.gets(key), _gets)

    def cas(self, key: str, value: bytes, token: object, ttl: int | None = None) -> bool:
        return self._call(
            "cas", [key], lambda: self.inner.cas(key, value, token, ttl),
            _answer("swapped", "changed meanwhile"), [len(value)],
        )  # fmt: skip


#: each capability, and the proxy class keeping it
_CAPABILITIES: tuple[tuple[type[Store], type[RecordingStore]], ...] = (
    (ScriptingStore, _RecordingScriptingStore),
    (LockingStore, _RecordingLockingStore),
    (CompareAndSwapStore, _RecordingCompareAndSwapStore),
)
_PROXY_CLASSES: dict[tuple[type[RecordingStore], ...], type[RecordingStore]] = {}


def recording_store(
    inner: Store, component: str, recorder_of: Callable[[], Recorder | None]
) -> RecordingStore:
    """A recording proxy of *inner* for *component*, with *inner*'s capabilities.

    *recorder_of* gives the current request's recorder, or ``None`` (nothing is
    recorded then).
    """
    bases = tuple(proxy for capability, proxy in _CAPABILITIES if isinstance(inner, capability))
    if len(bases) <= 1:
        return (bases[0] if bases else RecordingStore)(inner, component, recorder_of)
    proxy_class = _PROXY_CLASSES.get(bases)
    if proxy_class is None:
        # a store with several capabilities (a custom one) gets a proxy with them all
        proxy_class = cast("type[RecordingStore]", type("RecordingStore", bases, {}))
        _PROXY_CLASSES[bases] = proxy_class
    return proxy_class(inner, component, recorder_of)
