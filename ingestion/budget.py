"""How much work one file may cause: a few kilobytes must never hold a worker for hours.

A PDF can list one page 59,049 times from a 5 KB page tree, inflate a 200 KB file into a
60 MB content stream, or an HTML file nest 100,000 elements (our parser's cost grows
with the square of the depth). Each limit here is checked while the file is read, and
going over one is a ``OverBudget`` — a ``NotSupported``, so the job fails at once as
``user_fixable`` with a message that names the limit. Pure: no Django, no I/O.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field

from ingestion.detect import NotSupported

_MB = 1024 * 1024


class OverBudget(NotSupported):
    """The file would take more work than one upload may: the message names the limit."""


@dataclass(frozen=True)
class Budget:
    max_pages: int = 10_000  # distinct pages of a PDF
    max_stream_bytes: int = 32 * _MB  # one decompressed PDF stream
    max_document_bytes: int = 256 * _MB  # every page's decompressed content, together
    text_per_byte: int = 100  # extracted characters per byte of the file ...
    text_floor: int = 1_000_000  # ... beyond this many, which any file may give
    max_text: int = 128_000_000  # characters of text from one file, whatever its size (memory)
    max_nesting: int = 2_000  # open HTML elements at once
    max_seconds: float = 300.0  # reading one file, wall clock
    started: float = field(default_factory=time.monotonic, compare=False)

    def restarted(self) -> Budget:
        """The same limits, with the clock starting now."""
        return dataclasses.replace(self, started=time.monotonic())

    def check_time(self, doing: str) -> None:
        spent = time.monotonic() - self.started
        if spent > self.max_seconds:
            raise OverBudget(
                f"Reading the file took longer than the {self.max_seconds:g} s allowed per file ({doing}).",
                hint="Split the file into smaller ones, or ask an operator to raise EXTRACT_MAX_SECONDS.",
            )

    def text_allowed(self, file_bytes: int) -> int:
        """Characters of text a file of this size may give (``check_text``)."""
        return min(self.max_text, max(self.text_floor, self.text_per_byte * file_bytes))

    def check_text(self, characters: int, file_bytes: int) -> None:
        allowed = max(self.text_floor, self.text_per_byte * file_bytes)
        if characters > allowed:
            raise OverBudget(
                f"The file expands to more than {allowed:,} characters of text "
                f"({self.text_per_byte} per byte of the file): it looks like a decompression bomb.",
                hint="Upload the text itself, or a file that is not built to expand.",
            )
        if characters > self.max_text:
            raise OverBudget(
                f"The file gives more than {self.max_text:,} characters of text, the most one file may.",
                hint="Split it into smaller files, or ask an operator to raise EXTRACT_MAX_TEXT.",
            )

    def check_pages(self, pages: int) -> None:
        if pages > self.max_pages:
            raise OverBudget(
                f"The PDF has more than {self.max_pages:,} pages.",
                hint="Split it into smaller PDFs, or ask an operator to raise EXTRACT_MAX_PAGES.",
            )

    def check_document_bytes(self, total: int) -> None:
        if total > self.max_document_bytes:
            raise OverBudget(
                f"The PDF's pages decompress to more than {self.max_document_bytes // _MB} MB together.",
                hint="Split it into smaller PDFs, or ask an operator to raise EXTRACT_MAX_DOCUMENT_BYTES.",
            )

    def stream_too_large(self, page: int) -> OverBudget:
        return OverBudget(
            f"A stream on page {page} of the PDF decompresses to more than {self.max_stream_bytes // _MB} MB.",
            hint="Save the PDF again with a PDF tool (or print it to PDF), or ask an operator to raise "
            "EXTRACT_MAX_STREAM_BYTES.",
        )

    def check_nesting(self, markup: str) -> None:
        depth = html_depth(markup)
        if depth > self.max_nesting:
            raise OverBudget(
                f"The HTML nests elements more than {self.max_nesting:,} deep ({depth:,}; often many tags "
                "left open, such as <p> or <div> without their end tag).",
                hint="Close its tags, or save it as plain text, and upload again.",
            )


# Elements that never contain anything, and the ones whose content is not markup.
_VOID = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr",
    "keygen", "command", "basefont", "frame",
})  # fmt: skip
_RAW_TEXT = re.compile(r"<(script|style|textarea|title)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<(/?)([a-zA-Z][^\s/>]*)[^>]*?(/?)>")


def html_depth(markup: str) -> int:
    """The deepest nesting of open elements an HTML parser without HTML5's implicit
    closing (such as ``html.parser``) builds. As that parser does, a closing tag closes
    the nearest open element of its name (and everything opened inside it) and is
    ignored when none is open — ``<div></b>`` closes nothing. Linear in the tags: each
    open element is counted by name, and a stray closing tag costs one lookup."""
    stack: list[str] = []
    open_by_name: dict[str, int] = {}
    deepest = 0
    for closing, raw_name, self_closing in _TAG.findall(_RAW_TEXT.sub("", markup)):
        name = raw_name.lower()
        if closing:
            if not open_by_name.get(name):
                continue  # nothing of that name is open: the parser ignores it
            while stack:
                top = stack.pop()
                open_by_name[top] -= 1
                if top == name:
                    break
        elif not self_closing and name not in _VOID:
            stack.append(name)
            open_by_name[name] = open_by_name.get(name, 0) + 1
            deepest = max(deepest, len(stack))
    return deepest
