"""What ``includeme`` builds for one application: its components and the stores they share.

Built once, when the configuration is committed, and kept on the application's
registry - never on a class or a module - so two applications in one process each
have their own settings and connections.  Components configured with the same store
settings share one client (one connection pool, one circuit breaker), each under its
own key prefix.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyramid.exceptions import ConfigurationError
from pyramid.registry import Registry
from pyramid.request import Request

from .cache import Cache, parse_cache
from .codecs import Codec, UnsignedPickleWarning, get_codec
from .perlsess import PerlSessionReader, parse_perlsess
from .ratelimit.limiter import RateLimiter
from .ratelimit.limits import Outcome
from .ratelimit.settings import parse_ratelimit
from .session import SessionFactory, parse_session
from .settings import StoreSpec
from .stores import Batch, MissingExtra, Store, create_store

log = logging.getLogger(__name__)

#: where an application's ``Components`` live on its registry
COMPONENTS_KEY = "pyramid_kvs.components"
#: set by ``pyramid_kvs.testing``: every configured store becomes a mock store
FORCE_MOCK_KEY = "pyramid_kvs.force_mock"
#: set by ``pyramid_kvs.debugtoolbar``: the ``Instrumentation`` the components are built with
INSTRUMENTATION_KEY = "pyramid_kvs.instrumentation"
#: the components, by the name each is configured under (``kvs.<name>``)
COMPONENT_NAMES = ("cache", "session", "ratelimit", "perlsess")


class Instrumentation(Protocol):
    """A development tool that watches the components: the debug toolbar's KVS panel.

    It is consulted once, while the components are built, and only when an
    application asked for it (``INSTRUMENTATION_KEY`` on its registry).  Without one
    the components hold the backends' own stores and nothing is wrapped, patched or
    recorded: requests pay nothing for a tool that is not there.
    """

    def wrap_store(self, component: str, store: Store) -> Store:
        """The store *component* uses instead of *store* (a proxy delegating to it)."""

    def observe_outcome(self, request: Request, outcome: Outcome) -> None:
        """Told each verdict of the rate limiter."""


@dataclass
class Components:
    """The pyramid_kvs components of one application (see ``get_components``).

    Each is ``None`` when its settings are absent; each holds its own settings
    (``cache.settings``, ``session_factory.settings``...).
    """

    cache: Cache | None = None
    #: builds ``request.session``
    session_factory: SessionFactory | None = None
    ratelimiter: RateLimiter | None = None
    #: reads ``request.perlsess``
    perlsess: PerlSessionReader | None = None
    #: every store built, by the identity of its spec
    stores: dict[tuple[str, str], Store] = field(default_factory=dict)
    force_mock: bool = False
    #: what wraps the components' stores (the debug toolbar); usually none
    instrumentation: Instrumentation | None = None

    def store_for(self, spec: StoreSpec, key_prefix: str, component: str = "") -> Store:
        """The store *spec* describes, under *key_prefix*, sharing clients.

        *component* names who uses it, for the instrumentation, if any.
        """
        if self.force_mock:
            spec = StoreSpec("mock", spec.options, spec.origin, spec.sources)
        shared = self.stores.get(spec.identity)
        if shared is None:
            shared = self.stores[spec.identity] = build_store(spec)
        store = shared.with_prefix(key_prefix)
        if self.instrumentation is not None:
            store = self.instrumentation.wrap_store(component, store)
        return store

    def store_of(self, component: str) -> Store | None:
        """The store *component* (one of ``COMPONENT_NAMES``) uses; ``None`` if absent.

        ``KeyError`` for a name that is no component.
        """
        owners: dict[str, Cache | SessionFactory | RateLimiter | PerlSessionReader | None] = {
            "cache": self.cache,
            "session": self.session_factory,
            "ratelimit": self.ratelimiter,
            "perlsess": self.perlsess,
        }
        owner = owners[component]
        return None if owner is None else owner.store

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


def build_store(spec: StoreSpec) -> Store:
    """Build the store of *spec*, turning every failure into a ConfigurationError."""
    options: Mapping[str, Any] = {} if spec.backend == "mock" else spec.options
    try:
        return create_store(spec.backend, options)
    except MissingExtra as exc:
        raise ConfigurationError(f"{spec.origin}: the {spec.backend} store: {exc}") from None
    except (TypeError, ValueError) as exc:
        where = ", ".join(f"{spec.origin}.{source}" for source in spec.sources)
        raise ConfigurationError(
            f"{where}: invalid options for the {spec.backend} store: {exc}"
        ) from None


def build_codec(name: str, origin: str, secret: str | None = None) -> Codec:
    """The codec *name* of the component configured under *origin*.

    The component's *secret* signs pickled values, under a key of their own for
    each component.  Pickle without a secret is the original add-on's behaviour and
    keeps working, but whoever can write to the store can then run code in the
    application: start-up says so, as a warning and in the log.
    """
    try:
        codec = get_codec(name, secret=secret, purpose=origin)
    except ImportError as exc:
        raise ConfigurationError(f"{origin}.codec: {exc}") from None
    if name == "pickle" and secret is None:
        message = (
            f"{origin}.codec = pickle without {origin}.secret: stored values are "
            "unpickled unsigned, so anyone who can write to the store can run code "
            f"in this application; set {origin}.secret (32 characters or more) to "
            "sign them, or use the json codec"
        )
        warnings.warn(message, UnsignedPickleWarning, stacklevel=2)
        log.warning(message)
    return codec


def build_components(
    settings: Mapping[str, Any],
    force_mock: bool = False,
    instrumentation: Instrumentation | None = None,
) -> Components:
    """Parse every component's settings and build the components configured.

    *instrumentation*, when given, wraps each component's store and hears the rate
    limiter's verdicts (see ``Instrumentation``).
    """
    built = Components(force_mock=force_mock, instrumentation=instrumentation)
    cache_settings = parse_cache(settings)
    if cache_settings is not None:
        built.cache = Cache.from_settings(
            cache_settings,
            built.store_for(cache_settings.store, cache_settings.key_prefix, "cache"),
            build_codec(cache_settings.codec, "kvs.cache", cache_settings.secret),
        )
    perlsess_settings = parse_perlsess(settings)
    if perlsess_settings is not None:
        built.perlsess = PerlSessionReader(
            built.store_for(perlsess_settings.store, perlsess_settings.key_prefix, "perlsess"),
            perlsess_settings,
        )
    session_settings = parse_session(settings)
    if session_settings is not None:
        built.session_factory = SessionFactory(
            session_settings,
            built.store_for(session_settings.store, session_settings.key_prefix, "session"),
            build_codec(session_settings.codec, "kvs.session", session_settings.secret),
        )
    ratelimit_settings = parse_ratelimit(settings)
    if ratelimit_settings is not None:
        built.ratelimiter = RateLimiter(
            built.store_for(ratelimit_settings.store, ratelimit_settings.key_prefix, "ratelimit"),
            ratelimit_settings,
            sessions=built.session_factory,
            observe=None if instrumentation is None else instrumentation.observe_outcome,
        )
    return built


NOT_CONFIGURED = (
    "pyramid_kvs is not configured: call config.include('pyramid_kvs') "
    "and commit the configuration"
)


def get_components(registry: Registry) -> Components:
    """The pyramid_kvs components of the application owning *registry*."""
    components = registry.get(COMPONENTS_KEY)
    if not isinstance(components, Components):
        raise RuntimeError(NOT_CONFIGURED)
    return components


def prefetch_session(request: Request, batch: Batch) -> bool:
    """Queue the load of *request*'s session on *batch*, to spare its round trip.

    For components that send their own batch early in the request (the rate
    limiter does): when sessions are configured, the request carries a well-formed
    (and correctly signed) id, and *batch* runs on the session store's client, the
    load is queued on it and ``request.session`` takes its result on first use.
    Returns whether it was queued.  If the batch does not run, the session loads
    itself.
    """
    components = request.registry.get(COMPONENTS_KEY)
    factory = None if components is None else components.session_factory
    return factory is not None and factory.prefetch(request, batch)
