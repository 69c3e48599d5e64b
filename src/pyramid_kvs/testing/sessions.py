"""Sessions in an application's tests: seeded and read by what the client sends.

The session store keeps each session as a record under a keyed hash of its id, each
field encoded with the codec, so the mock store's own view (``records``) shows
nothing a test can compare with.  ``MockSessions`` goes through the application's
session factory - the same hash, codec and cookie signature - so that a test speaks
in cookie values and tokens, as its client does::

    sessions = pyramid_kvs.testing.sessions(config.registry)
    cookie = sessions.seed({"user_id": 7}, csrf_token="a-token")
    app.set_cookie(sessions.cookie_name, cookie)
    ...
    assert sessions.data(app.cookies[sessions.cookie_name])["cart"] == [3]
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from ..session import CSRF_KEY, FLASH_KEY_PREFIX, SessionFactory
from .mock import MockStore


class MockSessions:
    """The sessions of an application configured with ``pyramid_kvs.testing``.

    A *session* argument is what the client sends: the cookie's value (signed or
    not, as the settings say) or a raw session id for cookie sessions, the token for
    header sessions.
    """

    def __init__(self, factory: SessionFactory, store: MockStore) -> None:
        self.factory = factory
        #: the mock store the sessions live in (its ``calls`` name hashed keys)
        self.store = store

    @property
    def cookie_name(self) -> str:
        """The session cookie's name (for header sessions: the first header's name)."""
        return self.factory.settings.key_name

    def seed(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        csrf_token: str | None = None,
        created: float | None = None,
    ) -> str:
        """Store a session holding *data*; return what its client sends to use it.

        Cookie sessions get a new id, returned as the cookie's value (signed when
        the settings have a ``secret``).  Header sessions are stored under *token*
        (default: a new random one), which is returned.  *csrf_token* is the token
        Pyramid's CSRF check will expect from this client; *created* the creation
        time in Unix seconds (default: now), to test ``lifetime``.  The record gets
        the expiry a save would give it.
        """
        factory = self.factory
        values = dict(data or {})
        if csrf_token is not None:
            values[CSRF_KEY] = csrf_token
        now = factory.clock()
        created = now if created is None else created
        if factory.uses_cookie:
            if token is not None:
                raise ValueError("token= is for header sessions; cookie sessions get an id")
            session_id = factory.new_id()
            sent = factory.cookie_value(session_id)
        else:
            session_id = secrets.token_urlsafe(32) if token is None else token
            if not factory.valid_token(session_id):
                raise ValueError(f"{session_id!r} is not a valid session token")
            sent = session_id
        self.store.replace_record(
            factory.storage_key(session_id),
            factory.encode_record(values, created),
            factory.write_ttl(created, now),
        )
        return sent

    def data(self, session: str) -> dict[str, Any] | None:
        """The data of *session* as ``request.session`` would read it; ``None`` if absent.

        The CSRF token and flash queues are in it under their own keys (see
        ``csrf_token`` and ``flashes``).
        """
        decoded = self._decoded(session)
        return None if decoded is None else decoded[1]

    def created(self, session: str) -> float | None:
        """When *session* was first stored (Unix seconds); ``None`` if absent."""
        decoded = self._decoded(session)
        return None if decoded is None else decoded[0]

    def csrf_token(self, session: str) -> str | None:
        """The CSRF token *session* holds, if any."""
        token = (self.data(session) or {}).get(CSRF_KEY)
        return token if isinstance(token, str) else None

    def flashes(self, session: str, queue: str = "") -> list[Any]:
        """The flash messages waiting in *queue* of *session* (not popped)."""
        return list((self.data(session) or {}).get(FLASH_KEY_PREFIX + queue, []))

    def last_ttl(self, session: str) -> int | None:
        """The expiry last given to *session*'s record: by a save, or by a load."""
        return self.store.last_ttl(self._key(session))

    def calls(self, session: str) -> list[str]:
        """The operations made on *session*'s record, in order (``load_record``...)."""
        full_key = self.store.full_key(self._key(session))
        return [operation for operation, key in self.store.calls if key == full_key]

    def all(self) -> list[dict[str, Any]]:
        """The data of every stored session (their ids are not stored, only hashes)."""
        sessions = []
        for fields in self.store.records.values():
            decoded = self.factory.decode_record(fields)
            if decoded is not None:
                sessions.append(decoded[1])
        return sessions

    def __contains__(self, session: object) -> bool:
        return isinstance(session, str) and self._decoded(session) is not None

    def __len__(self) -> int:
        return len(self.all())

    def _key(self, session: str) -> str:
        """The store key of the session the client names with *session*."""
        factory = self.factory
        if not factory.uses_cookie:
            return factory.storage_key(session)
        session_id = factory.id_from_cookie(session)
        if session_id is None:
            if "." in session:
                raise ValueError(
                    f"{session!r} is not a session cookie of this application "
                    "(malformed, or signed with another secret)"
                )
            session_id = session  # a raw id, as request.session.ref.id has it
        return factory.storage_key(session_id)

    def _decoded(self, session: str) -> tuple[float, dict[str, Any]] | None:
        fields = self.store.records.get(self._key(session))
        return None if fields is None else self.factory.decode_record(fields)
