"""The application ``pkvs`` loads in the tests: ``use = call:pkvs_app:main`` in an ``.ini``.

Built through ``apps.configure`` like every application of the suite.  The setting
``test.login_limit``, when given, adds a ``login`` route whose view has its own
rate limit.
"""

from __future__ import annotations

from typing import Any

from pyramid.config import Configurator

import apps


def main(global_config: dict[str, Any], **settings: Any) -> Any:
    login_limit = settings.pop("test.login_limit", None)

    def login(config: Configurator) -> None:
        if login_limit is not None:
            apps.json_view(config, "login", lambda request: {}, ratelimit=login_limit)

    return apps.configure(settings, login).make_wsgi_app()


def without_pyramid_kvs(global_config: dict[str, Any], **settings: Any) -> Any:
    return Configurator(settings=settings).make_wsgi_app()
