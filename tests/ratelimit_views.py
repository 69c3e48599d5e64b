"""A views module scanned by the rate limiting tests: ``@view_config(ratelimit=...)``."""

from __future__ import annotations

from typing import Any

from pyramid.view import view_config


@view_config(route_name="scanned", renderer="json", ratelimit="1/day")
def scanned(request: Any) -> dict[str, bool]:
    return {"scanned": True}
