"""JSON bodies, refused clearly when they could not be kept as sent; and multipart
bodies whose parts Django could not read (``MultiPartParser``, at the end).

* **Nested too deeply.** Python's json module recurses once per level: a body of a few
  kilobytes nested about a thousand levels deep raised ``RecursionError`` inside DRF's
  parser, which turns only a ``ValueError`` into a parse error — the client got a 500.
  Nothing the API takes nests anywhere near ``MAX_DEPTH`` levels, so a deeper body is
  refused as a 400 that says where, before any code walks it (the payload's size and
  search text, the row's JSON, a job's pickled arguments).
* **A lone surrogate** (``"\\ud800"``): JSON may escape half of a UTF-16 pair, which is
  no character at all. PostgreSQL refuses it. SQLite stored it in a batch's context,
  and every list showing that batch then failed to encode it (``GET /api/batches/``
  answered 500 for its owner); in a payload, the submit itself failed (a 500).
* **A number past a float's range** (``1e400`` reads as infinity): no JSON column stores
  it (SQLite's check failed: a 500).
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.utils.json import strict_constant

MAX_DEPTH = 100  # levels of objects and arrays, the body itself the first
_PATH_SHOWN = 3  # steps of the path named in the answer ("jobs[1].payload…")
_STEP_SHOWN = 40  # characters of each (a client's key may be long)


class NestedTooDeeply(Exception):
    """A JSON value nests deeper than ``MAX_DEPTH`` levels: answered as a 400 (apikit.errors)."""

    http_status = 400
    code = "parse_error"
    hint = "Flatten the data: no field takes JSON nested this deep."

    def __init__(self, field: str | None, limit: int = MAX_DEPTH) -> None:
        self.field = field  # where it went too deep; None when the parser could not say
        self.message = f"The JSON nests deeper than {limit} levels" + (f" (in {field})." if field else ".")
        super().__init__(self.message)


def nested_too_deeply(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """Where ``value`` first nests deeper than ``limit`` levels (its path's first steps,
    e.g. ``payload.a.a…``); None when it does not.

    Level by level, each a list of the containers at that depth: a wide body (a megabyte
    of small arrays) costs one pass over what the parser already built, and nothing but
    references. Only a body found too deep is walked again, for the path."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(limit):
        level = [child for item in level for child in _children(item) if isinstance(child, dict | list)]
        if not level:
            return None
    return _shown(_path_deeper_than(value, limit))


def _children(item: dict | list):
    return item.values() if isinstance(item, dict) else item


def _path_deeper_than(value: Any, limit: int) -> list[str]:
    """The steps to the first container below ``limit`` levels (there is one): depth
    first, one iterator per level held, so memory follows the depth, not the width."""
    path: list[str] = []
    stack = [_steps(value)]
    while len(stack) <= limit:
        for step, child in stack[-1]:
            if isinstance(child, dict | list):
                path.append(step)
                stack.append(_steps(child))
                break
        else:
            stack.pop()
            path.pop()
    return path


def _steps(item: dict | list):
    if isinstance(item, dict):
        return ((str(key), child) for key, child in item.items())
    return ((f"[{index}]", child) for index, child in enumerate(item))


def _shown(path: list[str]) -> str:
    shown = [step if len(step) <= _STEP_SHOWN else step[:_STEP_SHOWN] + "…" for step in path[:_PATH_SHOWN]]
    text = "".join(step if step.startswith("[") or not index else f".{step}" for index, step in enumerate(shown))
    return text + ("…" if len(path) > _PATH_SHOWN else "")


class LoneSurrogate(Exception):
    """A string holds half of a UTF-16 surrogate pair: answered as a 400 (apikit.errors)."""

    http_status = 400
    code = "parse_error"
    hint = "Escape a character beyond U+FFFF as a pair (\\ud83d\\ude00), or send it as UTF-8."

    def __init__(self, field: str) -> None:
        self.field = field
        self.message = f"The JSON has half of a UTF-16 surrogate pair (a \\ud800-\\udfff escape alone) in {field}."
        super().__init__(self.message)


def lone_surrogate(value: Any) -> str | None:
    """Where a string (a key or a value) in ``value`` holds a lone surrogate; None when
    none does. One encoding of the whole in C first; only a body that has one is walked."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
        return None
    except UnicodeEncodeError:
        pass
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not _encodes(item):
                return _shown(path) or "the body"
        elif isinstance(item, dict | list):
            for step, child in _steps(item):
                if not _encodes(step):
                    return _shown(path) or "the body"  # a key: the object holding it
                stack.append((child, [*path, step]))
    return "the body"


def _encodes(text: str) -> bool:
    try:
        text.encode()
        return True
    except UnicodeEncodeError:
        return False


def finite_float(text: str) -> float:
    """A JSON number as a float, refused (ValueError) past a float's range: 1e400 reads
    as infinity, which no JSON column stores (SQLite's check fails: a 500)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def loads(text: str, *, max_depth: int = MAX_DEPTH, parse_constant=strict_constant) -> Any:
    """``text`` as JSON, kept as sent or refused: ``NestedTooDeeply``, ``LoneSurrogate``,
    or a ``ValueError`` (not JSON; a number past a float's range; NaN or Infinity, which
    ``parse_constant`` refuses — None takes them). The API's parser and the console's
    payload field read JSON through it."""
    try:
        data = json.loads(text, parse_constant=parse_constant, parse_float=finite_float)
    except RecursionError:  # deeper than the interpreter's stack: where cannot be said
        raise NestedTooDeeply(None, max_depth) from None
    except ValueError as error:
        if "integer string conversion" in str(error):  # Python's advice is for the server's developer
            raise ValueError(f"a number in it has more than {sys.get_int_max_str_digits():,} digits") from None
        raise
    # A text with no more brackets than levels allowed cannot nest deeper (a submit has
    # a few), and one with no escape has no lone surrogate: neither is walked then.
    if text.count("[") + text.count("{") > max_depth:
        where = nested_too_deeply(data, max_depth)
        if where is not None:
            raise NestedTooDeeply(where, max_depth)
    if "\\u" in text:
        where = lone_surrogate(data)
        if where is not None:
            raise LoneSurrogate(where)
    return data


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing (400, naming where) what ``loads`` refuses."""

    def parse(self, stream, media_type=None, parser_context=None):
        # As DRF's own parser (its charset check too), reading the text first: the
        # route's limit bounds it.
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]  # newer than the stubs
        try:
            return loads(stream.read().decode(encoding), parse_constant=strict_constant if self.strict else None)
        except ValueError as error:  # not JSON, or not in its encoding (UnicodeDecodeError)
            raise ParseError(f"JSON parse error - {error}") from None


class MultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser, naming a part whose header is not UTF-8. Django decodes a
    part's header lines as UTF-8 and drops a line that is not — and with its
    Content-Disposition, the whole part — so a file sent with a filename in another
    encoding (Latin-1 from an old client, say) was answered "No file was submitted". Such
    a part, missing from what was parsed, is now a 400 naming its field."""

    def parse(self, stream, media_type=None, parser_context=None):
        watched = _DispositionWatch(stream)
        parsed = super().parse(watched, media_type, parser_context)  # type: ignore[arg-type]  # Django only reads it
        dropped = sorted(name for name in watched.undecodable if name not in parsed.files and name not in parsed.data)
        if dropped:
            raise ValidationError(
                {
                    name: [
                        "This part's header is not UTF-8 (its filename, most likely), so it could not be read. "
                        "Send the filename in UTF-8, or rename the file to plain ASCII."
                    ]
                    for name in dropped
                }
            )
        return parsed


_DISPOSITION = re.compile(rb"(?im)^content-disposition:[^\r\n]*\r\n")
_PART_NAME = re.compile(r'\bname="([^"]*)"')
_LINE_KEPT = 4096  # bytes of a chunk's end read again with the next: a header line cut in two


class _DispositionWatch:
    """A body stream read through, noting the field names of Content-Disposition lines
    that are not UTF-8. Bytes inside a file may look like such a line too: a name noted
    that way is only reported when that field is missing from what was parsed."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._tail = b""
        self.undecodable: set[str] = set()

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        if chunk:
            window = self._tail + chunk
            for line in _DISPOSITION.findall(window):
                try:
                    line.decode()
                except UnicodeDecodeError:
                    named = _PART_NAME.search(line.decode("latin-1"))
                    if named:
                        self.undecodable.add(named.group(1))
            self._tail = window[-_LINE_KEPT:]
        return chunk
