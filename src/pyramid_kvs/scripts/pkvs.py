"""``pkvs``: an application's stores, from the shell, in the manner of ``proutes``.

::

    pkvs development.ini ping
    pkvs development.ini session COOKIE_VALUE_OR_TOKEN
    pkvs development.ini perlsess SESSION_ID
    pkvs development.ini ratelimit ip:192.0.2.1
    pkvs development.ini cache get KEY | cache delete KEY | cache list PATTERN
    pkvs development.ini flush cache [--yes]

The application is loaded as ``pshell`` loads it (what ``pyramid.paster.bootstrap``
does: its ``main`` runs, its settings and registered stores are the real ones) and
nothing is served.  Each outcome has its own exit status (``ExitCode``), so
scripts can tell a miss from an outage from a mistake in the command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..components import COMPONENT_NAMES
from ..stores import StoreError, StoreUnavailable, UnsupportedOperation
from .commands import CommandError, ExitCode, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pkvs",
        description="Look at the key-value stores of a Pyramid application that uses "
        "pyramid_kvs: the application is loaded from its configuration file, not served.",
        epilog="A value that starts with - (session ids may) goes after --: "
        "pkvs development.ini session -- -Xy3...  "
        "Exit status: 0 done, 1 not found, 2 bad command line, 3 configuration not "
        "loaded, 4 component not configured, 5 store unreachable, 6 not supported by the "
        "store, 7 store error or undecodable data, 8 flush not confirmed.",
    )
    parser.add_argument(
        "config_uri", metavar="CONFIG", help="the application's .ini file (development.ini#main)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser(
        "ping",
        help="reach every configured store",
        description="Reach every store the components use: latency, server and version.",
    )

    session = commands.add_parser(
        "session",
        help="show a session as JSON",
        description="Show the session a client holds, as JSON: give the session cookie's "
        "value (signed or not) or, for header sessions, the token; - reads it from standard "
        "input, out of the shell's history.  Reading a session renews its idle timeout, as "
        "any request reading it does.",
    )
    session.add_argument("value", metavar="ID|TOKEN", help="the cookie value or token, or -")

    perlsess = commands.add_parser(
        "perlsess",
        help="show a Perl session as JSON",
        description="Show the session a Perl application stored under ID (the value of "
        "its cookie), decoded, as JSON; bytes that are not text are shown escaped.  "
        "- reads the id from standard input.",
    )
    perlsess.add_argument("session_id", metavar="ID", help="the Perl session id, or -")

    ratelimit = commands.add_parser(
        "ratelimit",
        help="show a holder's rate limit counters",
        description="Show where a holder stands against the configured limits, without "
        "counting a request.  HOLDER is ip:ADDRESS, session:COOKIE_VALUE_OR_TOKEN, "
        "userid:USERID or header:VALUE (the value of the header kvs.ratelimit.holder "
        "names), as the limiter counts it.",
    )
    ratelimit.add_argument("holder", metavar="HOLDER")
    ratelimit.add_argument(
        "--route", metavar="NAME", help="the limits of this route's views, if they have their own"
    )

    cache = commands.add_parser(
        "cache", help="read, delete or list cached values", description="The cache's keys."
    )
    actions = cache.add_subparsers(dest="action", metavar="ACTION", required=True)
    get = actions.add_parser("get", help="show a cached value as JSON", description="Show "
                             "the value cached under KEY, as JSON.")  # fmt: skip
    get.add_argument("key", metavar="KEY")
    delete = actions.add_parser("delete", help="forget a cached value",
                                description="Forget the value cached under KEY.")  # fmt: skip
    delete.add_argument("key", metavar="KEY")
    listing = actions.add_parser(
        "list",
        help="list cached keys",
        description="List the cache's keys matching a glob PATTERN (SCAN on Redis; "
        "memcached cannot list its keys).",
    )
    listing.add_argument("pattern", metavar="PATTERN", nargs="?", default="*")

    flush = commands.add_parser(
        "flush",
        help="delete every key of a component",
        description="Delete every key under COMPONENT's key prefix (never FLUSHDB: other "
        "keys of the store stay), after asking.  Refused where the store cannot list its "
        "keys (memcached) and for a component without a key prefix.",
    )
    flush.add_argument("component", metavar="COMPONENT", choices=COMPONENT_NAMES,
                       help=", ".join(COMPONENT_NAMES))  # fmt: skip
    flush.add_argument("--yes", "-y", action="store_true", help="do not ask")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pkvs`` with *argv* (default: the command line); the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, or a usage error argparse already reported
        return int(exit.code or 0)
    try:
        return int(run(args))
    except CommandError as exc:
        return _fail(str(exc), exc.code)
    except StoreUnavailable as exc:
        return _fail(f"the store is unavailable: {exc}", ExitCode.UNAVAILABLE)
    except UnsupportedOperation as exc:
        return _fail(str(exc), ExitCode.UNSUPPORTED)
    except StoreError as exc:
        return _fail(f"the store failed: {exc}", ExitCode.STORE_ERROR)


def _fail(message: str, code: ExitCode) -> int:
    print(f"pkvs: {message}", file=sys.stderr)
    return int(code)
