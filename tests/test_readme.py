"""Every ```python block of README.md runs as written, so an example cannot rot.

A block runs in a fresh namespace holding the fixtures below and nothing else;
README's blocks import what they use.  Two HTML comments, on the lines just above a
block (invisible once rendered), change what happens to it:

* ``<!-- then: CODE -->`` runs CODE after the block, in its namespace: a block that
  defines a view or a test is also called (``<!-- then: view(request) -->``);
* ``<!-- not run: REASON -->`` keeps a block from running: it must still parse, and
  it shows in the test ids with its reason, so nothing is skipped silently.

Any other comment there is a mistake, and fails.
"""

from __future__ import annotations

import ast
import linecache
import re
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pyramid import testing
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from pyramid.scripting import prepare

import apps

README = Path(__file__).resolve().parent.parent / "README.md"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*(?P<kind>[\w ]+?)\s*:\s*(?P<text>.*?)\s*-->\s*$")
_COMMENT = re.compile(r"^\s*<!--")

#: every component on the memory store, as an application under test has them
SETTINGS = {
    "kvs.cache": '{"kvs": "memory", "ttl": 300}',
    "kvs.session.url": "memory://",
    "kvs.session.secret": "a-readme-secret-of-at-least-32-characters",
    "kvs.ratelimit.limits": "100/second",
    "kvs.perlsess.url": "memory://",
}
#: what README calls "production settings": stores that do not exist here
PRODUCTION_SETTINGS = {
    "kvs.cache": '{"kvs": "redis", "kvs_kwargs": {"host": "redis.internal"}, "ttl": 300}',
    "kvs.session.url": "redis://redis.internal:6379/0",
    "kvs.session.ttl": "1800",
    "kvs.session.secret": "a-production-secret-of-32-characters-or-more",
}


@dataclass
class Block:
    """One ```python block of README."""

    line: int  # of its first line of code, 1-based
    code: str
    then: list[str] = field(default_factory=list)
    not_run: str | None = None

    @property
    def id(self) -> str:
        where = f"README.md:{self.line}"
        return where if self.not_run is None else f"{where} not run: {self.not_run}"


def python_blocks(text: str) -> Iterator[Block]:
    """The ```python blocks of *text*, with the directives just above each."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not re.match(r"^\s*```\s*$", lines[end]):
            end += 1
        if fence["lang"] == "python":
            code = textwrap.dedent("\n".join(lines[index + 1 : end]))
            block = Block(index + 2, code)
            above = index - 1
            while above >= 0 and not lines[above].strip():
                above -= 1
            while above >= 0 and _COMMENT.match(lines[above]):
                directive = _DIRECTIVE.match(lines[above])
                if directive is None or directive["kind"] not in ("then", "not run"):
                    raise ValueError(f"README.md:{above + 1}: unknown directive {lines[above]!r}")
                if not directive["text"]:
                    raise ValueError(f"README.md:{above + 1}: {directive['kind']} says nothing")
                if directive["kind"] == "then":
                    block.then.insert(0, directive["text"])
                else:
                    block.not_run = directive["text"]
                above -= 1
            yield block
        index = end + 1


BLOCKS = list(python_blocks(README.read_text(encoding="utf-8")))


class User:
    """What README's ``authenticate`` returns."""

    id = 7


def authenticate(*args: Any) -> User:
    return User()


def build_report() -> dict[str, str]:
    return {"report": "costly"}


@pytest.fixture
def namespace(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The names a README block may use without importing them.

    ``config``: a configurator with every component's settings (memory stores), not
    yet including pyramid_kvs; ``request``: a request of an application configured
    with them, posting a login form; ``response``: a response; ``session_id``: a Perl
    session id; ``production_settings``: settings naming a Redis that does not exist
    here; ``authenticate`` and ``build_report``: the application's own functions.
    """
    application = apps.committed(dict(SETTINGS))
    request = Request.blank("/", POST={"login": "ada", "password": "secret"})
    env = prepare(request=request, registry=application.registry)
    # a module of its own: Pyramid looks up the caller's module (config.include)
    module = types.ModuleType("readme_block")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    module.__dict__.update({
        "config": Configurator(settings=dict(SETTINGS)),
        "request": env["request"],
        "response": Response(),
        "session_id": "0123456789abcdef0123456789abcdef",
        "production_settings": dict(PRODUCTION_SETTINGS),
        "authenticate": authenticate,
        "build_report": build_report,
    })  # fmt: skip
    yield module.__dict__
    env["closer"]()
    testing.tearDown()


def run(code: str, line: int, namespace: dict[str, Any]) -> None:
    """Run *code*; its tracebacks show the block, numbered from its first line."""
    filename = f"<README.md, the block at line {line}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    exec(compile(code, filename, "exec"), namespace)


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_the_readme_block_runs(block: Block, namespace: dict[str, Any]) -> None:
    ast.parse(block.code)  # even a block not run is Python
    if block.not_run is not None:
        return
    run(block.code, block.line, namespace)
    for code in block.then:
        run(code, block.line, namespace)


def test_the_readme_has_python_blocks_and_directives_are_read() -> None:
    assert len(BLOCKS) >= 10
    text = """
Some text.

<!-- not run: a fragment -->
<!-- then: f() -->
```python
def f(): ...
```

  <!-- then: g() -->

  ```python
  def g(): ...
  ```
```ini
not = python
```
"""
    blocks = list(python_blocks(text))
    assert [(b.line, b.code, b.then, b.not_run) for b in blocks] == [
        (7, "def f(): ...", ["f()"], "a fragment"),
        (13, "def g(): ...", ["g()"], None),
    ]
    with pytest.raises(ValueError, match="unknown directive"):
        list(python_blocks("<!-- skip: why -->\n```python\npass\n```\n"))
    with pytest.raises(ValueError, match="says nothing"):
        list(python_blocks("<!-- not run: -->\n```python\npass\n```\n"))
