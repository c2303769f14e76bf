"""The text functions against plain reference versions (property-based)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion import chunking, extract

WHITESPACE_HEAVY = st.text(alphabet=st.sampled_from(list("ab ц\t\n\r\x0b\x0c\x00\x1f\u00a0\u2028.,")), max_size=300)


def reference_normalise(text: str) -> str:
    text = re.sub(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]", "\n", text)
    text = re.sub(r"[\x00-\x08\x0e-\x1f\x7f]", "", text)
    lines = [re.sub(r"\s+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


@given(WHITESPACE_HEAVY)
def test_normalise_matches_the_plain_version(text):
    assert extract.normalise(text) == reference_normalise(text)


@settings(max_examples=200)
@given(WHITESPACE_HEAVY, st.integers(min_value=1, max_value=7))
def test_word_count_in_blocks_matches_split(text, block):
    original = extract._WORD_COUNT_BLOCK
    extract._WORD_COUNT_BLOCK = block
    try:
        assert extract.count_words(text) == len(text.split())
    finally:
        extract._WORD_COUNT_BLOCK = original


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc .\n")), min_size=1, max_size=3000))
def test_chunks_in_blocks_are_slices_that_cover_the_text(text):
    original = chunking.BLOCK
    chunking.BLOCK = 257
    try:
        chunks = list(chunking.split(text, None, size=60, overlap=10))
    finally:
        chunking.BLOCK = original
    covered = [False] * len(text)
    for index, chunk in enumerate(chunks):
        assert chunk.index == index and text[chunk.start : chunk.end] == chunk.text and len(chunk.text) <= 60
        covered[chunk.start : chunk.end] = [True] * len(chunk.text)
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)


def test_inline_html_tags_stay_inside_their_line():
    page = b"<html><body><p>Some <b>bold</b> text, <a href='#'>a link</a>.</p><p>Next</p></body></html>"
    text = extract.extract(page, "a.html").text
    assert text == "Some bold text, a link.\nNext"


def test_json_keeps_its_nesting_as_indentation():
    text = extract.extract(b'{"a": {"b": [1, {"c": "x   y"}]}}', "n.json").text
    assert text == "a:\n  b:\n    - 1\n    -\n      c: x y"
