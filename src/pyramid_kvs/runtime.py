"""What includeme builds: the parsed settings and the live stores, per registry.

Everything lives on the Pyramid registry, never on classes or modules, so two
applications in one process - two tests, two apps behind one WSGI server - each get
their own settings and connections.  Stores are built once at start-up; components
configured with the same backend and options share one client (one connection
pool), each under its own key prefix.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyramid.exceptions import ConfigurationError
from pyramid.registry import Registry
from pyramid.request import Request

if TYPE_CHECKING:
    from .ratelimit.limiter import RateLimiter

from .cache import Cache
from .codecs import Codec, UnsignedPickleWarning, get_codec
from .perlsess import PerlSessionReader
from .session import SessionFactory
from .settings import (
    CacheSettings,
    PerlSessionSettings,
    RateLimitSettings,
    SessionSettings,
    StoreSpec,
    parse_cache,
    parse_perlsess,
    parse_ratelimit,
    parse_session,
)
from .stores import Batch, MissingExtra, Store, create_store

log = logging.getLogger(__name__)

REGISTRY_KEY = "pyramid_kvs"
#: set by pyramid_kvs.testing: every configured store becomes a mock store
FORCE_MOCK_KEY = "pyramid_kvs.force_mock"


@dataclass
class KVS:
    """The pyramid_kvs state of one application (see :func:`get_kvs`)."""

    cache_settings: CacheSettings | None = None
    cache: Cache | None = None
    perlsess_settings: PerlSessionSettings | None = None
    perlsess: PerlSessionReader | None = None
    ratelimit_settings: RateLimitSettings | None = None
    ratelimiter: RateLimiter | None = None
    session_settings: SessionSettings | None = None
    #: builds ``request.session``; None when sessions are not configured
    session_factory: SessionFactory | None = None
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


def build_kvs(settings: Mapping[str, Any], force_mock: bool = False) -> KVS:
    """Parse every component's settings and build what they need."""
    kvs = KVS(force_mock=force_mock)
    kvs.cache_settings = cache_settings = parse_cache(settings)
    if cache_settings is not None:
        kvs.cache = Cache(
            kvs.store_for(cache_settings.store, cache_settings.key_prefix),
            build_codec(cache_settings.codec, "kvs.cache", cache_settings.secret),
            ttl=cache_settings.ttl,
            raise_errors=cache_settings.raise_errors,
            lock_timeout=cache_settings.lock_timeout,
            lock_wait=cache_settings.lock_wait,
        )
    kvs.perlsess_settings = perlsess_settings = parse_perlsess(settings)
    if perlsess_settings is not None:
        kvs.perlsess = PerlSessionReader(
            kvs.store_for(perlsess_settings.store, perlsess_settings.key_prefix),
            perlsess_settings,
        )
    kvs.session_settings = session_settings = parse_session(settings)
    if session_settings is not None:
        kvs.session_factory = SessionFactory(
            session_settings,
            kvs.store_for(session_settings.store, session_settings.key_prefix),
            build_codec(session_settings.codec, "kvs.session", session_settings.secret),
        )
    kvs.ratelimit_settings = ratelimit_settings = parse_ratelimit(settings)
    if ratelimit_settings is not None:
        from .ratelimit.limiter import RateLimiter

        kvs.ratelimiter = RateLimiter(
            kvs.store_for(ratelimit_settings.store, ratelimit_settings.key_prefix),
            ratelimit_settings,
            sessions=kvs.session_factory,
        )
    return kvs


def get_kvs(registry: Registry) -> KVS:
    """The pyramid_kvs state of the application owning *registry*."""
    try:
        return registry[REGISTRY_KEY]  # type: ignore[index,no-any-return]
    except KeyError:
        raise RuntimeError(
            "pyramid_kvs is not configured: call config.include('pyramid_kvs') "
            "and commit the configuration"
        ) from None


def prefetch_session(request: Request, batch: Batch) -> bool:
    """Queue the load of *request*'s session on *batch*, to spare its round trip.

    For components that send their own batch early in the request (the rate
    limiter does): when sessions are configured, the request carries a well-formed
    (and correctly signed) id, and *batch* runs on the session store's client, the
    load is queued on it and ``request.session`` takes its result on first use.
    Returns whether it was queued.  If the batch does not run, the session loads
    itself.
    """
    kvs = request.registry.get(REGISTRY_KEY)
    factory = None if kvs is None else kvs.session_factory
    return factory is not None and factory.prefetch(request, batch)
