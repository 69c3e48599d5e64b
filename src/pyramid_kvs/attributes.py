"""Request attributes that cost nothing until used: ``request.cache`` and the others.

Pyramid gives every request the properties added with ``add_request_method(...,
reify=True)`` by building a new subclass of the request for each request - tens of
microseconds, paid by every request of an application that merely configures a
component.  Methods cost almost nothing: Pyramid binds each to the request with the
descriptor protocol (``__get__``) and sets the result as a plain attribute.  So each
attribute here is registered as a method whose ``__get__`` returns the attribute's
value itself: the shared cache, a lazy per-request object, or ``None`` for the rate
limiter's verdict until the limiter sets it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyramid.request import Request


class RequestAttribute:
    """A value Pyramid sets on each request as ``request.<name>``, when it is made.

    *value_for(request)* gives the value; it must be cheap (the same shared object,
    or a small lazy one), since every request pays for it.
    """

    def __init__(self, name: str, value_for: Callable[[Request], Any], doc: str) -> None:
        self.__name__ = name
        self.__doc__ = doc
        self._value_for = value_for

    def __get__(self, request: Request | None, cls: type | None = None) -> Any:
        if request is None:
            return self
        return self._value_for(request)

    def __call__(self, request: Request) -> Any:
        """What the attribute holds for *request* (Pyramid's introspection calls it)."""
        return self._value_for(request)

    def __repr__(self) -> str:
        return f"<request attribute {self.__name__}>"
