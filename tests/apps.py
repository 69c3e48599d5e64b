"""The one way the suite builds an application: settings, the include, views, WebTest.

Every test module builds its applications here, so that they are all configured the
same way an application is: ``Configurator(settings=...)``, ``config.include``, then
the module's own views.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyramid.config import Configurator
from webtest import TestApp

Setup = Callable[[Configurator], None]


def configure(
    settings: dict[str, Any], *setups: Setup, include: str = "pyramid_kvs"
) -> Configurator:
    """A configurator with pyramid_kvs (or *include*) and each of *setups* applied."""
    config = Configurator(settings=settings)
    config.include(include)
    for setup in setups:
        setup(config)
    return config


def committed(
    settings: dict[str, Any], *setups: Setup, include: str = "pyramid_kvs"
) -> Configurator:
    """``configure``, committed: its components are built (``get_components`` works)."""
    config = configure(settings, *setups, include=include)
    config.commit()
    return config


def make_app(
    settings: dict[str, Any], *setups: Setup, include: str = "pyramid_kvs", **options: Any
) -> TestApp:
    """The WSGI application of ``configure``, under WebTest (*options*: ``TestApp``'s)."""
    return TestApp(configure(settings, *setups, include=include).make_wsgi_app(), **options)


def json_view(
    config: Configurator, name: str, view: Callable[..., Any], pattern: str | None = None,
    **options: Any,
) -> None:  # fmt: skip
    """A route *name* (at ``/name`` unless *pattern*) to *view*, rendered as JSON."""
    config.add_route(name, pattern or f"/{name}")
    config.add_view(view, route_name=name, renderer="json", **options)
