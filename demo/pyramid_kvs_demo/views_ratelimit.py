"""The rate limit page: a JSON endpoint limited to 5 requests per 10 seconds.

The whole demo is limited by ``kvs.ratelimit`` in demo.ini; the JSON endpoint has a
tighter limit of its own, declared with the ``ratelimit`` view option.  The page
calls it from the browser and shows the headers of every answer, 429 included.
"""

from __future__ import annotations

from html import escape
from typing import Any

from pyramid.view import view_config

from pyramid_kvs import get_components

from . import page, store_note

SHOWN_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Policy",
    "RateLimit",
    "Retry-After",
)

#: what ``X-RateLimit-Reset`` counts down to, for each algorithm
RESET_MEANS = {
    "fixed": "Windows are fixed slices of the store's clock, one after the other. "
    "<code>X-RateLimit-Reset</code> counts down to the end of the current window, "
    "when the quota is full again.  After a 429, <code>Retry-After</code> is the same "
    "wait: nothing passes before the next window.",
    "sliding": "The previous window's count, weighted by how much of it the sliding "
    "window still covers, is added to the current one.  <code>X-RateLimit-Reset</code> "
    "counts down to the end of the current window; <code>Retry-After</code> may be "
    "shorter, or reach into the next window.",
    "gcra": "A token bucket: bursts of up to the limit, then one request per "
    "<i>window / limit</i> seconds.  <code>X-RateLimit-Reset</code> counts down to "
    "when the bucket is full again; <code>Retry-After</code> is the wait for one "
    "request, much shorter.",
}


@view_config(route_name="ratelimit_api", renderer="json", ratelimit="5/10 seconds")
def ratelimit_api(request: Any) -> dict[str, Any]:
    """What the limiter decided for this request, as ``request.ratelimit`` has it."""
    outcome = request.ratelimit
    return {
        "allowed": True,
        "limits": [
            {"policy": name, "limit": str(state.limit), "remaining": state.remaining}
            for name, state in zip(outcome.names, outcome.states, strict=True)
        ],
    }


@view_config(route_name="ratelimit")
def ratelimit_page(request: Any) -> Any:
    limiter = get_components(request.registry).ratelimiter
    assert limiter is not None, "kvs.ratelimit is not configured"
    algorithm = limiter.settings.algorithm
    api = escape(request.route_url("ratelimit_api"))
    names = ", ".join(f'"{name}"' for name in SHOWN_HEADERS)
    body = f"""
<p>The endpoint <a href="{api}"><code>{api}</code></a> is declared with
<code>@view_config(..., ratelimit="5/10 seconds")</code>: at most 5 requests per 10
seconds from one client.  Every answer describes the limit in its headers, in the
legacy form (<code>X-RateLimit-*</code>) and in the IETF draft's
(<code>RateLimit-Policy</code>, <code>RateLimit</code>); the sixth request within
the window is answered <b>429 Too Many Requests</b> with a <code>Retry-After</code>.
Requests are counted per {escape(limiter.settings.holder)}
(<code>kvs.ratelimit.holder</code>).</p>
{store_note(limiter.store, "kvs.ratelimit")}
<h2>Algorithm: <code id="algorithm">{escape(algorithm)}</code></h2>
<p>Set by <code>kvs.ratelimit.algorithm</code>. {RESET_MEANS.get(algorithm, "")}</p>
<p><b>Reset versus Retry-After.</b> <code>X-RateLimit-Reset</code> (and the
<code>t</code> of <code>RateLimit</code>) is on every answer: the seconds until the
quota is back to full.  <code>Retry-After</code> is only on a 429: the seconds to
wait before a refused request would pass.  Both are whole seconds, rounded up.</p>
<p><button id="call">Call the endpoint</button></p>
<table id="calls"><tr><th>#</th><th>Status</th><th>Remaining</th><th>Reset</th>
<th>Retry-After</th></tr></table>
<p>The headers of the last answer:</p>
<pre id="log">Click the button a few times.</pre>
<script>
const shown = [{names}];
let calls = 0;
document.getElementById("call").onclick = async () => {{
  const response = await fetch("{api}", {{headers: {{Accept: "application/json"}}}});
  const header = (name) => response.headers.get(name) ?? "";
  const row = document.createElement("tr");
  row.className = response.status === 429 ? "miss" : "hit";
  for (const cell of [++calls, `${{response.status}} ${{response.statusText}}`,
      header("X-RateLimit-Remaining"), header("X-RateLimit-Reset"), header("Retry-After")]) {{
    const td = document.createElement("td");
    td.textContent = cell;
    row.appendChild(td);
  }}
  document.getElementById("calls").appendChild(row);
  const lines = [`${{response.status}} ${{response.statusText}}`];
  for (const name of shown) {{
    const value = response.headers.get(name);
    if (value !== null) lines.push(`${{name}}: ${{value}}`);
  }}
  document.getElementById("log").textContent = lines.join("\\n");
}};
</script>
<p>Following the link instead shows the JSON answers, then, from the sixth request
within a window, the demo's page for a 429.</p>
"""
    return page(request, "Rate limit", body)
