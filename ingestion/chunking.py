"""Overlapping chunks of extracted text, with their offsets and pages (SPEC §5.2)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from semantic_text_splitter import TextSplitter


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    start: int  # character offsets into the extracted text: text[start:end] == chunk
    end: int
    page: int | None


def split(text: str, page_starts: list[int] | None, *, size: int, overlap: int) -> list[Chunk]:
    """Chunks of at most ``size`` characters along semantic boundaries (paragraphs, then
    sentences, then words), each sharing up to ``overlap`` characters with the previous."""
    splitter = TextSplitter(size, overlap=overlap)
    return [
        Chunk(index, chunk, start, start + len(chunk), _page(page_starts, start))
        for index, (start, chunk) in enumerate(splitter.chunk_indices(text))
    ]


def _page(page_starts: list[int] | None, offset: int) -> int | None:
    return bisect.bisect_right(page_starts, offset) if page_starts else None
