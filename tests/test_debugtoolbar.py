"""The debug toolbar's KVS panel, and what the application pays when it is not there.

Applications are built with pyramid_debugtoolbar included as a development ``.ini``
includes it (``pyramid.includes`` and ``debugtoolbar.includes``); the panel is read
from the toolbar's history, as data and as the HTML of the toolbar's own page.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.interfaces import ITweens
from pyramid.request import Request
from webtest import TestApp

import apps
from pyramid_kvs import get_components
from pyramid_kvs.components import COMPONENT_NAMES
from pyramid_kvs.debugtoolbar import recording
from pyramid_kvs.debugtoolbar.recording import Recorder, RecordingStore, recording_store
from pyramid_kvs.settings import parse_store_url
from pyramid_kvs.stores import Store, StoreUnavailable, create_store
from pyramid_kvs.stores.base import CompareAndSwapStore, LockingStore, ScriptingStore
from pyramid_kvs.stores.memory import MemoryStore
from pyramid_kvs.testing.contract import StoreContract
from roundtrips import count_round_trips
from servers import unused_port

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}  # the toolbar's default hosts
TOOLBAR = {
    "pyramid.includes": "pyramid_debugtoolbar",
    "debugtoolbar.includes": "pyramid_kvs.debugtoolbar",
}
SECRET = "a-toolbar-test-secret-of-32-characters"
PERL_ID = "0123456789abcdef0123456789abcdef"


def start(request: Request) -> dict[str, Any]:
    request.session["stale"] = True
    return {}


def touch(request: Request) -> dict[str, Any]:
    """Every component: the cache missed then set, the Perl session read, the session
    changed (a key written, one removed)."""
    cache = request.cache
    cache.get("greeting")
    cache.set("greeting", "hello")
    session = request.session
    session["visits"] = session.get("visits", 0) + 1
    del session["stale"]
    return {"user": request.perlsess.get("user")}


def views(config: Configurator) -> None:
    apps.json_view(config, "start", start)
    apps.json_view(config, "touch", touch)
    apps.json_view(config, "home", lambda request: {}, "/")


def panel_of(config: Configurator, request_index: int = 0) -> Any:
    """The KVS panel of a request the toolbar saw (0: the latest)."""
    request_id, toolbar = config.registry.pdtb_history.last(request_index + 1)[request_index]
    (panel,) = [panel for panel in toolbar.panels if panel.name == "kvs"]
    return request_id, panel


def summary(data: dict[str, Any]) -> list[tuple[str, str, bool | None, int, str]]:
    """Each operation as (component, command, hit, call, kind of its call)."""
    calls = data["calls"]
    return [
        (op["component"], op["command"], op["hit"], op["call"], calls[op["call"]]["kind"])
        for op in data["operations"]
    ]


@pytest.fixture
def every_component(redis_url: str, memcached_address: str) -> dict[str, str]:
    """Sessions, cache and rate limiter on one Redis, Perl sessions in memcached."""
    return {
        **TOOLBAR,
        # the toolbar's own session panel loads the session whenever anything touches
        # request.session, before the rate limiter's pipeline could carry it
        "debugtoolbar.panels": "kvs",
        "kvs.cache.url": redis_url,
        "kvs.session.url": redis_url,
        "kvs.session.secret": SECRET,
        "kvs.ratelimit.limits": "100/second",
        "kvs.perlsess.url": "memcached://" + memcached_address,
        "kvs.perlsess.cookie_name": "CGISESSID",
    }


def test_the_panel_shows_a_request_touching_every_component(
    every_component: dict[str, str],
) -> None:
    config = apps.configure(every_component, views)
    app = TestApp(config.make_wsgi_app(), extra_environ=LOCAL)
    perl = get_components(config.registry).perlsess
    assert perl is not None
    perl.write(PERL_ID, {"user": "alice"})
    perl_bytes = len(perl.store.get(PERL_ID) or b"")

    app.get("/start")
    _, panel = panel_of(config)
    assert panel.data["session_writes"] == [
        {
            "command": "replace_record",
            "key": panel.data["operations"][-1]["key"],
            "written": ("stale", "__created__"),
            "removed": (),
            "bytes_written": panel.data["operations"][-1]["bytes_written"],
        }
    ]

    app.set_cookie("CGISESSID", PERL_ID)
    assert app.get("/touch").json == {"user": "alice"}
    request_id, panel = panel_of(config)
    data = panel.data
    assert summary(data) == [
        ("ratelimit", summary(data)[0][1], None, 0, "pipeline"),  # the check's script...
        ("session", "load_record", True, 0, "pipeline"),  # ...and the session's load
        ("cache", "get", False, 1, "call"),
        ("cache", "set", None, 2, "call"),
        ("perlsess", "get_bounded", True, 3, "call"),
        ("session", "update_record", None, 4, "call"),
    ]
    assert summary(data)[0][1].startswith("script ")
    operations = data["operations"]
    assert operations[2]["key"] == "cache::greeting"
    assert operations[3]["bytes_written"] == len(b'"hello"')
    assert operations[4]["bytes_read"] == perl_bytes > 0
    assert operations[4]["key"] == "perlsess::012345..."  # a Perl session id is a credential
    assert operations[1]["result"] == "2 fields"
    assert data["round_trips"] == 5
    assert data["in_process_calls"] == 0
    assert [call["store"] for call in data["calls"]] == ["redis"] * 3 + ["memcached", "redis"]
    assert all(call["micros"] > 0 for call in data["calls"])
    assert data["session_writes"] == [
        {
            "command": "update_record",
            "key": operations[1]["key"],
            "written": ("visits",),
            "removed": ("stale",),
            "bytes_written": len("visits") + len(b"1"),
        }
    ]
    ((verdict),) = data["ratelimit"]
    assert verdict["allowed"] is True
    assert verdict["limits"] == [
        {
            "policy": "default",
            "limit": "100/1s",
            "allowed": True,
            "remaining": 99,  # the session's first request (the first one had no session)
            "reset": verdict["limits"][0]["reset"],
            "retry_after": 0.0,
        }
    ]
    assert panel.nav_subtitle == "6 ops, 5 round trips"

    page = app.get(f"/_debug_toolbar/{request_id}").text
    assert "Key-value stores (pyramid_kvs)" in page
    table = page[page.index('id="kvs-operations"') :]
    for shown in ("load_record", "update_record", "get_bounded", "cache::greeting", "miss"):
        assert shown in table
    assert "<strong>5 round trips</strong>" in page
    session_table = page[page.index('id="kvs-session"') :]
    assert "<td>visits</td>" in session_table and "<td>stale</td>" in session_table
    assert "100/1s" in page and "<td>99</td>" in page
    assert PERL_ID not in page


def test_on_a_cluster_the_check_and_the_session_share_one_pipeline(
    redis_cluster_url: str,
) -> None:
    """Hash tags keep a holder's limits with its session: the panel shows one pipeline
    for both, and the session's save as its own call."""
    settings = {
        **TOOLBAR,
        "debugtoolbar.panels": "kvs",
        "kvs.cache.url": redis_cluster_url,
        "kvs.session.url": redis_cluster_url,
        "kvs.session.secret": SECRET,
        "kvs.ratelimit.limits": "100/second",
        "kvs.perlsess.url": redis_cluster_url,
        "kvs.perlsess.cookie_name": "CGISESSID",
    }
    config = apps.configure(settings, views)
    app = TestApp(config.make_wsgi_app(), extra_environ=LOCAL)
    try:
        app.get("/start")
        assert app.get("/touch").json == {"user": None}  # no Perl cookie
        _, panel = panel_of(config)
        assert summary(panel.data) == [
            ("ratelimit", summary(panel.data)[0][1], None, 0, "pipeline"),
            ("session", "load_record", True, 0, "pipeline"),
            ("cache", "get", False, 1, "call"),
            ("cache", "set", None, 2, "call"),
            ("session", "update_record", None, 3, "call"),
        ]
        assert panel.data["round_trips"] == 4
        assert panel.data["ratelimit"][0]["limits"][0]["remaining"] == 99
    finally:
        get_components(config.registry).close()


def test_a_refused_request_shows_its_verdict_and_in_process_calls() -> None:
    config = apps.configure(
        {**TOOLBAR, "kvs.ratelimit.limits": "1/minute", "kvs.ratelimit.holder": "ip"}, views
    )
    app = TestApp(config.make_wsgi_app(), extra_environ=LOCAL)
    app.get("/")
    app.get("/", status=429)
    _, panel = panel_of(config)
    data = panel.data
    ((verdict),) = data["ratelimit"]
    assert verdict["allowed"] is False
    assert verdict["retry_after"] >= 1
    assert verdict["limits"][0]["remaining"] == 0
    assert verdict["limits"][0]["allowed"] is False
    # the memory store's calls cross no network
    assert data["round_trips"] == 0
    assert data["in_process_calls"] == len(data["calls"]) > 0
    assert {op["component"] for op in data["operations"]} == {"ratelimit"}


def test_a_store_error_is_shown_on_its_operation() -> None:
    def read(request: Request) -> dict[str, Any]:
        return {"value": request.cache.get("answer")}

    config = apps.configure(
        {**TOOLBAR, "kvs.cache.url": f"redis://127.0.0.1:{unused_port()}/0"},
        lambda config: apps.json_view(config, "read", read),
    )
    app = TestApp(config.make_wsgi_app(), extra_environ=LOCAL)
    assert app.get("/read").json == {"value": None}  # a cache that is down misses
    _, panel = panel_of(config)
    (operation,) = panel.data["operations"]
    assert (operation["command"], operation["result"]) == ("get", "failed")
    assert "StoreUnavailable" in operation["error"]
    assert "StoreUnavailable" in panel.data["calls"][0]["error"]


# -- no cost without the toolbar --------------------------------------------------------------


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Calls of the panel's code: the instrumentation and the recorder lookup."""
    counts = {"wrap_store": 0, "observe_outcome": 0, "current_recorder": 0}
    for owner, name in (
        (recording.PanelInstrumentation, "wrap_store"),
        (recording.PanelInstrumentation, "observe_outcome"),
        (recording, "current_recorder"),
    ):
        original = getattr(owner, name)

        def counting(*args: Any, _name: str = name, _original: Any = original) -> Any:
            counts[_name] += 1
            return _original(*args)

        monkeypatch.setattr(owner, name, counting)
    return counts


def all_components(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "kvs.cache.url": "memory://",
        "kvs.session.url": "memory://",
        "kvs.ratelimit.limits": "100/second",
        "kvs.perlsess.url": "memory://",
        **(extra or {}),
    }


def exercise(config: Configurator, environ: dict[str, str]) -> None:
    app = TestApp(config.make_wsgi_app(), extra_environ=environ)
    get_components(config.registry).perlsess.write(PERL_ID, {"user": "alice"})  # type: ignore[union-attr]
    app.get("/start")
    app.set_cookie("perl", PERL_ID)
    app.get("/touch")


def test_without_the_toolbar_nothing_is_wrapped_nor_called(counted: dict[str, int]) -> None:
    config = apps.configure(all_components({"kvs.perlsess.cookie_name": "perl"}), views)
    exercise(config, LOCAL)
    components = get_components(config.registry)
    assert components.instrumentation is None
    assert components.ratelimiter is not None and components.ratelimiter.observe is None
    for name in COMPONENT_NAMES:
        assert type(components.store_of(name)) is MemoryStore
    assert counted == {"wrap_store": 0, "observe_outcome": 0, "current_recorder": 0}


def test_with_the_toolbar_the_same_requests_are_recorded(counted: dict[str, int]) -> None:
    """The counter above counts: the same application, the toolbar included."""
    config = apps.configure(all_components({**TOOLBAR, "kvs.perlsess.cookie_name": "perl"}), views)
    exercise(config, LOCAL)
    components = get_components(config.registry)
    for name in COMPONENT_NAMES:
        assert isinstance(components.store_of(name), RecordingStore)
    assert counted["wrap_store"] == len(COMPONENT_NAMES)
    assert counted["observe_outcome"] == 2
    assert counted["current_recorder"] > 0


def test_a_disabled_toolbar_wraps_nothing() -> None:
    config = apps.configure(all_components({**TOOLBAR, "debugtoolbar.enabled": "false"}), views)
    config.make_wsgi_app()
    components = get_components(config.registry)
    assert components.instrumentation is None
    assert type(components.store_of("cache")) is MemoryStore


def test_a_request_the_toolbar_does_not_watch_records_nothing() -> None:
    config = apps.configure(all_components(TOOLBAR), views)
    app = TestApp(config.make_wsgi_app(), extra_environ={"REMOTE_ADDR": "192.0.2.7"})
    app.get("/start")
    assert len(config.registry.pdtb_history) == 0
    assert recording.current_recorder() is None


# -- the include -------------------------------------------------------------------------------


def test_the_include_belongs_to_the_toolbar() -> None:
    config = Configurator(settings=all_components())
    with pytest.raises(ConfigurationError, match=r"debugtoolbar\.includes"):
        config.include("pyramid_kvs.debugtoolbar")


def test_components_built_before_the_toolbar_was_included_are_reported() -> None:
    config = Configurator(settings={**all_components(), "debugtoolbar.includes":
                                    "pyramid_kvs.debugtoolbar"})  # fmt: skip
    config.include("pyramid_kvs")
    config.commit()
    with pytest.warns(UserWarning, match="include pyramid_debugtoolbar before"):
        config.include("pyramid_debugtoolbar")


@pytest.mark.parametrize("first", ["pyramid_kvs", "pyramid_debugtoolbar"])
def test_the_rate_limiter_sits_under_the_toolbar_whatever_the_include_order(first: str) -> None:
    settings = {"kvs.ratelimit.limits": "1/minute", "kvs.ratelimit.holder": "ip"}
    config = Configurator(settings=settings)
    for name in (first, *{"pyramid_kvs", "pyramid_debugtoolbar"} - {first}):
        config.include(name)
    app = TestApp(config.make_wsgi_app(), extra_environ=LOCAL)
    names = [name for name, _ in config.registry.getUtility(ITweens).implicit()]
    assert names.index("pyramid_debugtoolbar.toolbar_tween_factory") < names.index(
        "pyramid_kvs.ratelimit.tween.ratelimit_tween_factory"
    )
    for _ in range(3):  # the toolbar's own pages are not counted
        app.get("/_debug_toolbar/static/toolbar/toolbar.css")


# -- the proxies -------------------------------------------------------------------------------


class TestARecordingStoreKeepsTheContract(StoreContract):
    """The whole contract through a proxy that records (on the memory store's moved clock)."""

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        self.now = 1_000_000.0
        self.recorder = Recorder()
        inner = MemoryStore(clock=lambda: self.now).with_prefix("test::")
        yield recording_store(inner, "cache", lambda: self.recorder)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("url", "capability"),
    [("memory://", LockingStore), ("redis", ScriptingStore), ("memcached", CompareAndSwapStore)],
)
def test_a_proxy_keeps_its_stores_capabilities(
    url: str, capability: type[Store], request: pytest.FixtureRequest
) -> None:
    inner = built(url, request)
    proxy = recording_store(inner, "ratelimit", Recorder)
    assert isinstance(proxy, capability)
    assert proxy.name == inner.name
    other = recording_store(inner.with_prefix("other::"), "session", Recorder)
    assert proxy.shares_client_with(other) and other.shares_client_with(proxy)
    assert proxy.shares_client_with(inner)
    assert not proxy.shares_client_with(MemoryStore())
    assert proxy.batch().pipelined is inner.batch().pipelined
    assert proxy.with_prefix("x::").inner.key_prefix == "x::"
    assert proxy.server_info()["store"] == inner.name
    proxy.ping()


def built(url: str, request: pytest.FixtureRequest) -> Store:
    if url == "redis":
        url = request.getfixturevalue("redis_url")
    elif url == "memcached":
        url = "memcached://" + request.getfixturevalue("memcached_address")
    name, options = parse_store_url(url)
    store = create_store(name, options).with_prefix("test::")
    request.addfinalizer(store.close)
    return store


@pytest.mark.parametrize("url", ["redis", "memcached"])
def test_round_trips_are_counted_as_the_store_sends_them(
    url: str, request: pytest.FixtureRequest
) -> None:
    recorder = Recorder()
    inner = built(url, request)
    inner.ping()  # connected: what is counted below is commands, not the handshake
    proxy = recording_store(inner, "cache", lambda: recorder)
    with count_round_trips() as sent:
        proxy.set("a", b"1")
        proxy.get_many(["a", "b"])
        with proxy.batch() as batch:
            batch.get("a")
            batch.add("n", b"1")
            batch.delete("a")
    assert recorder.round_trips == sent.total == (3 if url == "redis" else 5)
    assert [call.kind for call in recorder.calls] == ["call", "call", "pipeline"
                                                      if url == "redis" else "batch"]  # fmt: skip
    assert [(op.command, op.hit) for op in recorder.operations] == [
        ("set", None), ("get_many", True), ("get_many", False),
        ("get", True), ("add", None), ("delete", None),
    ]  # fmt: skip
    assert [op.result for op in recorder.operations[3:]] == ["hit", "added", "deleted"]


def test_compare_and_swap_through_a_proxy(request: pytest.FixtureRequest) -> None:
    recorder = Recorder()
    proxy = recording_store(built("memcached", request), "ratelimit", lambda: recorder)
    assert isinstance(proxy, CompareAndSwapStore)
    assert proxy.add("tat", b"1")
    value, token = proxy.gets("tat")
    assert proxy.cas("tat", b"2", token) and not proxy.cas("tat", b"3", token)
    assert [(op.command, op.result) for op in recorder.operations] == [
        ("add", "added"), ("gets", "hit"), ("cas", "swapped"), ("cas", "changed meanwhile"),
    ]  # fmt: skip
    assert value == b"1" and proxy.get("tat") == b"2"


def test_a_store_with_several_capabilities_keeps_them_all() -> None:
    class Both(MemoryStore, CompareAndSwapStore):
        def gets(self, key: str) -> tuple[bytes | None, object]:
            value = self.get(key)
            return value, value

        def cas(self, key: str, value: bytes, token: object, ttl: int | None = None) -> bool:
            with self.atomically():
                if self.get(key) != token:
                    return False
                self.set(key, value, ttl)
                return True

    proxy = recording_store(Both(), "cache", Recorder)
    assert isinstance(proxy, LockingStore) and isinstance(proxy, CompareAndSwapStore)
    assert type(proxy) is type(recording_store(Both(), "session", Recorder))  # made once
    proxy.set("k", b"1")
    assert proxy.cas("k", b"2", proxy.gets("k")[1]) and proxy.now() > 0
    proxy.close()


def test_a_failed_call_is_recorded_and_raised() -> None:
    recorder = Recorder()
    name, options = parse_store_url(f"redis://127.0.0.1:{unused_port()}/0")
    proxy = recording_store(create_store(name, options), "cache", lambda: recorder)
    with pytest.raises(StoreUnavailable):
        proxy.get("a")
    with pytest.raises(StoreUnavailable), proxy.batch() as batch:
        batch.get("a")
    assert [call.kind for call in recorder.calls] == ["call", "pipeline"]
    assert all(call.error and "StoreUnavailable" in call.error for call in recorder.calls)
    assert [op.result for op in recorder.operations] == ["failed", "failed"]


def test_without_a_recorder_a_proxy_only_delegates() -> None:
    inner = MemoryStore().with_prefix("p::")
    proxy = recording_store(inner, "cache", lambda: None)
    proxy.set("a", b"1")
    with proxy.batch() as batch:
        got = batch.get("a")
    assert got.value == b"1"
    assert inner.get("a") == b"1"


def test_the_toolbar_included_first_does_not_warn() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apps.configure(all_components(TOOLBAR), views).make_wsgi_app()
    assert not [warning for warning in caught if "KVS panel" in str(warning.message)]
