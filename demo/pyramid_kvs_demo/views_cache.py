"""The cache page: a slow computation served from ``request.cache``."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from html import escape
from typing import Any

from pyramid.view import view_config

from . import MENU, page

MENU.append(("home", "Cache"))


def slow_report() -> dict[str, Any]:
    """Stands for an expensive query: half a second of work."""
    time.sleep(0.5)
    return {"generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


@view_config(route_name="home")
def cache_page(request: Any) -> Any:
    started = time.perf_counter()
    hit = "report" in request.cache
    report = request.cache.get_or_set("report", slow_report)
    elapsed = (time.perf_counter() - started) * 1000
    visits = request.cache.incr("visits")
    status = '<b class="hit">hit</b>' if hit else '<b class="miss">miss</b>'
    ttl = request.cache.default_ttl
    body = f"""
<p>This page's report comes from <code>request.cache.get_or_set("report", ...)</code>.
It costs half a second to compute and is cached for {ttl} seconds.</p>
<p>This request: a cache {status}, answered in {elapsed:.1f} ms.
Report generated at <code>{escape(report["generated_at"])}</code>.</p>
<p>Visits counted with <code>request.cache.incr("visits")</code>: {visits}</p>
<p>Cached keys: <code>{escape(", ".join(sorted(request.cache.list_keys())))}</code></p>
<p><a href="{escape(request.route_url("home"))}">Reload</a></p>
"""
    return page(request, "Cache", body)
