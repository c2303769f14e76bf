"""JSON bodies, refused clearly when they nest too deeply.

Python's json module recurses once per level: a body of a few kilobytes nested about a
thousand levels deep raised ``RecursionError`` inside DRF's parser, which turns only a
``ValueError`` into a parse error — the client got a 500. Nothing the API takes nests
anywhere near ``MAX_DEPTH`` levels, so a deeper body is refused as a 400 that says where,
before any code walks it (the payload's size and search text, the row's JSON, a job's
pickled arguments).
"""

from __future__ import annotations

from typing import Any

from rest_framework import parsers

MAX_DEPTH = 100  # levels of objects and arrays, the body itself the first
_PATH_SHOWN = 3  # steps of the path named in the answer ("jobs[1].payload…")


class NestedTooDeeply(Exception):
    """A JSON value nests deeper than ``MAX_DEPTH`` levels: answered as a 400 (apikit.errors)."""

    http_status = 400
    code = "parse_error"
    hint = "Flatten the data: no field takes JSON nested this deep."

    def __init__(self, field: str | None) -> None:
        self.field = field  # where it went too deep; None when the parser could not say
        self.message = f"The JSON nests deeper than {MAX_DEPTH} levels" + (f" (in {field})." if field else ".")
        super().__init__(self.message)


def nested_too_deeply(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """Where ``value`` first nests deeper than ``limit`` levels (its path's first steps,
    e.g. ``payload.a.a…``); None when it does not. Walks without recursing."""
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(value, 1, ())]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict):
            children = [(str(key), child) for key, child in item.items()]
        elif isinstance(item, list):
            children = [(f"[{index}]", child) for index, child in enumerate(item)]
        else:
            continue
        if depth > limit:
            return _shown(path)
        stack.extend((child, depth + 1, (*path, step)) for step, child in children if isinstance(child, dict | list))
    return None


def _shown(path: tuple[str, ...]) -> str:
    shown = path[:_PATH_SHOWN]
    text = "".join(step if step.startswith("[") or not index else f".{step}" for index, step in enumerate(shown))
    return (text or "the body") + ("…" if len(path) > _PATH_SHOWN else "")


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with bodies nested deeper than ``MAX_DEPTH`` refused as a 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:  # deeper than the interpreter's stack: where cannot be said
            raise NestedTooDeeply(None) from None
        where = nested_too_deeply(data)
        if where is not None:
            raise NestedTooDeeply(where)
        return data
