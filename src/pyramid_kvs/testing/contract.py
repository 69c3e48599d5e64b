"""The store contract as a test suite: check a store of your own with pyramid_kvs' tests.

Every backend of pyramid_kvs passes these tests (memory, Redis, memcached, the mock
store), and a store registered with ``pyramid_kvs.register`` can be checked the same
way - as ``dogpile.cache`` ships its backend tests.  Subclass ``StoreContract`` in a
test module and give it the store, empty and under a prefix::

    import pytest
    from pyramid_kvs.testing.contract import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self):
            store = MyStore(host="localhost").with_prefix("contract::")
            yield store
            store.close()

pytest then runs every test below against it.  Override ``advance`` when the store
follows a clock the test can move, so expiry is tested without waiting.  pytest is
needed only by the modules that import this one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from ..stores import Store, StoreError, UnsupportedOperation, ValueTooLarge
from ..stores.base import THIRTY_DAYS
from ..stores.memory import MemoryStore

__all__ = ["ODD_KEYS", "StoreContract"]

#: keys a store must keep apart and accept: spaces, control characters, non-ASCII,
#: longer than memcached's 250 bytes, the empty key
ODD_KEYS = [
    "plain",
    "with space",
    "new\nline",
    "tab\tand\x00nul",
    "ünïcødé ключ",
    "k" * 300,
    "#h:looks-hashed",
    "",
]


class StoreContract:
    """The contract every store keeps; subclass it with a ``store`` fixture."""

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        """The store under test: empty, under a key prefix of its own."""
        raise NotImplementedError("give the contract a store: override the store fixture")
        yield  # pragma: no cover - a generator, as the overrides usually are

    def other_client(self) -> Store:
        """A store that does not share the store under test's client."""
        return MemoryStore()

    def advance(self, seconds: float) -> None:
        """Let *seconds* pass for the store: by default, wait.

        Override it for a store whose clock the test controls.  Stores that count
        time in whole seconds (memcached) need the margins the tests already give.
        """
        time.sleep(seconds)

    def test_get_set_delete(self, store: Store) -> None:
        assert store.get("a") is None
        store.set("a", b"1")
        assert store.get("a") == b"1"
        store.set("a", b"\x00\xffbinary")
        assert store.get("a") == b"\x00\xffbinary"
        assert store.delete("a") is True
        assert store.delete("a") is False
        assert store.get("a") is None

    def test_add_only_when_absent(self, store: Store) -> None:
        assert store.add("a", b"first", ttl=60) is True
        assert store.add("a", b"second", ttl=60) is False
        assert store.get("a") == b"first"

    def test_incr_counts_atomically_from_zero(self, store: Store) -> None:
        assert store.incr("n") == 1
        assert store.incr("n", 5) == 6
        assert store.get("n") == b"6"
        assert store.incr("m", 3, ttl=60) == 3

    def test_incr_from_threads_loses_no_increment(self, store: Store) -> None:
        def work() -> None:
            for _ in range(50):
                store.incr("hits", ttl=60)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.get("hits") == b"200"

    def test_incr_on_a_non_integer_is_a_store_error(self, store: Store) -> None:
        store.set("text", b"abc")
        with pytest.raises(StoreError):
            store.incr("text")

    def test_pop_reads_and_removes(self, store: Store) -> None:
        store.set("a", b"v")
        assert store.pop("a") == b"v"
        assert store.pop("a") is None
        assert store.get("a") is None

    def test_get_bounded_refuses_a_value_over_the_bound(self, store: Store) -> None:
        store.set("session-id", b"x" * 100)
        store.set("empty", b"")
        for _ in range(3):  # a refusal leaves the client usable (memcached reconnects)
            with pytest.raises(ValueTooLarge) as refused:
                store.get_bounded("session-id", 99)
            assert (refused.value.size, refused.value.max_size) == (100, 99)
            assert store.get_bounded("session-id", 100) == b"x" * 100  # the bound is inclusive
        assert "session-id" not in str(refused.value)  # keys may be credentials
        assert store.get_bounded("absent", 10) is None
        assert store.get_bounded("empty", 0) == b""
        assert store.get("session-id") == b"x" * 100  # refused, not removed

    def test_get_many_keeps_order_and_misses(self, store: Store) -> None:
        store.set_many({"a": b"1", "c": b"3"}, ttl=60)
        assert store.get_many(["a", "b", "c"]) == [b"1", None, b"3"]
        assert store.get_many([]) == []

    def test_odd_keys_work_and_stay_distinct(self, store: Store) -> None:
        for index, key in enumerate(ODD_KEYS):
            store.set(key, str(index).encode())
        for index, key in enumerate(ODD_KEYS):
            assert store.get(key) == str(index).encode(), key
        assert store.get_many(ODD_KEYS) == [str(i).encode() for i in range(len(ODD_KEYS))]

    def test_prefixes_isolate_views_of_one_client(self, store: Store) -> None:
        other = store.with_prefix("other::")
        store.set("k", b"mine")
        assert other.get("k") is None
        other.set("k", b"theirs")
        assert store.get("k") == b"mine"

    def test_expiry_touch_and_get_and_touch(self, store: Store) -> None:
        store.set("short", b"1", ttl=1)
        store.set("long", b"2", ttl=100)
        store.set("touched", b"3", ttl=100)
        store.set("read", b"4", ttl=100)
        store.set("forever", b"5")
        store.set("thirty-days", b"6", ttl=THIRTY_DAYS + 5)
        assert store.touch("touched", 1) is True
        assert store.touch("absent", 1) is False
        assert store.get_and_touch("read", 1) == b"4"
        assert store.get_and_touch("absent", 1) is None
        assert store.incr("counter", ttl=1) == 1
        assert store.add("added", b"7", ttl=1) is True
        self.advance(2.2)
        assert store.get("short") is None
        assert store.get("touched") is None
        assert store.get("read") is None
        assert store.get("counter") is None
        assert store.get("added") is None
        assert store.get("long") == b"2"
        assert store.get("forever") == b"5"
        # more than 30 days is no absolute time in 1970 on memcached
        assert store.get("thirty-days") == b"6"

    def test_incr_keeps_the_expiry_set_at_creation(self, store: Store) -> None:
        store.incr("window", ttl=1)
        self.advance(0.6)
        store.incr("window", ttl=1)
        self.advance(1.6)
        assert store.get("window") is None

    def test_touch_without_ttl_removes_the_expiry(self, store: Store) -> None:
        store.set("k", b"v", ttl=1)
        assert store.touch("k", None) is True
        self.advance(2.1)
        assert store.get("k") == b"v"

    @pytest.mark.parametrize("ttl", [0, -1, 1.5, "10"])
    def test_invalid_ttl_is_rejected(self, store: Store, ttl: object) -> None:
        with pytest.raises((TypeError, ValueError)):
            store.set("k", b"v", ttl=ttl)  # type: ignore[arg-type]

    def test_values_must_be_bytes(self, store: Store) -> None:
        with pytest.raises(TypeError):
            store.set("k", "text")  # type: ignore[arg-type]

    def test_scan_lists_own_prefix_only(self, store: Store) -> None:
        if not store.can_scan:
            with pytest.raises(UnsupportedOperation):
                list(store.scan())
            return
        store.set("user:1", b"a")
        store.set("user:2", b"b")
        store.set("group:1", b"c")
        store.with_prefix("other::").set("user:4", b"e")
        assert sorted(store.scan()) == ["group:1", "user:1", "user:2"]
        assert sorted(store.scan("user:*")) == ["user:1", "user:2"]
        assert list(store.scan("nothing*")) == []

    def test_batch_runs_every_operation(self, store: Store) -> None:
        store.set("existing", b"old")
        with store.batch() as batch:
            got = batch.get("existing")
            wrote = batch.set("new", b"value", ttl=60)
            counted = batch.incr("counter", 2, ttl=60)
            added = batch.add("existing", b"no", ttl=60)
            touched = batch.get_and_touch("existing", 60)
            deleted = batch.delete("missing")
            expiring = batch.touch("new", 60)
            kept = batch.touch("existing", None)
            absent = batch.touch("missing", None)
            assert len(batch) == 9
        assert got.value == b"old"
        assert wrote.value is None
        assert counted.value == 2
        assert added.value is False
        assert touched.value == b"old"
        assert deleted.value is False
        assert (expiring.value, kept.value, absent.value) == (True, True, False)
        assert store.get("new") == b"value"

    def test_batch_reports_a_failed_operation_on_its_result(self, store: Store) -> None:
        store.set("text", b"abc")
        with store.batch() as batch:
            bad = batch.incr("text")
            good = batch.get("text")
        assert good.value == b"abc"
        with pytest.raises(StoreError):
            bad.value  # noqa: B018

    def test_pending_value_before_execution_is_an_error(self, store: Store) -> None:
        pending = store.batch().get("k")
        with pytest.raises(RuntimeError):
            pending.value  # noqa: B018

    def test_records_load_update_replace(self, store: Store) -> None:
        assert store.load_record("r", 60) is None
        store.replace_record("r", {"a": b"1", "b": b"2"}, 60)
        loaded = store.load_record("r", 60)
        assert loaded is not None and dict(loaded.fields) == {"a": b"1", "b": b"2"}
        store.update_record("r", {"c": b"3", "a": b"10"}, ["b"], 60, base=loaded)
        loaded = store.load_record("r", 60)
        assert loaded is not None and dict(loaded.fields) == {"a": b"10", "c": b"3"}
        store.replace_record("r", {"z": b"26"}, 60)
        loaded = store.load_record("r", 60)
        assert loaded is not None and dict(loaded.fields) == {"z": b"26"}
        store.update_record("r", {}, ["z"], 60)
        assert store.load_record("r", 60) is None  # an emptied record is gone
        store.update_record("new", {"x": b""}, [], 60)
        loaded = store.load_record("new", 60)
        assert loaded is not None and dict(loaded.fields) == {"x": b""}

    def test_record_updates_keep_fields_changed_by_others(self, store: Store) -> None:
        store.replace_record("r", {"a": b"1", "b": b"1"}, 60)
        first = store.load_record("r", 60)
        second = store.load_record("r", 60)
        store.update_record("r", {"a": b"first"}, [], 60, base=first)
        store.update_record("r", {"b": b"second"}, [], 60, base=second)  # stale base
        loaded = store.load_record("r", 60)
        assert loaded is not None
        assert dict(loaded.fields) == {"a": b"first", "b": b"second"}

    def test_concurrent_record_updates_lose_nothing(self, store: Store) -> None:
        store.replace_record("r", {"start": b"1"}, 60)

        def writer(number: int) -> None:
            for step in range(10):
                base = store.load_record("r", 60)
                store.update_record("r", {f"w{number}-{step}": b"x"}, [], 60, base=base)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        loaded = store.load_record("r", 60)
        assert loaded is not None and len(loaded.fields) == 41

    def test_record_expiry_is_reset_by_loading(self, store: Store) -> None:
        # memcached's clock ticks in whole seconds, so an item with a TTL of n seconds
        # lives between n - 1 and n seconds: the margins below allow for that.
        store.replace_record("idle", {"a": b"1"}, 1)
        store.replace_record("used", {"a": b"1"}, 3)
        self.advance(1.5)
        assert store.load_record("used", 4) is not None  # reset: 4 more seconds
        self.advance(2.0)  # past the first expiry, before the second
        assert store.load_record("idle", 4) is None
        assert store.load_record("used", 4) is not None

    def test_a_plain_value_is_no_record(self, store: Store) -> None:
        store.set("plain", b"abc")
        with pytest.raises(StoreError):
            store.load_record("plain", 60)

    def test_a_record_loads_in_a_batch(self, store: Store) -> None:
        store.replace_record("r", {"a": b"1"}, 60)
        with store.batch() as batch:
            record = batch.load_record("r", 60)
            missing = batch.load_record("nothing", 60)
        assert record.value is not None and dict(record.value.fields) == {"a": b"1"}
        assert missing.value is None

    def test_a_batch_carries_records_of_another_prefix_of_its_client(self, store: Store) -> None:
        sessions = store.with_prefix("sessions::")
        sessions.replace_record("r", {"a": b"1"}, 60)
        with store.batch() as batch:
            counted = batch.incr("hits", ttl=60)
            record = batch.load_record("r", 60, store=sessions)
            batch.replace_record("moved", {"b": b"2"}, 60, store=sessions)
        assert counted.value == 1
        assert record.value is not None and dict(record.value.fields) == {"a": b"1"}
        moved = sessions.load_record("moved", 60)
        assert moved is not None and dict(moved.fields) == {"b": b"2"}
        assert store.load_record("moved", 60) is None  # written under the other prefix only
        assert store.shares_client_with(sessions)

    def test_a_batch_refuses_a_store_on_another_client(self, store: Store) -> None:
        other = self.other_client()
        assert not store.shares_client_with(other)
        with pytest.raises(ValueError, match="does not share"):
            store.batch().load_record("r", 60, store=other)

    def test_server_info_names_the_store(self, store: Store) -> None:
        info = store.server_info()
        assert info["store"] == store.name
        assert all(isinstance(value, str) for value in info.values())
