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
from typing import Any

from pyramid.exceptions import ConfigurationError
from pyramid.registry import Registry
from pyramid.request import Request

from .cache import Cache, parse_cache
from .codecs import Codec, UnsignedPickleWarning, get_codec
from .perlsess import PerlSessionReader, parse_perlsess
from .ratelimit.limiter import RateLimiter
from .ratelimit.settings import parse_ratelimit
from .session import SessionFactory, parse_session
from .settings import StoreSpec
from .stores import Batch, MissingExtra, Store, create_store

log = logging.getLogger(__name__)

#: where an application's ``Components`` live on its registry
COMPONENTS_KEY = "pyramid_kvs.components"
#: set by ``pyramid_kvs.testing``: every configured store becomes a mock store
FORCE_MOCK_KEY = "pyramid_kvs.force_mock"


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

    def store_for(self, spec: StoreSpec, key_prefix: str) -> Store:
        """The store *spec* describes, under *key_prefix*, sharing clients."""
        if self.force_mock:
            spec = StoreSpec("mock", spec.options, spec.origin, spec.sources)
        shared = self.stores.get(spec.identity)
        if shared is None:
            shared = self.stores[spec.identity] = build_store(spec)
        return shared.with_prefix(key_prefix)

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


def build_components(settings: Mapping[str, Any], force_mock: bool = False) -> Components:
    """Parse every component's settings and build the components configured."""
    built = Components(force_mock=force_mock)
    cache_settings = parse_cache(settings)
    if cache_settings is not None:
        built.cache = Cache.from_settings(
            cache_settings,
            built.store_for(cache_settings.store, cache_settings.key_prefix),
            build_codec(cache_settings.codec, "kvs.cache", cache_settings.secret),
        )
    perlsess_settings = parse_perlsess(settings)
    if perlsess_settings is not None:
        built.perlsess = PerlSessionReader(
            built.store_for(perlsess_settings.store, perlsess_settings.key_prefix),
            perlsess_settings,
        )
    session_settings = parse_session(settings)
    if session_settings is not None:
        built.session_factory = SessionFactory(
            session_settings,
            built.store_for(session_settings.store, session_settings.key_prefix),
            build_codec(session_settings.codec, "kvs.session", session_settings.secret),
        )
    ratelimit_settings = parse_ratelimit(settings)
    if ratelimit_settings is not None:
        built.ratelimiter = RateLimiter(
            built.store_for(ratelimit_settings.store, ratelimit_settings.key_prefix),
            ratelimit_settings,
            sessions=built.session_factory,
        )
    return built


def get_components(registry: Registry) -> Components:
    """The pyramid_kvs components of the application owning *registry*."""
    components = registry.get(COMPONENTS_KEY)
    if not isinstance(components, Components):
        raise RuntimeError(
            "pyramid_kvs is not configured: call config.include('pyramid_kvs') "
            "and commit the configuration"
        )
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
