"""Serve one side's application with waitress, for the HTTP run.

Started by the orchestrator in the side's environment: builds (and seeds) the
application as the in-process scenarios do, checks one request, prints
``{"port": ..., "path": ..., "headers": ...}`` on one line, then serves on a free
loopback port until it is terminated.
"""

from __future__ import annotations

import importlib
import json
import sys

from waitress.server import create_server

from benchmarks.subjects import call_app

#: the same for every side: waitress' default
THREADS = 4


def main() -> None:
    side, kind, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    subject = importlib.import_module(f"benchmarks.sides.{side}").BUILDERS[kind](params)
    subject.verify(*call_app(subject.app, subject.environ()))
    server = create_server(subject.app, host="127.0.0.1", port=0, threads=THREADS)
    port = server.effective_port
    print(json.dumps({"port": port, "path": subject.path, "headers": subject.headers}))
    sys.stdout.flush()
    server.run()


if __name__ == "__main__":
    main()
