"""Hash tags: how keys that must live together say so.

A Redis Cluster spreads keys over its masters by a hash of each key - of the part
between the first ``{`` and the next ``}`` when there is one and it is not empty, the
key's *hash tag*.  Keys with one tag share a hash slot, hence a node, and only such
keys can go into one script or ride in one round trip.  The components tag the keys
that must travel together: a rate limit holder's keys (its limits are checked in one
script), and a session's record with its rate limit keys (the session load rides
in the limit check's pipeline).

Tags cost nothing elsewhere: other stores treat braces as any other character.  The
rule is Redis Cluster's, implemented here so that the components need no client
library to follow it.
"""

from __future__ import annotations


def hash_tag(key: str) -> str | None:
    """The hash tag Redis Cluster places *key* by, or ``None`` when it hashes it whole."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end < 0 or end == start + 1:
        return None
    return key[start + 1 : end]


def tagged(text: str) -> str:
    """*text* as a key prefix whose keys share one hash tag.

    *text* itself when it already has a tag, else *text* in braces.  Every key
    that starts with the result hashes by the same tag, whatever follows.  A text
    that is empty or starts with ``}`` would make an empty tag, which Redis ignores:
    ``_`` goes first then (the tag only places the keys, the keys stay distinct).
    """
    if hash_tag(text) is not None:
        return text
    return "{" + (text if text[:1] not in ("", "}") else "_" + text) + "}"
