"""pyramid_kvs: key-value-store services for Pyramid applications.

``config.include("pyramid_kvs")`` reads the ``kvs.*`` settings and wires each
configured component; an application that configures none gets nothing.  See the
README for the settings.
"""

from __future__ import annotations

from pyramid import tweens
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.viewderivers import INGRESS

from .attributes import RequestAttribute
from .cache import Cache
from .components import (
    COMPONENTS_KEY,
    FORCE_MOCK_KEY,
    INSTRUMENTATION_KEY,
    Components,
    build_components,
    get_components,
    prefetch_session,
)
from .perlsess import PerlSession
from .ratelimit.limiter import IRateLimiter
from .session import KVSSession, SessionUnavailable
from .settings import is_configured
from .stores import Store, StoreError, StoreUnavailable, UnsupportedOperation, register

__all__ = [
    "Cache",
    "Components",
    "KVSSession",
    "PerlSession",
    "SessionUnavailable",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UnsupportedOperation",
    "get_components",
    "includeme",
    "prefetch_session",
    "register",
]


#: pyramid_debugtoolbar's tween, which the rate limiter's sits under when it is there
TOOLBAR_TWEEN = "pyramid_debugtoolbar.toolbar_tween_factory"


#: the rate limiter's verdict, ``None`` until the limiter sets it on the request
request_ratelimit = RequestAttribute(
    "ratelimit",
    "``request.ratelimit``: the request's rate-limit verdict (``Outcome``) or ``None``.",
)
request_ratelimit.bind_shared(None)


def session_factory(request: Request) -> KVSSession:
    """The ``ISessionFactory`` given to Pyramid: this application's own factory.

    It looks the factory up on the registry at request time, because settings are
    parsed in a deferred action that has not run yet when ``includeme`` does.
    """
    factory = get_components(request.registry).session_factory
    assert factory is not None  # set only when sessions are configured
    return factory(request)


def includeme(config: Configurator) -> None:
    """Wire the components configured under ``kvs.*``.

    Settings are parsed in a deferred action, so configuration code that runs after
    the include can still change them; errors surface at commit time as
    ``ConfigurationError``.
    """
    registry = config.registry
    settings = config.get_settings()
    # Attributes, not properties: see pyramid_kvs.attributes for why.
    request_cache = RequestAttribute(
        "cache", "``request.cache``: the application's cache, one shared object."
    )
    request_perlsess = RequestAttribute(
        "perlsess",
        "``request.perlsess``: the Perl session named by the request's cookie, read lazily.",
    )

    def setup() -> None:
        components = build_components(
            registry.settings or {},
            force_mock=bool(registry.get(FORCE_MOCK_KEY)),
            instrumentation=registry.get(INSTRUMENTATION_KEY),
        )
        registry[COMPONENTS_KEY] = components
        if components.ratelimiter is not None:
            registry.registerUtility(components.ratelimiter, IRateLimiter)
        if components.cache is not None:
            request_cache.bind_shared(components.cache)
        if components.perlsess is not None:
            request_perlsess.bind(components.perlsess.for_request)

    config.action(COMPONENTS_KEY, setup)
    if is_configured(settings, "cache"):
        config.add_request_method(request_cache, "cache")
    if is_configured(settings, "perlsess"):
        config.add_request_method(request_perlsess, "perlsess")
    # Always registered, so that views may declare ratelimit=... in any application.
    config.add_view_deriver(
        "pyramid_kvs.ratelimit.deriver.ratelimit_view", under=INGRESS, over="secured_view"
    )
    if is_configured(settings, "ratelimit"):
        # Under the debug toolbar when there is one, whatever the include order: its
        # own pages are not counted, and its KVS panel sees the check.
        config.add_tween(
            "pyramid_kvs.ratelimit.tween.ratelimit_tween_factory",
            over=tweens.EXCVIEW,
            under=(TOOLBAR_TWEEN, tweens.INGRESS),
        )
        config.add_request_method(request_ratelimit, "ratelimit")
    if is_configured(settings, "session"):
        config.set_session_factory(session_factory)
