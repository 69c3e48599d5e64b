"""Per-view limits: the ``ratelimit`` view option and the view deriver behind it.

::

    @view_config(route_name="login", ratelimit="5/minute")     # its own limit
    @view_config(route_name="health", ratelimit=False)         # never limited

A view's own limits *replace* the application-wide ones and count separately.

The tween checks a request before Pyramid has looked its view up, yet a view's
option must be known by then for the check to stay one round trip.  So, as views
are derived at start-up, each view's option is recorded under its route; the tween
matches the route (a regex match, no I/O) and applies the option the route's views
agree on.  Where that is not enough - views found by traversal, or views of one
route with different options - the deriver checks the view's own limits when the
view is called, at the price of a second round trip; an exempt view on such a route
has then already been counted against the application-wide limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

from pyramid.exceptions import ConfigurationError
from pyramid.interfaces import IRoutesMapper
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.viewderivers import preserve_view_attrs

from ..settings import is_configured
from .limiter import DEFAULT_SCOPE, IRateLimiter, RateLimiter
from .limits import LIMITS_FORM, Limit, parse_limits

#: the option the tween applied to a request, for the deriver to compare
APPLIED_KEY = "pyramid_kvs.ratelimit.applied"
#: where the views' ratelimit options are recorded, on the registry
VIEW_POLICIES_KEY = "pyramid_kvs.ratelimit.views"

#: None: the application-wide limits; False: exempt; a tuple: the view's own limits
ViewOption = Union[None, bool, tuple[Limit, ...]]  # noqa: UP007 - a runtime alias
_NOT_CHECKED: Any = object()


def parse_view_option(value: Any) -> ViewOption:
    """The ``ratelimit=`` view option: a limits string, ``False``, or ``None``/``True``."""
    if value is None or value is True:
        return None
    if value is False:
        return False
    try:
        limits = parse_limits(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"ratelimit view option: expected False or {LIMITS_FORM}, got {value!r} ({exc})"
        ) from None
    return limits if limits else False


def route_scope(route_name: str) -> str:
    return f"route:{route_name}"


class ViewPolicies:
    """The ``ratelimit`` options of each route's views, recorded as they are derived."""

    def __init__(self) -> None:
        self._by_route: dict[str, set[Any]] = {}

    def record(self, route_name: str, option: ViewOption) -> None:
        self._by_route.setdefault(route_name, set()).add(option)

    def route_option(self, route_name: str) -> ViewOption:
        """The option every view of the route shares; the default if they differ."""
        options = self._by_route.get(route_name, set())
        if len(options) == 1:
            return next(iter(options))  # type: ignore[no-any-return]
        return None

    @property
    def any_special(self) -> bool:
        return any(options != {None} for options in self._by_route.values())

    def option_for(self, request: Request) -> tuple[ViewOption, str]:
        """The option (and counter scope) that applies to *request*, by its route."""
        if not self.any_special:
            return None, DEFAULT_SCOPE
        mapper = request.registry.queryUtility(IRoutesMapper)
        route = mapper(request)["route"] if mapper is not None else None
        if route is None:
            return None, DEFAULT_SCOPE
        option = self.route_option(route.name)
        return option, DEFAULT_SCOPE if option is None else route_scope(route.name)

    @staticmethod
    def limits_of(
        applied: tuple[ViewOption, str], default: tuple[Limit, ...]
    ) -> tuple[tuple[Limit, ...], str]:
        option, scope = applied
        if option is None:
            return default, DEFAULT_SCOPE
        if option is False or option is True:
            return (), scope
        return option, scope


def view_policies(registry: Registry) -> ViewPolicies:
    """The application's ``ViewPolicies`` (kept on its registry, never globally)."""
    policies = registry.get(VIEW_POLICIES_KEY)
    if policies is None:
        policies = registry[VIEW_POLICIES_KEY] = ViewPolicies()
    return policies  # type: ignore[no-any-return]


def ratelimit_view(view: Callable[..., Any], info: Any) -> Callable[..., Any]:
    """The view deriver: records the view's option, and checks it when the tween could not."""
    option = parse_view_option(info.options.get("ratelimit"))
    if info.exception_only:
        return view
    if not is_configured(info.settings or {}, "ratelimit"):
        if option:
            raise ConfigurationError(
                f"the ratelimit={info.options.get('ratelimit')!r} view option needs "
                "kvs.ratelimit settings (kvs.ratelimit.limits = none limits only such views)"
            )
        return view
    route_name = info.options.get("route_name")
    if route_name:
        view_policies(info.registry).record(route_name, option)
    if not option:
        # None: the application-wide limits, which the tween checks (or nothing does);
        # False: no limit for this view
        return view
    own_scope = (
        route_scope(route_name)
        if route_name
        else f"view:{getattr(info.original_view, '__qualname__', repr(info.original_view))}"
    )

    def ratelimited_view(context: Any, request: Request) -> Any:
        applied = request.environ.get(APPLIED_KEY, _NOT_CHECKED)
        if applied is not _NOT_CHECKED and applied[0] == option:
            return view(context, request)
        limiter: RateLimiter | None = request.registry.queryUtility(IRateLimiter)
        if limiter is None:
            return view(context, request)
        limits, scope = ViewPolicies.limits_of((option, own_scope), limiter.limits)
        if limits:
            limiter.enforce(request, limits, scope)  # a refusal goes to the exception views
        return view(context, request)

    preserve_view_attrs(view, ratelimited_view)
    return ratelimited_view


ratelimit_view.options = ("ratelimit",)  # type: ignore[attr-defined]
