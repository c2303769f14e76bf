"""Overlapping chunks of extracted text, with their offsets and pages."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

from semantic_text_splitter import TextSplitter


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    start: int  # character offsets into the extracted text: text[start:end] == chunk
    end: int
    page: int | None


# The splitter's time grows faster than the text (20 MB in one call: ~20 s); split in
# blocks of about this many characters, cut at paragraph breaks, it stays linear.
BLOCK = 200_000


def split(text: str, page_starts: list[int] | None, *, size: int, overlap: int) -> Iterator[Chunk]:
    """Chunks of at most ``size`` characters along semantic boundaries (paragraphs, then
    sentences, then words), each sharing up to ``overlap`` characters with the previous
    one — except across the paragraph breaks where long texts are cut into blocks.
    Yielded a block at a time, so a big text's chunks are never all in memory."""
    splitter = TextSplitter(size, overlap=overlap)
    index = 0
    for block_start, block_end in _blocks(text):
        for start, chunk in splitter.chunk_indices(text[block_start:block_end]):
            start += block_start
            yield Chunk(index, chunk, start, start + len(chunk), _page(page_starts, start))
            index += 1


def _blocks(text: str):
    """(start, end) of consecutive blocks of about BLOCK characters, each ending at a
    paragraph break, else a line break, else a space, when there is one."""
    start = 0
    while start < len(text):
        end = min(len(text), start + BLOCK)
        if end < len(text):
            for separator in ("\n\n", "\n", " "):
                cut = text.rfind(separator, start + BLOCK // 2, end)
                if cut > start:
                    end = cut + len(separator)
                    break
        yield start, end
        start = end


def _page(page_starts: list[int] | None, offset: int) -> int | None:
    return bisect.bisect_right(page_starts, offset) if page_starts else None
