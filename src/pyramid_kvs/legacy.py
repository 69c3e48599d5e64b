"""What pyramid_kvs 1.x left in the stores, and how 2.0 reads it.

1.x kept a session as one plain value - the session dict encoded with the codec
(JSON by default), written with ``SET`` and a TTL - under the component's
``key_prefix`` followed by:

* for cookie sessions, the cookie value: 40 lower-case hex digits
  (``hexlify(os.urandom(20))``);
* for header sessions, the header name in lower case (``_`` read as ``-``), ``::``
  and the token the client sent.

Its users are logged in under those keys when they upgrade, so the session component
reads them when the new record is missing and moves their data into a new record.
This module holds only that knowledge - key forms and the renaming of the keys 1.x
reserved inside a session - with no store and no Pyramid, so it can be tested alone.

The cache needs nothing here: 1.x cached values under ``key_prefix + key`` encoded
with the codec, which is exactly what 2.0 reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: a 1.x cookie session id
COOKIE_ID = re.compile(r"[0-9a-f]{40}")

#: 1.x's names for the keys a session reserves, and 2.0's
_FLASH_PREFIX_1X = "_f_"
_CSRF_KEY_1X = "__csrf_token"


def is_cookie_id(value: str) -> bool:
    """Whether *value* has the form of a 1.x cookie session id."""
    return COOKIE_ID.fullmatch(value) is not None


def cookie_key(session_id: str) -> str:
    """The store key (without prefix) of the 1.x cookie session *session_id*."""
    return session_id


def header_key(header_name: str, token: str) -> str:
    """The store key (without prefix) of the 1.x session of *token* sent in *header_name*."""
    return f"{header_name.lower().replace('_', '-')}::{token}"


def session_data(
    value: Any, *, flash_prefix: str, csrf_key: str, reserved: re.Pattern[str]
) -> dict[str, Any]:
    """The 2.0 session data of a decoded 1.x session *value*.

    Flash queues and the CSRF token are renamed to the keys 2.0 uses for them, so
    pending messages and forms rendered before the upgrade keep working.  Keys 2.0
    reserves (*reserved*) and keys that are not strings are dropped.  Raises
    ``ValueError`` when *value* is not a mapping.
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"a 1.x session is a dict, not a {type(value).__name__}")
    data: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            continue
        if key == _CSRF_KEY_1X:
            key = csrf_key
        elif key.startswith(_FLASH_PREFIX_1X):
            key = flash_prefix + key[len(_FLASH_PREFIX_1X) :]
        if reserved.match(key):
            continue
        data[key] = item
    return data
