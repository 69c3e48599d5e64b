"""The rate limit page: a JSON endpoint limited to 5 requests per 10 seconds.

The whole demo is limited by ``kvs.ratelimit`` in demo.ini; the JSON endpoint has a
tighter limit of its own, declared with the ``ratelimit`` view option.  The page
calls it from the browser and shows the headers of every answer, 429 included.
"""

from __future__ import annotations

from html import escape
from typing import Any

from pyramid.view import view_config

from . import MENU, ROUTES, page

MENU.append(("ratelimit", "Rate limit"))
ROUTES.append(("ratelimit", "/ratelimit"))
ROUTES.append(("ratelimit_api", "/ratelimit/api"))

SHOWN_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Policy",
    "RateLimit",
    "Retry-After",
)


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
    api = escape(request.route_url("ratelimit_api"))
    names = ", ".join(f'"{name}"' for name in SHOWN_HEADERS)
    body = f"""
<p>The endpoint <a href="{api}"><code>{api}</code></a> is declared with
<code>@view_config(..., ratelimit="5/10 seconds")</code>: at most 5 requests per 10
seconds from one client.  Every answer describes the limit in its headers, in the
legacy form (<code>X-RateLimit-*</code>) and in the IETF draft's
(<code>RateLimit-Policy</code>, <code>RateLimit</code>); the sixth request within
10 seconds is answered <b>429 Too Many Requests</b> with a <code>Retry-After</code>.</p>
<p><button id="call">Call the endpoint</button></p>
<pre id="log">Click the button a few times.</pre>
<script>
const shown = [{names}];
document.getElementById("call").onclick = async () => {{
  const response = await fetch("{api}", {{headers: {{Accept: "application/json"}}}});
  const lines = [`${{response.status}} ${{response.statusText}}`];
  for (const name of shown) {{
    const value = response.headers.get(name);
    if (value !== null) lines.push(`${{name}}: ${{value}}`);
  }}
  document.getElementById("log").textContent = lines.join("\\n");
}};
</script>
"""
    return page(request, "Rate limit", body)
