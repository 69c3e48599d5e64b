"""The KVS panel of pyramid_debugtoolbar: what one request asked of the stores.

The toolbar makes a panel for each request it watches, before the request reaches
the application; the panel puts its ``Recorder`` on the request, where the
recording stores find it (see ``recording``).  The session is saved after the
toolbar has seen the response, so the panel reads its recorder when it is shown,
not when the response leaves.
"""

from __future__ import annotations

from typing import Any

from pyramid.request import Request

try:
    from pyramid_debugtoolbar.panels import DebugPanel
except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
    raise ImportError(
        f"{exc.name or exc} is not installed: install pyramid-kvs[debugtoolbar]"
    ) from exc

from .recording import RECORDER_KEY, Recorder


class KVSDebugPanel(DebugPanel):
    """Every store operation of the request, its round trips, the session's save and
    the rate limiter's verdicts."""

    name = "kvs"
    title = "Key-value stores (pyramid_kvs)"
    nav_title = "KVS"
    template = "pyramid_kvs.debugtoolbar:templates/kvs.dbtmako"
    has_content = True

    def __init__(self, request: Request) -> None:
        self.recorder = Recorder()
        request.environ[RECORDER_KEY] = self.recorder

    @property
    def nav_subtitle(self) -> str:
        recorder = self.recorder
        trips = recorder.round_trips
        return f"{len(recorder.operations)} ops, {trips} round trip{'' if trips == 1 else 's'}"

    @property
    def data(self) -> dict[str, Any]:
        """What was recorded, as plain data: see ``Recorder.report``."""
        return self.recorder.report()
