"""The cache page: a slow computation served from ``request.cache``."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from html import escape
from typing import Any

from pyramid.view import view_config

from . import page, store_note


def slow_report() -> dict[str, Any]:
    """Stands for an expensive query: half a second of work."""
    time.sleep(0.5)
    return {"generated_at": datetime.now(timezone.utc).strftime("%H:%M:%S UTC")}


@view_config(route_name="cache")
def cache_page(request: Any) -> Any:
    started = time.perf_counter()
    hit = "report" in request.cache
    report = request.cache.get_or_set("report", slow_report)
    elapsed = (time.perf_counter() - started) * 1000
    visits = request.cache.incr("visits", ttl=3600)  # the counter lives an hour
    status = '<b class="hit">hit</b>' if hit else '<b class="miss">miss</b>'
    ttl = request.cache.default_ttl
    body = f"""
<p><code>request.cache</code> is one cache shared by every request and every visitor.
This page's report takes half a second to compute; it comes from
<code>request.cache.get_or_set("report", slow_report)</code>, which computes it on a
miss (once, even when requests arrive together) and keeps it for {ttl} seconds
(<code>kvs.cache.ttl</code>).  Reload within {ttl} seconds for a hit, wait longer
for a miss.</p>
{store_note(request.cache.store, "kvs.cache")}
<p>This request: a cache {status}, answered in <b id="elapsed">{elapsed:.1f} ms</b>.
Report generated at <code>{escape(report["generated_at"])}</code>.</p>
<p>Visits of this page by anyone, counted with
<code>request.cache.incr("visits", ttl=3600)</code> (atomic): <b id="visits">{visits}</b></p>
<p>Cached keys, from <code>request.cache.list_keys()</code>:
<code>{escape(", ".join(sorted(request.cache.list_keys())))}</code></p>
<p><a href="{escape(request.route_url("cache"))}">Reload</a></p>
"""
    return page(request, "Cache", body)
