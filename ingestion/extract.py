"""Text out of a file — page by page where there are pages — normalised.

Pure: bytes in, text out. Whatever makes a file unreadable (empty, binary, damaged or
encrypted PDF, no text at all, more work than its ``Budget`` allows) is a
``NotSupported`` with a message for the uploader.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from bs4 import BeautifulSoup
from pypdf import PdfReader, apply_configuration
from pypdf.errors import LimitReachedError
from pypdf.generic import DictionaryObject, IndirectObject

from ingestion.budget import Budget, OverBudget
from ingestion.detect import CSV, HTML, JSON, PDF, TEXT, NotSupported, decode_text, is_pdf, text_kind

logger = logging.getLogger("ingestion.extract")
# A CSV field may be as long as a whole upload (the default limit is 128 KiB).
csv.field_size_limit(1 << 30)

PageProgress = Callable[[int, int], None]  # (pages done, pages in all)
PAGE_SEPARATOR = "\n\n"

# Each pattern matches only what must change: a substitution builds one piece per match,
# and a pattern matching every space of a 20 MB text would need gigabytes.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]+")
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
_ODD_SPACES = re.compile(r"[^\S\n]*[^\S\n ][^\S\n]*| {2,}")  # tabs, no-break spaces…, or several
_SPACE_AROUND_NEWLINES = re.compile(r" \n ?|\n ")
_BLANK_LINES = re.compile(r"\n{3,}")
_WORD_COUNT_BLOCK = 1 << 20


@dataclass
class Extracted:
    text: str
    content_type: str
    page_starts: list[int] | None = None  # offset in ``text`` where each PDF page begins
    encoding: str = ""

    def statistics(self) -> dict[str, int | None]:
        return {
            "pages": len(self.page_starts) if self.page_starts is not None else None,
            "lines": self.text.count("\n") + 1 if self.text else 0,
            "words": count_words(self.text),
            "characters": len(self.text),
        }


def count_words(text: str) -> int:
    """``len(text.split())`` without a list of every word: a block at a time."""
    words = 0
    for start in range(0, len(text), _WORD_COUNT_BLOCK):
        block = text[start : start + _WORD_COUNT_BLOCK]
        words += len(block.split())
        if start and block[:1].strip() and text[start - 1 : start].strip():
            words -= 1  # one word across the block edge, counted in both blocks
    return words


def normalise(text: str) -> str:
    """One space between words, no trailing spaces, at most one blank line, no control
    characters (PostgreSQL cannot store NUL)."""
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROLS.sub("", text)
    text = _ODD_SPACES.sub(" ", text)
    text = _SPACE_AROUND_NEWLINES.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def normalise_keeping_indents(text: str) -> str:
    """``normalise`` for text whose leading spaces mean something (JSON rendered as
    nested lines): each line keeps its indentation, the rest is normalised."""
    lines = []
    for raw in text.split("\n"):
        body = normalise(raw)
        indent = len(raw) - len(raw.lstrip(" ")) if body else 0
        lines.append(" " * indent + body)
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")


def extract(
    source: bytes | BinaryIO, name: str, on_page: PageProgress | None = None, budget: Budget | None = None
) -> Extracted:
    """``source`` is the bytes, or an open file: then its bytes are dropped as soon as
    they are decoded, so a big text is not held twice. ``budget`` bounds the work (its
    clock starts now)."""
    budget = (budget or Budget()).restarted()
    data = source if isinstance(source, bytes) else source.read()
    del source
    if not data or data.isspace():
        raise NotSupported("The file is empty.", hint="Upload a file with some text in it.")
    if is_pdf(data):
        return _pdf(data, on_page or (lambda done, total: None), budget)
    size = len(data)
    decoded = decode_text(data)
    del data
    kind = text_kind(decoded.text, name)
    if kind == HTML:
        budget.check_nesting(decoded.text)
    render = {
        HTML: _html_text,
        CSV: lambda table: _csv_text(table, _Lines(budget, size)),
        JSON: lambda document: _json_text(document, _Lines(budget, size)),
    }.get(kind, str)
    clean = normalise_keeping_indents if kind == JSON else normalise
    try:
        text = clean(render(decoded.text))
    except ValueError:  # looked like JSON, is not: read it as the text it is
        kind, text = TEXT, normalise(decoded.text)
    except RecursionError:
        raise NotSupported("The file is nested too deeply to read.", hint="Flatten it and upload again.") from None
    except csv.Error as error:
        raise NotSupported(
            f"The CSV file cannot be read: {error}.", hint="Check its quoting and upload again."
        ) from None
    if not text:
        raise NotSupported("The file contains no text.", hint="Upload a file with some text in it.")
    budget.check_text(len(text), size)  # plain text and HTML too: no more than the most one file may give
    return Extracted(text, kind, encoding=decoded.encoding)


def _pdf(data: bytes, on_page: PageProgress, budget: Budget) -> Extracted:
    # pypdf's own limits, per stream: decompression and parsing stop at the budget.
    limits: dict[str, Any] = {  # apply_configuration's **overwrites
        name: budget.max_stream_bytes
        for name in (
            "zlib_maximum_output_length", "lzw_maximum_output_length", "run_length_maximum_output_length",
            "brotli_maximum_output_length", "array_based_stream_maximum_output_length",
            "maximum_declared_stream_length",
        )
    }  # fmt: skip
    with apply_configuration(**limits):
        return _pdf_within_limits(data, on_page, budget)


def _pdf_within_limits(data: bytes, on_page: PageProgress, budget: Budget) -> Extracted:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise NotSupported(
                "The PDF is password-protected.", hint="Save a copy without the password and upload that."
            )
        total = count_distinct_pages(reader, budget)
        len(reader.pages)  # pypdf flattens its page tree here, and may refuse it (too deep)
    except NotSupported:
        raise
    except LimitReachedError as error:
        raise OverBudget(  # a page tree too deep, an object referring to itself, a table too long
            f"The PDF goes beyond what may be read of one: {error}",
            hint="Save the PDF again with a PDF tool (or print it to PDF) and upload that.",
        ) from None
    except Exception as error:  # pypdf raises many types for damaged files
        logger.info("unreadable PDF: %r", error)
        raise NotSupported(
            "The PDF is damaged or incomplete and cannot be read.", hint="Upload the complete file again."
        ) from None
    if total == 0:
        raise NotSupported("The PDF has no pages.", hint="Upload the complete file again.")
    parts, starts, offset, content_bytes = [], [], 0, 0
    for number, page in enumerate(reader.pages, start=1):
        budget.check_time(f"page {number} of {total}")
        try:
            content_bytes += _content_size(page)
            budget.check_document_bytes(content_bytes)
            text = normalise(page.extract_text() or "")
        except OverBudget:
            raise
        except LimitReachedError:
            raise budget.stream_too_large(number) from None
        except Exception as error:
            logger.info("unreadable PDF page %s: %r", number, error)
            raise NotSupported(
                f"Page {number} of the PDF is damaged and cannot be read.", hint="Upload the complete file again."
            ) from None
        starts.append(offset)
        parts.append(text)
        offset += len(text) + len(PAGE_SEPARATOR)
        budget.check_text(offset, len(data))
        on_page(number, total)
    text = PAGE_SEPARATOR.join(parts)
    if not text.strip():
        raise NotSupported(
            "The PDF has no text to extract (is it scanned images?).", hint="Run OCR on it and upload the result."
        )
    return Extracted(text, PDF, page_starts=starts)


def count_distinct_pages(reader: PdfReader, budget: Budget) -> int:
    """Walk the page tree before anything reads a page: every node at most once (a tree
    that lists a page, or a branch, twice is refused — no real PDF does, and a small one
    can list a page thousands of times) and at most ``budget.max_pages`` pages."""
    seen: set[tuple[int, int]] = set()
    pages = 0
    root = cast(DictionaryObject, reader.trailer["/Root"].get_object())  # the catalog is a dictionary
    stack = [root.get("/Pages")]
    while stack:
        node = stack.pop()
        if isinstance(node, IndirectObject):
            key = (node.idnum, node.generation)
            if key in seen:
                raise OverBudget(
                    "The PDF's page tree lists the same page (or branch of pages) more than once.",
                    hint="Save the PDF again with a PDF tool (or print it to PDF) and upload that.",
                )
            seen.add(key)
            node = node.get_object()
        if not isinstance(node, DictionaryObject):
            continue
        if node.get("/Type") == "/Pages" or "/Kids" in node:
            stack.extend(reversed(list(node.get("/Kids") or [])))
        else:
            pages += 1
            budget.check_pages(pages)
    return pages


def _content_size(page) -> int:
    contents = page.get_contents()
    return len(contents.get_data()) if contents is not None else 0


_BLOCK_TAGS = [
    "p", "div", "section", "article", "header", "footer", "main", "nav", "aside", "h1", "h2", "h3", "h4", "h5",
    "h6", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "thead", "tbody", "blockquote", "pre", "hr",
    "figure", "figcaption", "form", "fieldset", "address", "td", "th",
]  # fmt: skip


def _html_text(markup: str) -> str:
    soup = BeautifulSoup(markup, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for hidden in soup(["script", "style", "noscript", "template", "head", "svg"]):
        hidden.decompose()
    for block in soup.find_all(_BLOCK_TAGS):  # blocks end lines; inline tags (<b>, <a>) do not
        block.append("\n")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    body = soup.get_text()
    return f"{title}\n\n{body}" if title else body


class _Lines:
    """Lines of text rendered from a table or a tree, counted against the budget as they
    are added: a CSV repeats its header's names on every row and a JSON indents each
    line by its depth, so a 50 KB file rendered 50 million characters."""

    def __init__(self, budget: Budget, file_bytes: int) -> None:
        self.lines: list[str] = []
        self._budget, self._file_bytes = budget, file_bytes
        self._allowed = budget.text_allowed(file_bytes)
        self._characters = 0

    def append(self, line: str) -> None:
        self._characters += len(line) + 1
        if self._characters > self._allowed:
            self._budget.check_text(self._characters, self._file_bytes)
        if len(self.lines) % 10_000 == 0:
            self._budget.check_time(f"line {len(self.lines):,} of its text")
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)


def _csv_text(table: str, lines: _Lines) -> str:
    """Each row as "column: value; …" under the header row's names."""
    try:
        dialect = csv.Sniffer().sniff(table[:20_000], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = csv.reader(io.StringIO(table), dialect)
    header = next(rows, [])
    lines.append(" | ".join(header))
    for row in rows:
        names = header + [f"column {i + 1}" for i in range(len(header), len(row))]
        lines.append("; ".join(f"{n}: {v}" for n, v in zip(names, row, strict=False) if v.strip()))
    return lines.text()


def _json_text(document: str, lines: _Lines) -> str:
    _render(json.loads(document), 0, lines)
    return lines.text()


def _render(value, depth: int, lines: _Lines) -> None:
    pad = "  " * depth
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((None, v) for v in value)
    else:
        lines.append(f"{pad}{value}")
        return
    for key, item in items:
        label = f"{key}:" if key is not None else "-"
        if isinstance(item, (dict, list)):
            lines.append(f"{pad}{label}")
            _render(item, depth + 1, lines)
        else:
            lines.append(f"{pad}{label} {item}")
