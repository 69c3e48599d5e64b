"""A pyramid_debugtoolbar panel, "KVS": what each request asked of the stores.

Add it to the toolbar's includes, in the development ``.ini``::

    pyramid.includes = pyramid_debugtoolbar
    debugtoolbar.includes = pyramid_kvs.debugtoolbar

The include registers the panel with the toolbar and asks the application to build
its components with recording proxies in front of their stores (see
``recording``).  An application without it, or whose toolbar is disabled
(``debugtoolbar.enabled = false``), gets the stores themselves: nothing is wrapped or
recorded.  Install the extra: ``pip install "pyramid-kvs[debugtoolbar]"``.
"""

from __future__ import annotations

import logging
import warnings

from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError

from ..components import COMPONENTS_KEY, INSTRUMENTATION_KEY
from .recording import PanelInstrumentation

log = logging.getLogger(__name__)


def includeme(config: Configurator) -> None:
    """Register the KVS panel; instrument the application the toolbar watches.

    This runs in the toolbar's own configuration (``debugtoolbar.includes``), which
    is made when pyramid_debugtoolbar is included: before the application commits
    its configuration, so before pyramid_kvs builds its components.
    """
    from .panel import KVSDebugPanel

    parent = getattr(config.registry, "parent_registry", None)
    if parent is None:
        raise ConfigurationError(
            "pyramid_kvs.debugtoolbar is included by the debug toolbar: list it in "
            "debugtoolbar.includes, not in pyramid.includes or config.include()"
        )
    config.add_debugtoolbar_panel(KVSDebugPanel)
    if not parent.settings.get("debugtoolbar.enabled", True):
        return  # no toolbar tween, no panel: the stores stay as they are
    if COMPONENTS_KEY in parent:
        message = (
            "pyramid_kvs built its components before the debug toolbar was included: "
            "the KVS panel will show no operations; include pyramid_debugtoolbar "
            "before the configuration is committed"
        )
        warnings.warn(message, UserWarning, stacklevel=2)
        log.warning(message)
    parent[INSTRUMENTATION_KEY] = PanelInstrumentation()
