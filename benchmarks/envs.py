"""The anchors' virtualenvs: created from PyPI on the first run, reused after.

pyramid-kvs 1.0.0 has our import name, so it cannot share our environment; the
other anchors (pyramid_session_redis, limits, dogpile.cache) share one, since a
scenario may need two of them in one application.  Each environment pins the
anchors, and pins the libraries both sides use (Pyramid, WebOb, the Redis and
memcached clients, waitress) to the versions of ours, so that a difference in the
figures is the add-on's, not a client library's.  An environment lives under
``.bench/envs/<name>-<key>``, the key a hash of the Python version and its
requirements: changing either builds a new one, and the stale one is removed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
ENVS_DIR = BENCH_DIR / "envs"
#: the libraries both sides load, pinned in the anchors' environments to ours
SHARED = ("pyramid", "webob", "redis", "hiredis", "pymemcache", "waitress")
ANCHORS = {
    "anchors": ("pyramid_session_redis==1.8.1", "limits==5.8.0", "dogpile.cache==1.5.0"),
    # its Perl session reader needs PyPI storable on Python 3 (see sides/kvs1.py)
    "kvs1": ("pyramid-kvs==1.0.0", "storable==1.2.4"),
}
#: written last: an environment without it was interrupted and is built again
COMPLETE = ".complete"


@dataclass(frozen=True)
class Environment:
    name: str
    requirements: tuple[str, ...]

    @property
    def key(self) -> str:
        text = "\n".join((sys.version, *self.requirements))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def path(self) -> Path:
        return ENVS_DIR / f"{self.name}-{self.key}"

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def ready(self) -> bool:
        return (self.path / COMPLETE).exists()


def shared_pins() -> tuple[str, ...]:
    """``name==version`` of each shared library as installed on our side."""
    return tuple(f"{name}=={metadata.version(name)}" for name in SHARED)


def anchor_environments() -> list[Environment]:
    pins = shared_pins()
    return [Environment(name, (*anchors, *pins)) for name, anchors in ANCHORS.items()]


def ensure(environments: list[Environment], log_dir: Path) -> float:
    """Create the environments that are missing, in parallel; the seconds it took."""
    missing = [env for env in environments if not env.ready]
    if not missing:
        return 0.0
    started = time.perf_counter()
    log_dir.mkdir(parents=True, exist_ok=True)
    building = []
    for env in missing:
        for stale in ENVS_DIR.glob(f"{env.name}-*"):
            shutil.rmtree(stale)
        env.path.parent.mkdir(parents=True, exist_ok=True)
        log = (log_dir / f"env-{env.name}.log").open("w")
        print(f"creating the {env.name} environment: {' '.join(env.requirements)}", flush=True)
        # venv, then pip from PyPI by name: the ordinary client, nothing downloaded by hand
        script = (
            f"{sys.executable} -m venv {env.path} && "
            f"{env.python} -m pip install -q --disable-pip-version-check "
            + " ".join(f"'{requirement}'" for requirement in env.requirements)
        )
        building.append((env, log, subprocess.Popen(script, shell=True, stdout=log, stderr=log)))
    failed = []
    for env, log, process in building:
        if process.wait() != 0:
            failed.append(env)
        else:
            (env.path / COMPLETE).write_text("\n".join(env.requirements) + "\n")
        log.close()
    if failed:
        names = ", ".join(env.name for env in failed)
        raise SystemExit(f"could not create {names}: see {log_dir}/env-*.log")
    return time.perf_counter() - started
